//go:build js

package client

import (
	"context"
	"errors"
)

// keepAlive uses a whoami round trip: browsers cannot send WebSocket pings
// (coder/websocket's Ping is a no-op under js/wasm). Any JSON-RPC answer,
// even an error, proves the connection alive.
func keepAlive(ctx context.Context, s *session) error {
	err := s.call(ctx, "whoami", struct{}{}, nil)
	var rpcErr *RPCError
	if errors.As(err, &rpcErr) {
		return nil
	}
	return err
}
