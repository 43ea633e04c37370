//go:build js

package client

import (
	"context"
	"errors"

	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// keepAlive uses a whoami round trip: browsers cannot send WebSocket pings
// (coder/websocket's Ping is a no-op under js/wasm). Any JSON-RPC answer,
// even an error, proves the connection alive.
func keepAlive(ctx context.Context, s *session) error {
	err := s.call(ctx, circles.MethodWhoami, struct{}{}, nil)
	var rpcErr *circles.Error
	if errors.As(err, &rpcErr) {
		return nil
	}
	return err
}
