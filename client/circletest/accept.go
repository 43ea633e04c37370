//go:build !js

package circletest

import (
	"context"

	"github.com/coder/websocket"
)

func (f *Server) acceptOptions() *websocket.AcceptOptions {
	return &websocket.AcceptOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			f.pings.Add(1)
			return true
		},
	}
}
