// Package hub is the realtime core: channels, subscriptions, presence,
// history and fan-out. It knows nothing of WebSocket, HTTP or any wire
// protocol: each adapter registers its wire formats (RegisterFormat, an
// Encoder each) and its Subscribers and Clients, and a Broker moves publications, presence and history
// (in memory by default, Redis when several processes share channels).
// Several processes sharing an engine are nodes of one server: their hubs
// announce themselves, leave, and carry server API commands and surveys to
// each other over a ControlPlane (cluster.go, nodes.go; docs/control-plane.md).
//
// Lock order: a channel shard's lock before any Subscriber's own locks.
// Client and user index shards are leaf locks: never two held at once. The
// hub never calls into a Broker while holding a shard lock; a channel's
// broker Subscribe/Unsubscribe runs under that channel's own interest lock
// (interest.go), which no other channel shares.
package hub
