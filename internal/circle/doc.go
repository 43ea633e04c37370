// Package circle serves circles: many tenants on one port, each addressed
// by its secp256k1 public key at GET /{circle_key}, speaking JSON-RPC 2.0
// over WebSocket (fetch_nonce, authenticate, play, whoami, ping). The wire
// protocol is package protocol/circles; connections run on the shared
// WebSocket transport (internal/transport/ws) under the shared origin
// policy (internal/origin).
//
// Server is an http.Handler meant to be mounted as the fallback of the
// server's mux so that circle routes never shadow other routes. Unknown or
// malformed circles get HTTP 404 before any upgrade; a known circle without
// a WebSocket upgrade gets 426. Authentication state is per connection and
// per circle. Plays are handed to a Player (internal/dispatch).
package circle
