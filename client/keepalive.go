//go:build !js

package client

import "context"

// keepAlive sends a WebSocket ping and waits for the pong (read by the
// session's read loop).
func keepAlive(ctx context.Context, s *session) error {
	return s.ws.Ping(ctx)
}
