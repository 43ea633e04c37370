// Package auth verifies identities: HS256 connect tokens (Centrifugo style),
// signatures over server nonces and API keys. Secrets are compared in
// constant time. It imports no transport.
package auth
