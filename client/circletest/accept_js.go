//go:build js

package circletest

import "github.com/coder/websocket"

// acceptOptions: under js the server side cannot observe pings (and cannot
// serve at all; the package only compiles there).
func (f *Server) acceptOptions() *websocket.AcceptOptions { return nil }
