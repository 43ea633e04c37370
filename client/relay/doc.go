//go:build !js

// Package relay is the Go client of the Switchboard game relay's native
// protocol (switchboard-relay/1 over QUIC; wire format in protocol/relay):
// dial with a hub token, join rooms, send reliable and unreliable events,
// receive events and presence, and come back to a lost session with its
// resume token. With Options.WebTransport the same session runs over
// WebTransport (HTTP/3, https://addr/relay), as a browser connects.
//
//	c, err := relay.Dial(ctx, "game.example.com:5000", relay.Options{Token: jwt})
//	room, err := c.Join(ctx, "table-1", relay.JoinOptions{Create: true})
//	err = room.Send(1, []byte("move"))
//	for ev := range c.Events() { … }
//
// A Client is safe for concurrent use. Events and presence arrive on
// channels the caller drains: a client that stops reading reliable events
// is eventually closed by the relay as a slow consumer; unreliable events
// and presence news beyond the buffers are dropped.
//
// The package does not build for js/wasm (QUIC needs UDP); browsers use
// WebTransport directly (the relay's demo page, /relay/demo, shows how).
package relay
