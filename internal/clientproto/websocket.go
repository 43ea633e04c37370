package clientproto

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

// ProtobufSubprotocol is the WebSocket subprotocol of the Protobuf format;
// the transport serving WebSocketHandler must list it in
// ws.Config.Subprotocols.
const ProtobufSubprotocol = "centrifuge-protobuf"

// WebSocketHandler serves the protocol at /connection/websocket on t:
// JSON by default, Protobuf when the client asks for the
// centrifuge-protobuf subprotocol or cf_protocol=protobuf.
func (s *Server) WebSocketHandler(t *ws.Transport) http.Handler {
	return &wsHandler{srv: s, t: t}
}

type wsHandler struct {
	srv *Server
	t   *ws.Transport
}

func (h *wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format, o := FormatJSON, ws.Options{}
	if ws.HeaderHasToken(r.Header, "Sec-WebSocket-Protocol", ProtobufSubprotocol) {
		format, o.Subprotocol = FormatProtobuf, ProtobufSubprotocol
	} else if r.URL.Query().Get("cf_protocol") == "protobuf" {
		format = FormatProtobuf
	}
	o.Binary = format == FormatProtobuf
	o.Open = func(c *ws.Conn) ws.Session { return wsSession{h.srv.NewSession(wsConn{c}, format)} }
	var refused *ws.Refused
	if err := h.t.Upgrade(w, r, o); errors.As(err, &refused) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(refused.Status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": refused.Status, "message": refused.Message}})
	}
}

// wsSession and wsConn adapt a Session to the transport; each is one
// pointer, so neither costs an allocation per connection.
type wsSession struct{ s *Session }

func (w wsSession) OnMessage(data []byte) { w.s.HandleMessage(data) }
func (w wsSession) OnClose()              { w.s.Closed() }

type wsConn struct{ c *ws.Conn }

func (w wsConn) Write(data []byte) error { return w.c.Write(data) }

func (w wsConn) Close(d hub.Disconnect) {
	if d == hub.DisconnectSlow || d == hub.DisconnectWriteError {
		w.c.Abort() // the peer does not read: a close frame would block
		return
	}
	w.c.Close(uint16(d.Code), d.Reason)
}
