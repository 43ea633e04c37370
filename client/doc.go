// Package client is the public Go SDK for Switchboard circles: tenants served
// on one port at ws://host:port/{circle_key}, spoken to with JSON-RPC 2.0 over
// WebSocket (fetch_nonce, authenticate, play, whoami).
//
// A Conn is a self-managing connection to one circle. After Connect it dials,
// authenticates with a secp256k1 private key (Ethereum personal-sign over a
// server nonce), keeps the connection alive, and reconnects with exponential
// backoff and jitter, re-authenticating each time, until Close. Calls made
// while it is not ready fail fast with ErrNotConnected; calls in flight when
// the connection drops fail with ErrConnectionLost; server errors are
// *circles.Error. The wire protocol (methods, codes, request and result
// types) is package protocol/circles; the signature is package
// protocol/eip191. The SDK imports nothing else of this module.
//
// A Manager, built with NewManagerBuilder, holds one Conn per server URL and
// forwards calls to them.
//
// The package builds for GOOS=js GOARCH=wasm as well as natively. Under wasm
// the browser cannot send WebSocket pings, so the keep-alive probe is a
// whoami call instead.
package client
