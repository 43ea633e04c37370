// Package ws is the WebSocket transport of the Centrifugo-compatible client
// protocol (/connection/websocket), built on github.com/lxzan/gws.
package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/internal/clientproto"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Defaults of Config.
const (
	DefaultMessageSizeLimit = 65536
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReadBufferSize   = 512
	ProtobufSubprotocol     = "centrifuge-protobuf"
)

// Config configures a Handler. Zero values mean defaults.
type Config struct {
	Server *clientproto.Server // required
	// AllowedOrigins lists origins allowed to connect from browsers
	// ("*" allows any; a request without Origin is always allowed). Empty
	// allows only same-host origins.
	AllowedOrigins []string
	// MessageSizeLimit caps incoming message size in bytes.
	MessageSizeLimit int
	// ReadBufferSize is the per-connection read buffer in bytes.
	ReadBufferSize int
	// WriteTimeout bounds one write to a client.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Handler upgrades HTTP requests to protocol sessions.
type Handler struct {
	cfg Config
	log *slog.Logger
	// plain serves clients asking for no subprotocol; proto those asking
	// for centrifuge-protobuf (gws fails negotiation otherwise).
	plain, proto *gws.Upgrader
	mu           sync.Mutex
	conns        map[*gws.Conn]struct{} // connections whose read goroutine runs
	closing      bool
}

// Shutdown refuses new upgrades, closes connections still open (the hub
// has already disconnected every connected client; this catches sockets
// that never sent connect) and waits for their read goroutines to end.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	open := make([]*gws.Conn, 0, len(h.conns))
	for c := range h.conns {
		open = append(open, c)
	}
	h.mu.Unlock()
	// Bound every pending write first (a deadline change applies to writes
	// in progress), so close frames don't queue one by one behind stuck
	// sockets.
	deadline := time.Now().Add(time.Second)
	for _, c := range open {
		_ = c.SetWriteDeadline(deadline)
	}
	for _, c := range open {
		_ = c.WriteClose(uint16(hub.DisconnectShutdown.Code), []byte(hub.DisconnectShutdown.Reason))
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		n := len(h.conns)
		h.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ws: %d connections still open: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Server == nil {
		return nil, errors.New("ws: server is required")
	}
	if cfg.MessageSizeLimit <= 0 {
		cfg.MessageSizeLimit = DefaultMessageSizeLimit
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "ws"), conns: map[*gws.Conn]struct{}{}}
	opt := func(subprotocols []string) *gws.ServerOption {
		return &gws.ServerOption{
			ReadMaxPayloadSize: cfg.MessageSizeLimit,
			ReadBufferSize:     cfg.ReadBufferSize,
			SubProtocols:       subprotocols,
			HandshakeTimeout:   10 * time.Second,
			NewSession:         func() gws.SessionStorage { return &slot{} },
			Logger:             gwsLogger{h.log},
		}
	}
	h.plain = gws.NewUpgrader(&events{h: h}, opt(nil))
	h.proto = gws.NewUpgrader(&events{h: h}, opt([]string{ProtobufSubprotocol}))
	return h, nil
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "message": msg}})
}

// OriginAllowed reports whether a browser origin may connect.
func OriginAllowed(allowed []string, origin, host string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if len(allowed) == 0 {
		return strings.EqualFold(u.Host, host)
	}
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
		// "*.example.com" or "https://*.example.com": subdomains only, and
		// the scheme when one is given.
		if i := strings.Index(a, "*."); i >= 0 {
			scheme, domain := a[:i], strings.ToLower(a[i+1:]) // "https://", ".example.com"
			if (scheme == "" || strings.EqualFold(scheme, u.Scheme+"://")) &&
				strings.HasSuffix(strings.ToLower(u.Hostname()), domain) {
				return true
			}
		}
	}
	return false
}

// ServeHTTP upgrades the request and hands the connection to its own read
// goroutine, so net/http's per-request goroutine, buffers and request are
// released (they would otherwise stay pinned for the connection's life).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeJSONError(w, http.StatusBadRequest, "websocket upgrade expected")
		return
	}
	if !OriginAllowed(h.cfg.AllowedOrigins, r.Header.Get("Origin"), r.Host) {
		h.log.Debug("origin rejected", "origin", r.Header.Get("Origin"))
		writeJSONError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	format, upgrader := clientproto.FormatJSON, h.plain
	if headerHasToken(r.Header.Get("Sec-WebSocket-Protocol"), ProtobufSubprotocol) {
		format, upgrader = clientproto.FormatProtobuf, h.proto
	} else if r.URL.Query().Get("cf_protocol") == "protobuf" {
		format = clientproto.FormatProtobuf
	}
	conn, err := upgrader.Upgrade(w, r)
	if err != nil {
		h.log.Debug("upgrade failed", "error", err)
		return
	}
	t := &transport{conn: conn, opcode: gws.OpcodeText, writeTimeout: h.cfg.WriteTimeout}
	if format == clientproto.FormatProtobuf {
		t.opcode = gws.OpcodeBinary
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = conn.WriteClose(uint16(hub.DisconnectShutdown.Code), []byte(hub.DisconnectShutdown.Reason))
		return
	}
	h.conns[conn] = struct{}{}
	h.mu.Unlock()
	conn.Session().(*slot).s = h.cfg.Server.NewSession(t, format)
	// ReadLoop runs directly as the goroutine's function: any wrapper frame
	// tips the goroutine past the minimum stack size. OnClose, which ends
	// ReadLoop, forgets the connection.
	go conn.ReadLoop()
}

func headerHasToken(v, token string) bool {
	for _, p := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(p), token) {
			return true
		}
	}
	return false
}

type transport struct {
	conn         *gws.Conn
	opcode       gws.Opcode // text for JSON, binary for Protobuf
	writeTimeout time.Duration
}

func (t *transport) Write(data []byte) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.writeTimeout))
	return t.conn.WriteMessage(t.opcode, data)
}

func (t *transport) Close(d hub.Disconnect) {
	if d == hub.DisconnectSlow || d == hub.DisconnectWriteError {
		// The peer does not read; a close frame would block behind its
		// full buffer.
		_ = t.conn.NetConn().Close()
		return
	}
	_ = t.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = t.conn.WriteClose(uint16(d.Code), []byte(d.Reason))
}

type events struct{ h *Handler }

func session(c *gws.Conn) *clientproto.Session { return c.Session().(*slot).s }

func (e *events) OnOpen(*gws.Conn) {}

func (e *events) OnClose(c *gws.Conn, _ error) {
	if s := session(c); s != nil {
		s.Closed()
	}
	e.h.mu.Lock()
	delete(e.h.conns, c)
	e.h.mu.Unlock()
}

func (e *events) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }

func (e *events) OnPong(*gws.Conn, []byte) {}

func (e *events) OnMessage(c *gws.Conn, msg *gws.Message) {
	// The JSON decoder aliases strings into its input, and gws reuses its
	// buffer after Close: the session gets its own copy.
	data := bytes.Clone(msg.Bytes())
	msg.Close()
	// Commands run deep (token parsing, codecs); running them on a
	// short-lived goroutine keeps the long-lived read goroutine's stack at
	// its minimum. The read loop waits, so commands stay in order.
	done := make(chan struct{})
	go func() {
		defer close(done)
		session(c).HandleMessage(data)
	}()
	<-done
}

// slot is a one-value gws.SessionStorage holding the connection's
// session, far smaller than gws's default map.
type slot struct{ s *clientproto.Session }

func (s *slot) Len() int { return 1 }
func (s *slot) Load(string) (any, bool) {
	return s.s, s.s != nil
}
func (s *slot) Delete(string) {}
func (s *slot) Store(_ string, v any) {
	if ss, ok := v.(*clientproto.Session); ok {
		s.s = ss
	}
}
func (s *slot) Range(f func(string, any) bool) { f("session", s.s) }

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error("websocket error", "detail", v) }
