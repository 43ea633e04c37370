// Package hub is the realtime core: channels, subscriptions, presence,
// history and fan-out. It knows nothing of WebSocket, HTTP or any wire
// protocol: client-protocol adapters register Subscribers and a Codec per
// wire format, and a Broker moves publications, presence and history
// (in memory by default, Redis when several processes share channels).
//
// Lock order: shard.mu before any Subscriber's own locks. The hub never
// calls into a Broker while holding a shard lock.
package hub
