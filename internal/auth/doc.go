// Package auth verifies identities: HS256 connect tokens (Centrifugo style),
// Ed25519-signed node requests of the compute scheduler (with a replay cache),
// signatures over server nonces and API keys. Secrets are compared in
// constant time. It imports no transport.
package auth
