// Package ws is the WebSocket transport, built on github.com/lxzan/gws. It
// knows no protocol: it checks the origin, upgrades, runs each
// connection's read loop and hands every message to the connection's
// Session; the session writes back through the Conn. The Centrifugo client
// protocol (/connection/websocket) and the circles JSON-RPC protocol
// (/{circle_key}) both run on it.
package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/switchboard-rt/switchboard/internal/origin"
)

// Defaults of Config.
const (
	DefaultMessageSizeLimit = 65536
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReadBufferSize   = 512
	DefaultHandshakeTimeout = 10 * time.Second
	// closeTimeout bounds writing a close frame.
	closeTimeout = time.Second
)

// Close codes the transport itself sends.
const (
	CloseGoingAway       = 1001
	CloseUnsupportedData = 1003
	CloseInternalError   = 1011
)

// Session is one protocol session on a connection. The transport calls
// OnMessage for each message, in order, one at a time; OnClose once when
// the connection has ended, after the last OnMessage returned.
type Session interface {
	// OnMessage handles one message; data belongs to the session.
	OnMessage(data []byte)
	// OnClose is called once the connection is closed; it may block until
	// the session's own goroutines are done (Shutdown waits for it).
	OnClose()
}

// Options tell Upgrade how to run one connection.
type Options struct {
	// Subprotocol, when not empty, is selected in the handshake; it must be
	// one of Config.Subprotocols.
	Subprotocol string
	// Binary makes Conn.Write send binary messages instead of text.
	Binary bool
	// Open creates the connection's session right after the upgrade,
	// before any message is read. Required.
	Open func(*Conn) Session
}

var errShutdown = errors.New("ws: shut down during the upgrade")

// Refused is returned by Upgrade when it refused a request before the
// upgrade and wrote nothing: the caller answers Status with Message in its
// own error format.
type Refused struct {
	Status  int
	Message string
}

func (e *Refused) Error() string { return fmt.Sprintf("ws: %d %s", e.Status, e.Message) }

// Config configures a Transport. Zero values mean defaults.
type Config struct {
	// Origins decides which browser origins may upgrade; nil allows only
	// same-origin browsers (requests without Origin are always allowed).
	Origins *origin.Checker
	// MessageSizeLimit caps an incoming message in bytes; a larger one
	// closes the connection with 1009. Zero means DefaultMessageSizeLimit.
	MessageSizeLimit int
	// ReadBufferSize is the per-connection read buffer in bytes.
	ReadBufferSize int
	// WriteTimeout bounds one write; zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing (no message, no
	// ping or pong) for that long; zero means no idle timeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the upgrade; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// TextOnly closes connections that send binary messages with 1003.
	TextOnly bool
	// CheckUTF8 closes connections that send text that is not UTF-8.
	CheckUTF8 bool
	// Subprotocols lists the subprotocols Options.Subprotocol may select.
	Subprotocols []string
	// ShutdownCode and ShutdownReason are sent to every connection still
	// open at Shutdown; zero means 1001 "server shutting down".
	ShutdownCode   uint16
	ShutdownReason string
	Logger         *slog.Logger
}

// Transport upgrades HTTP requests to WebSocket connections and owns their
// read goroutines. It is safe for concurrent use.
type Transport struct {
	cfg Config
	log *slog.Logger
	// upgraders by subprotocol ("" for none): gws negotiates one fixed
	// list per upgrader and fails when the client offers none of it.
	upgraders map[string]*gws.Upgrader

	mu      sync.Mutex
	conns   map[*Conn]struct{} // connections whose read goroutine runs
	closing bool
}

// New returns a Transport for cfg.
func New(cfg Config) (*Transport, error) {
	if cfg.MessageSizeLimit <= 0 {
		cfg.MessageSizeLimit = DefaultMessageSizeLimit
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IdleTimeout < 0 {
		return nil, errors.New("ws: idle timeout must not be negative")
	}
	if cfg.ShutdownCode == 0 {
		cfg.ShutdownCode, cfg.ShutdownReason = CloseGoingAway, "server shutting down"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{cfg: cfg, log: cfg.Logger.With("component", "ws"), conns: map[*Conn]struct{}{},
		upgraders: map[string]*gws.Upgrader{}}
	opt := func(subprotocols []string) *gws.ServerOption {
		return &gws.ServerOption{
			ReadMaxPayloadSize: cfg.MessageSizeLimit,
			ReadBufferSize:     cfg.ReadBufferSize,
			CheckUtf8Enabled:   cfg.CheckUTF8,
			SubProtocols:       subprotocols,
			HandshakeTimeout:   cfg.HandshakeTimeout,
			NewSession:         func() gws.SessionStorage { return &Conn{} },
			Logger:             gwsLogger{t.log},
		}
	}
	t.upgraders[""] = gws.NewUpgrader(events{t}, opt(nil))
	for _, p := range cfg.Subprotocols {
		if p == "" {
			return nil, errors.New("ws: empty subprotocol")
		}
		t.upgraders[p] = gws.NewUpgrader(events{t}, opt([]string{p}))
	}
	return t, nil
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return HeaderHasToken(r.Header, "Connection", "upgrade") && HeaderHasToken(r.Header, "Upgrade", "websocket")
}

// HeaderHasToken reports whether a comma-separated header of h holds token
// (case-insensitive).
func HeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), token) {
				return true
			}
		}
	}
	return false
}

// Upgrade checks r's origin, upgrades it and starts the connection's read
// goroutine, which feeds the session o.Open returns. It returns a *Refused
// (nothing written) for a request that is not an upgrade (400), a
// disallowed origin (403), a connection that cannot be hijacked (505) or
// during Shutdown (503); any other error means the handshake failed and gws
// has answered. o.Open is called exactly when Upgrade returns nil.
// net/http's request goroutine is released on return.
func (t *Transport) Upgrade(w http.ResponseWriter, r *http.Request, o Options) error {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return &Refused{http.StatusBadRequest, "websocket upgrade expected"}
	}
	if !t.cfg.Origins.AllowedRequest(r) {
		t.log.Debug("origin rejected", "origin", r.Header.Get("Origin"))
		return &Refused{http.StatusForbidden, "origin not allowed"}
	}
	if _, ok := w.(http.Hijacker); !ok {
		return &Refused{http.StatusHTTPVersionNotSupported, "WebSocket needs HTTP/1.1"}
	}
	up, ok := t.upgraders[o.Subprotocol]
	if !ok || o.Open == nil {
		return errors.New("ws: unknown subprotocol or no Open")
	}
	t.mu.Lock()
	closing := t.closing
	t.mu.Unlock()
	if closing {
		return &Refused{http.StatusServiceUnavailable, "server shutting down"}
	}
	socket, err := up.Upgrade(w, r)
	if err != nil {
		t.log.Debug("upgrade failed", "error", err)
		return fmt.Errorf("ws: upgrade: %w", err)
	}
	c := socket.Session().(*Conn)
	c.socket, c.t, c.binary = socket, t, o.Binary
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		c.Close(t.cfg.ShutdownCode, t.cfg.ShutdownReason)
		return errShutdown
	}
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	c.s = o.Open(c)
	c.touch()
	// ReadLoop runs directly as the goroutine's function: any wrapper frame
	// tips the goroutine past the minimum stack size. OnClose, which ends
	// ReadLoop, forgets the connection.
	go socket.ReadLoop()
	return nil
}

// Shutdown refuses new upgrades, sends the shutdown close frame to every
// connection still open and waits until their read goroutines (OnClose
// included) ended. When ctx ends first it drops the sockets and returns
// ctx's error once the goroutines are gone. It is idempotent.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	open := make([]*Conn, 0, len(t.conns))
	for c := range t.conns {
		open = append(open, c)
	}
	t.mu.Unlock()
	// Bound every pending write first (a deadline change applies to writes
	// in progress), so close frames don't queue one by one behind stuck
	// sockets.
	deadline := time.Now().Add(closeTimeout)
	for _, c := range open {
		c.beginClose(deadline)
	}
	for _, c := range open {
		_ = c.socket.WriteClose(t.cfg.ShutdownCode, []byte(t.cfg.ShutdownReason))
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		t.mu.Lock()
		n := len(t.conns)
		t.mu.Unlock()
		if n == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("ws: %d connections still open: %w", n, ctx.Err())
				t.mu.Lock()
				for c := range t.conns {
					c.Abort()
				}
				t.mu.Unlock()
			}
		case <-tick.C:
		}
	}
}

// Conn is one upgraded connection as its Session sees it. Its methods are
// safe for concurrent use. It doubles as gws's per-connection storage, so
// a connection costs the transport one small object.
type Conn struct {
	socket  *gws.Conn
	t       *Transport
	s       Session
	binary  bool
	closing atomic.Bool // a close frame is being written: keep its deadline
	wmu     sync.Mutex  // pairs each write with its deadline
}

// Write sends data as one message (binary or text, per Options.Binary),
// bounded by Config.WriteTimeout. A failed write drops the connection.
func (c *Conn) Write(data []byte) error {
	op := gws.OpcodeText
	if c.binary {
		op = gws.OpcodeBinary
	}
	if err := c.write(op, data); err != nil {
		c.Abort()
		return err
	}
	return nil
}

// write writes one frame under the write timeout, then clears the
// deadline so that frames gws writes by itself (the close echo) never meet
// a stale one; a closing connection keeps its close deadline.
func (c *Conn) write(op gws.Opcode, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.socket.SetWriteDeadline(time.Now().Add(c.t.cfg.WriteTimeout))
	err := c.socket.WriteMessage(op, data)
	if !c.closing.Load() {
		_ = c.socket.SetWriteDeadline(time.Time{})
		if c.closing.Load() { // beginClose ran in between: restore its bound
			_ = c.socket.SetWriteDeadline(time.Now().Add(closeTimeout))
		}
	}
	return err
}

// beginClose bounds every write from now on, those in progress included
// (a deadline change applies to them), by deadline.
func (c *Conn) beginClose(deadline time.Time) {
	c.closing.Store(true)
	_ = c.socket.SetWriteDeadline(deadline)
}

// Close sends a close frame with code and reason (bounded by one second)
// and closes the connection. Later calls do nothing.
func (c *Conn) Close(code uint16, reason string) {
	c.beginClose(time.Now().Add(closeTimeout))
	_ = c.socket.WriteClose(code, []byte(reason))
}

// Abort drops the connection without a close frame: for peers that do not
// read, whose close frame would block behind a full buffer.
func (c *Conn) Abort() { _ = c.socket.NetConn().Close() }

func (c *Conn) touch() {
	if d := c.t.cfg.IdleTimeout; d > 0 {
		_ = c.socket.SetReadDeadline(time.Now().Add(d))
	}
}

// gws.SessionStorage, holding nothing but the Conn itself (far smaller
// than gws's default map).
func (c *Conn) Len() int                       { return 1 }
func (c *Conn) Load(string) (any, bool)        { return c, true }
func (c *Conn) Delete(string)                  {}
func (c *Conn) Store(string, any)              {}
func (c *Conn) Range(f func(string, any) bool) { f("conn", c) }

type events struct{ t *Transport }

func connOf(s *gws.Conn) *Conn { return s.Session().(*Conn) }

func (e events) OnOpen(*gws.Conn) {}

func (e events) OnClose(s *gws.Conn, _ error) {
	c := connOf(s)
	if c.s != nil {
		c.s.OnClose()
	}
	e.t.mu.Lock()
	delete(e.t.conns, c)
	e.t.mu.Unlock()
}

func (e events) OnPing(s *gws.Conn, payload []byte) {
	c := connOf(s)
	c.touch()
	_ = c.write(gws.OpcodePong, payload)
}

func (e events) OnPong(s *gws.Conn, _ []byte) { connOf(s).touch() }

func (e events) OnMessage(s *gws.Conn, msg *gws.Message) {
	c := connOf(s)
	c.touch()
	if e.t.cfg.TextOnly && msg.Opcode != gws.OpcodeText {
		msg.Close()
		c.Close(CloseUnsupportedData, "text messages only")
		return
	}
	// gws reuses its buffer after Close: the session gets its own copy.
	data := bytes.Clone(msg.Bytes())
	msg.Close()
	// Sessions run deep (token parsing, codecs, JSON); running them on a
	// short-lived goroutine keeps the long-lived read goroutine's stack at
	// its minimum. The read loop waits, so messages stay in order.
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				e.t.log.Error("websocket session panicked", "panic", fmt.Sprint(r))
				c.Close(CloseInternalError, "internal error")
			}
		}()
		c.s.OnMessage(data)
	}()
	<-done
}

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error("websocket error", "detail", fmt.Sprint(v...)) }
