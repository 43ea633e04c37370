package bench

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/centrifugal/protocol"
	"github.com/lxzan/gws"
	"github.com/stretchr/testify/require"
)

// encodeReplies frames replies the way a Centrifugo server does: JSON lines or
// uvarint-length-delimited Protobuf.
func encodeReplies(tb testing.TB, pb bool, rs ...*protocol.Reply) []byte {
	tb.Helper()
	var out []byte
	for _, r := range rs {
		if pb {
			b, err := r.MarshalVT()
			require.NoError(tb, err)
			out = binary.AppendUvarint(out, uint64(len(b)))
			out = append(out, b...)
			continue
		}
		b, err := protocol.NewJSONReplyEncoder().Encode(r)
		require.NoError(tb, err)
		if len(out) > 0 {
			out = append(out, '\n')
		}
		out = append(out, b...)
	}
	return out
}

// fakeServer is a small Centrifugo-compatible server for end-to-end tests of the tool: connect
// (any token), subscribe, publish, rpc (echo), server pings, /api/publish. Knobs inject the
// faults the tool must report.
type fakeServer struct {
	tb     testing.TB
	srv    *httptest.Server
	apiKey string

	dupEvery  int    // duplicate every n-th publication to every subscriber (0 = never)
	kickUser  string // close this user's connection with code 3008 on its first publication
	rejectSub bool   // answer subscribe with error 103
	// closeOnConnect closes the connection with this code instead of replying to connect.
	closeOnConnect uint16

	// peers also deliver this server's publications to their own subscribers,
	// like the nodes of one cluster sharing a broker (see link).
	peers []*fakeServer

	mu     sync.Mutex
	subs   map[string][]*fakeConn
	conns  atomic.Int64 // connections accepted (connect replied)
	pubs   atomic.Int64
	pongs  atomic.Int64
	active atomic.Int64
}

type fakeConn struct {
	ws     *gws.Conn
	pb     bool
	user   string
	kicked atomic.Bool
	mu     sync.Mutex
}

func newFakeServer(tb testing.TB) *fakeServer {
	f := &fakeServer{tb: tb, apiKey: "key", subs: map[string][]*fakeConn{}}
	upPB := gws.NewUpgrader(f, &gws.ServerOption{SubProtocols: []string{"centrifuge-protobuf"}})
	upJSON := gws.NewUpgrader(f, &gws.ServerOption{})
	mux := http.NewServeMux()
	mux.HandleFunc("/connection/websocket", func(w http.ResponseWriter, r *http.Request) {
		up := upJSON
		if r.Header.Get("Sec-WebSocket-Protocol") != "" {
			up = upPB
		}
		ws, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		fc := &fakeConn{ws: ws, pb: ws.SubProtocol() == "centrifuge-protobuf"}
		ws.Session().Store("c", fc)
		f.active.Add(1)
		go ws.ReadLoop()
	})
	mux.HandleFunc("/api/publish", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != f.apiKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.publish(req.Channel, req.Data)
		_, _ = io.WriteString(w, `{"result":{}}`)
	})
	f.srv = httptest.NewServer(mux)
	tb.Cleanup(f.close)
	return f
}

func (f *fakeServer) wsURL() string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/connection/websocket"
}

func (f *fakeServer) close() {
	f.mu.Lock()
	var all []*fakeConn
	for _, cs := range f.subs {
		all = append(all, cs...)
	}
	f.mu.Unlock()
	for _, c := range all {
		_ = c.ws.NetConn().Close()
	}
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeServer) conn(ws *gws.Conn) *fakeConn {
	v, _ := ws.Session().Load("c")
	return v.(*fakeConn)
}

func (f *fakeServer) send(c *fakeConn, rs ...*protocol.Reply) {
	op := gws.OpcodeText
	if c.pb {
		op = gws.OpcodeBinary
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.WriteMessage(op, encodeReplies(f.tb, c.pb, rs...))
}

// link makes the servers one cluster: a publication to any of them reaches
// the subscribers of all.
func link(servers ...*fakeServer) {
	for _, a := range servers {
		for _, b := range servers {
			if a != b {
				a.peers = append(a.peers, b)
			}
		}
	}
}

func (f *fakeServer) publish(ch string, data []byte) {
	n := f.pubs.Add(1)
	f.deliver(ch, data, n)
	for _, p := range f.peers {
		p.deliver(ch, data, n)
	}
}

// deliver sends publication n to this server's subscribers of ch.
func (f *fakeServer) deliver(ch string, data []byte, n int64) {
	f.mu.Lock()
	subs := append([]*fakeConn(nil), f.subs[ch]...)
	f.mu.Unlock()
	push := &protocol.Reply{Push: &protocol.Push{Channel: ch, Pub: &protocol.Publication{Data: data}}}
	for _, c := range subs {
		if c.kicked.Load() {
			continue
		}
		if f.kickUser != "" && c.user == f.kickUser {
			c.kicked.Store(true)
			_ = c.ws.WriteClose(3008, []byte("slow"))
			continue
		}
		if f.dupEvery > 0 && n%int64(f.dupEvery) == 0 {
			f.send(c, push, push)
			continue
		}
		f.send(c, push)
	}
}

func (f *fakeServer) OnOpen(*gws.Conn)             {}
func (f *fakeServer) OnPing(s *gws.Conn, p []byte) { _ = s.WritePong(p) }
func (f *fakeServer) OnPong(*gws.Conn, []byte)     {}
func (f *fakeServer) OnClose(*gws.Conn, error)     { f.active.Add(-1) }
func (f *fakeServer) OnMessage(s *gws.Conn, m *gws.Message) {
	defer m.Close()
	c := f.conn(s)
	data := m.Bytes()
	var dec protocol.CommandDecoder
	if c.pb {
		dec = protocol.NewProtobufCommandDecoder(data)
	} else {
		dec = protocol.NewJSONCommandDecoder(data)
	}
	for {
		cmd, err := dec.Decode()
		if cmd != nil {
			f.handle(c, cmd)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = s.WriteClose(3501, []byte("bad request"))
			}
			return
		}
	}
}

func (f *fakeServer) handle(c *fakeConn, cmd *protocol.Command) {
	// The JSON decoder is zero-copy: anything kept must be cloned before the frame is recycled.
	switch {
	case cmd.Connect != nil:
		if f.closeOnConnect != 0 {
			_ = c.ws.WriteClose(f.closeOnConnect, []byte("invalid token"))
			return
		}
		f.conns.Add(1)
		c.user = "user?"
		if cmd.Connect.Token != "" {
			c.user = strings.Clone(tokenSub(cmd.Connect.Token))
		}
		// Reply, then ping straight away: the client must answer with an empty command.
		f.send(c, &protocol.Reply{Id: cmd.Id, Connect: &protocol.ConnectResult{Client: "x", Ping: 25, Pong: true}}, &protocol.Reply{})
	case cmd.Subscribe != nil:
		if f.rejectSub {
			f.send(c, &protocol.Reply{Id: cmd.Id, Error: &protocol.Error{Code: 103, Message: "permission denied"}})
			return
		}
		f.mu.Lock()
		ch := strings.Clone(cmd.Subscribe.Channel)
		f.subs[ch] = append(f.subs[ch], c)
		f.mu.Unlock()
		f.send(c, &protocol.Reply{Id: cmd.Id, Subscribe: &protocol.SubscribeResult{}})
	case cmd.Publish != nil:
		f.publish(cmd.Publish.Channel, cmd.Publish.Data)
		f.send(c, &protocol.Reply{Id: cmd.Id, Publish: &protocol.PublishResult{}})
	case cmd.Rpc != nil:
		if cmd.Rpc.Method != "echo" {
			f.send(c, &protocol.Reply{Id: cmd.Id, Error: &protocol.Error{Code: 104, Message: "method not found"}})
			return
		}
		f.send(c, &protocol.Reply{Id: cmd.Id, Rpc: &protocol.RPCResult{Data: cmd.Rpc.Data}})
	case cmd.Id == 0:
		f.pongs.Add(1)
	}
}

// tokenSub extracts "sub" from a JWT without verifying it (the fake trusts everyone).
func tokenSub(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64RawURL(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &claims)
	return claims.Sub
}

func base64RawURL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
