// Package delivery moves pre-encoded frames from the core to connections,
// for every connection type (the Centrifugo WebSocket session today, relay
// and compute-node connections next).
//
// Each connection owns a Queue bounded in bytes. Producers enqueue frames
// that are shared between subscribers (never copied per connection). A
// small Pool of writer goroutines drains queues that have something
// queued, handing everything queued to the connection's Sink as one batch,
// so a busy connection coalesces while others are served. Idle
// connections own no goroutine. A queue past its limit is closed and its
// Sink told (the adapter disconnects with its own code); a writer stuck in
// one connection's write is detached after the stall limit and replaced,
// so a peer that does not read never delays the others for longer.
package delivery
