// Package relay is the game relay: a QUIC listener on one UDP port that
// relays events between game clients, in rooms that are hub channels.
//
// One listener serves every client, told apart by ALPN: a client offering
// none speaks the ISSUN profile (byte-compatible with ISSUN 0.10 clients:
// a NodeId handshake, one event frame per unidirectional stream each way);
// "switchboard-relay/1" is the native protocol (protocol/relay, version 2).
// "h3" is reserved for WebTransport and refused for now.
//
// The relay routes an event without decoding its payload: it checks the
// frame, rewrites the sender with the connection's NodeId and queues the
// same bytes to every receiver's delivery.Queue (the core's per-connection
// bounded queue and writer pool). A receiver whose queue overflows is
// disconnected as a slow consumer; nobody else waits for it.
//
// Room R is the hub channel "relay:R": members are recorded with hub
// presence (and join/leave publications), so the server API's presence of
// "relay:R" lists the players. Events stay in the relay.
//
// Goroutines: the Server owns an accept loop, one goroutine per handshake
// and one per connection past it (its read loop; native sessions add an
// event stream and a datagram reader, and a datagram writer while
// datagrams wait); other writes run in the delivery pool. Shutdown
// stops accepting, closes every connection (native ones get GOAWAY first)
// and waits for their goroutines. With a bus, the cluster adds its
// publisher, its sync loop, its presence repair (repair.go), a goroutine
// per request from another process being served (a resume handover,
// ending a parked session; at most maxServing at once) and, while a
// connection's lobby membership changes, one running its lobby steps
// (rooms.go), all ended by Shutdown, whose deadline also ends their
// engine calls.
//
// Lock order, outermost first: a connection's lobby step
// (lobbyBus.step); busRoom.subMu, then busRoom.syncMu (a subscribe syncs);
// busRoom.news (PRESENCE news of remote changes is sent under it); then
// room.notify; then Server.mu; then conn.rmu or busRoom.mu (JOIN reads
// the remote members); then cluster.idxMu (the ISSUN NodeId index).
// cluster.procMu is taken alone, except around the lobby's busRoom.mu
// when it subscribes; cluster.dirMu (the NodeId directory's cache) alone;
// cluster.repairMu alone or under Server.mu (markRepair). Fan-out takes
// no lock (room member lists are immutable snapshots).
package relay
