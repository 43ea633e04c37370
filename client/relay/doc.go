//go:build !js

// Package relay is the Go client of the Switchboard game relay's native
// protocol (switchboard-relay/1 over QUIC; wire format in protocol/relay):
// dial with a hub token, join rooms, send reliable and unreliable events,
// receive events and presence, and come back to a lost session. With
// Options.WebTransport the same session runs over WebTransport (HTTP/3,
// https://addr/relay), as a browser connects.
//
//	c, err := relay.Dial(ctx, "game.example.com:5000", relay.Options{Token: jwt, Reconnect: true})
//	room, err := c.Join(ctx, "table-1", relay.JoinOptions{Create: true})
//	err = room.Send(1, []byte("move"))
//	for ev := range c.Events() { … }
//
// A Client is safe for concurrent use. Events and presence arrive on
// channels the caller drains: a client that stops reading reliable events
// is eventually closed by the relay as a slow consumer; unreliable events
// and presence news beyond the buffers are dropped.
//
// # Reconnect
//
// Without Options.Reconnect a lost connection ends the Client (Done, Err);
// Options.ResumeToken with a new Dial comes back to the session by hand.
// With it, the Client redials whenever the connection ends other than by
// Close or Abandon: lost (QUIC idle timeout, a close with a non-zero
// code) or a GOAWAY whose code invites back (3000-3499, from 5000), in
// which case the first redial waits at least its retry-after. Redials
// wait MinBackoff doubled per attempt up to MaxBackoff, less up to half at
// random (jitter), bounded by DialTimeout each, MaxAttempts in a row.
//
// Within the relay's grace window (Limits.ResumeMillis, from the loss) a
// redial presents the resume token: the relay hands back the same NodeId,
// session id and rooms and the other members see no leave (StateResumed).
// A refused token is tried again a few times (the relay may not have
// noticed the loss yet); after that, after the window, or after a GOAWAY
// other than missed heartbeats (the relay keeps no session then), the
// redial opens a new session (Options.NodeID again, else a new one) and
// rejoins every room the application is in, creating those that no
// longer exist with the original JoinOptions (StateRejoined; the others
// see a leave and a join). Events sent meanwhile are lost both ways;
// sends between connections return ErrReconnecting. A refused token
// (unauthorized) ends the Client. Room values stay valid across
// reconnections; Events and Presence are the same channels.
//
// Options.OnState sees every transition (StateConnected, StateReconnecting,
// StateResumed, StateRejoined, StateClosed) in order; Client.State reads
// the current one.
//
// The package does not build for js/wasm (QUIC needs UDP); browsers use
// WebTransport directly (the relay's demo page, /relay/demo, shows how).
package relay
