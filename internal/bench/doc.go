// Package bench is Switchboard's load tool: `switchboard bench conns|fanout|rpc|plot`.
//
// It speaks the Centrifugo client protocol v2 (JSON or Protobuf) over WebSocket and the
// Centrifugo server HTTP API, so the same commands measure Switchboard, Centrifugo or any
// compatible server. The client side is deliberately lean (github.com/lxzan/gws, one read
// goroutine and a small read buffer per connection) so that tens of thousands of connections
// fit beside the server on a small machine, and it reports its own CPU use so a saturated
// client is not mistaken for a slow server.
//
// Measurements:
//   - conns: connect rate, failures, connect latency, and the server's RSS per connection
//     (from /proc/PID/status VmRSS with --server-pid, or process_resident_memory_bytes from
//     --server-metrics).
//   - fanout: deliveries per second, end-to-end latency percentiles from a send timestamp
//     embedded in every payload, and lost/duplicated messages from per-channel sequence
//     numbers; server disconnects (close codes) are counted and reported.
//   - rpc: command round-trip latency of client rpc or publish commands.
//
// Every run is bounded by --duration (measurement phase) and --timeout (hard cap) and stops
// cleanly when its context is cancelled (Ctrl-C).
package bench
