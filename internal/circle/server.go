package circle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

// Defaults of Config.
const (
	DefaultMaxMessageSize = 1 << 20
	DefaultMaxBatch       = 32
	DefaultMaxInflight    = 8
	DefaultMaxConnections = 10_000
	DefaultPlayTimeout    = 60 * time.Second
	DefaultIdleTimeout    = 120 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	readBufferSize        = 4096
)

// Player runs a play for a circle on behalf of caller (a canonical public
// key or "") and returns the result string. Errors with a
// `ClientMessage() string` method are reported to the client as -32000
// with that message in data; others are logged and reported as internal
// errors. *dispatch.Local and *dispatch.Redis implement it.
type Player interface {
	Play(ctx context.Context, circle, caller, script string) (string, error)
}

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// Keys are the hosted circles: secp256k1 public keys in hex.
	Keys []string
	// EnableAuth requires authenticate before play.
	EnableAuth bool
	// Player runs plays; required.
	Player Player
	// Nonces issues authentication nonces; nil means a store with
	// auth.NonceConfig defaults and Now as its clock.
	Nonces *auth.NonceStore
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxMessageSize bounds an incoming frame in bytes (larger frames close
	// the connection with 1009); zero means DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxBatch bounds the requests of a batch; zero means DefaultMaxBatch.
	MaxBatch int
	// MaxInflight bounds the frames with plays one connection has running;
	// zero means DefaultMaxInflight. Beyond it plays get -32003.
	MaxInflight int
	// MaxConnections bounds open circle connections; beyond it upgrades get
	// HTTP 503. Zero means DefaultMaxConnections.
	MaxConnections int
	// PlayTimeout bounds one play, queueing included; zero means
	// DefaultPlayTimeout.
	PlayTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing (no frame, no ping)
	// for that long; zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response; zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Origins decides which browser origins may connect (requests without
	// Origin always may); nil allows same-origin browsers only, like an
	// empty client.allowed_origins.
	Origins *origin.Checker
	// Logger receives logs; nil means discard.
	Logger *slog.Logger
	// Metrics, when not nil, receives the server's collectors.
	Metrics prometheus.Registerer
}

// Server serves the circles over HTTP/WebSocket. It is safe for concurrent
// use. Connections run on the shared WebSocket transport (package ws),
// which owns their read goroutines; each session owns its play goroutines
// and waits for them when its connection closes. Shutdown closes them all
// and waits.
type Server struct {
	cfg    Config
	reg    *Registry
	nonces *auth.NonceStore
	log    *slog.Logger
	ws     *ws.Transport
	m      *serverMetrics

	conns  atomic.Int64 // admitted connections, upgrading or open
	nextID atomic.Uint64

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
	plays    sync.WaitGroup // running plays; Add only under mu while !closing
}

// New validates cfg (an invalid key is an error naming it) and returns a
// Server.
func New(cfg Config) (*Server, error) {
	reg, err := NewRegistry(cfg.Keys)
	if err != nil {
		return nil, err
	}
	if cfg.Player == nil {
		return nil, errors.New("circle: no Player configured")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.PlayTimeout <= 0 {
		cfg.PlayTimeout = DefaultPlayTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Nonces == nil {
		cfg.Nonces = auth.NewNonceStore(auth.NonceConfig{Now: cfg.Now})
	}
	m, err := newServerMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, reg: reg, nonces: cfg.Nonces, m: m,
		log:      cfg.Logger.With("component", "circle"),
		sessions: make(map[*session]struct{}),
	}
	s.ws, err = ws.New(ws.Config{
		Origins: cfg.Origins, MessageSizeLimit: cfg.MaxMessageSize, ReadBufferSize: readBufferSize,
		WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout, HandshakeTimeout: cfg.WriteTimeout,
		TextOnly: true, CheckUTF8: true, ShutdownCode: ws.CloseGoingAway, ShutdownReason: "server shutting down",
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("circle: %w", err)
	}
	return s, nil
}

// Registry returns the hosted circles.
func (s *Server) Registry() *Registry { return s.reg }

// Match reports whether path has the shape of a circle route: "/" followed
// by exactly one non-empty segment. A mux can use it to send only such
// paths to the Server; Match does not check that the circle exists (an
// unknown circle must get the circle 404).
func (s *Server) Match(path string) bool {
	seg, ok := strings.CutPrefix(path, "/")
	return ok && seg != "" && !strings.Contains(seg, "/")
}

// ServeHTTP serves GET /{circle_key}. Unknown or malformed circles get 404
// with {"error":"Circle not found","message":"Circle '<key>' is not
// available on this server"}; paths that are not one segment get a plain
// JSON 404; a known circle without a WebSocket upgrade gets 426; a known
// circle with an upgrade becomes a JSON-RPC session on the transport, and
// ServeHTTP returns at once (the transport owns the connection). Refusals
// of the transport (a disallowed browser origin: 403) and of the server
// (shutting down, too many connections: 503) are JSON errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.Match(r.URL.Path) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
		return
	}
	raw := r.URL.Path[1:]
	circle, ok := s.reg.Lookup(raw)
	if !ok {
		s.m.rejected.WithLabelValues("not_found").Inc()
		writeJSON(w, http.StatusNotFound, notFoundBody{Error: "Circle not found", Message: fmt.Sprintf("Circle '%s' is not available on this server", raw)})
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "Method not allowed", "message": "circles accept only GET with a WebSocket upgrade"})
		return
	}
	if !ws.IsUpgrade(r) {
		s.m.rejected.WithLabelValues("no_upgrade").Inc()
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		writeJSON(w, http.StatusUpgradeRequired, map[string]string{"error": "Upgrade Required", "message": fmt.Sprintf("Circle '%s' is served over WebSocket; connect with a WebSocket client", raw)})
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Service Unavailable", "message": "server shutting down"})
		return
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConnections) {
		s.conns.Add(-1)
		s.m.rejected.WithLabelValues("limit").Inc()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Service Unavailable", "message": "too many connections"})
		return
	}
	sess := newSession(s, circle)
	err := s.ws.Upgrade(w, r, ws.Options{Open: sess.open})
	if err == nil {
		return // the session lives on; its OnClose releases the slot
	}
	s.conns.Add(-1)
	var refused *ws.Refused
	if errors.As(err, &refused) {
		reason := "upgrade"
		if refused.Status == http.StatusForbidden {
			reason = "origin"
		}
		s.m.rejected.WithLabelValues(reason).Inc()
		writeJSON(w, refused.Status, map[string]string{"error": http.StatusText(refused.Status), "message": refused.Message})
		return
	}
	s.log.Debug("circle upgrade failed", "err", err) // gws answered 400
}

// Shutdown stops accepting connections and plays, waits for running plays
// until ctx ends, then closes every connection with 1001 and waits for
// their goroutines. It is idempotent; it returns ctx's error if the
// deadline passed first (connections are then closed forcibly).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()

	playsDone := make(chan struct{})
	go func() { s.plays.Wait(); close(playsDone) }()
	var err error
	select {
	case <-playsDone:
	case <-ctx.Done():
		err = ctx.Err()
	}

	s.mu.Lock()
	for sess := range s.sessions {
		sess.cancel() // cuts plays still running
	}
	s.mu.Unlock()
	// Closes every connection with 1001 and waits for their sessions'
	// OnClose, which waits for the session's plays.
	if werr := s.ws.Shutdown(ctx); werr != nil && err == nil {
		err = werr
	}
	<-playsDone
	return err
}

// beginPlay registers a running play; it fails once Shutdown has started.
func (s *Server) beginPlay() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.plays.Add(1)
	return true
}

type notFoundBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

type serverMetrics struct {
	connections prometheus.Gauge
	rejected    *prometheus.CounterVec
	requests    *prometheus.CounterVec
	auths       *prometheus.CounterVec
	playDur     prometheus.Histogram
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_circle_connections", Help: "Open circle WebSocket connections.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_circle_http_rejected_total", Help: "Circle HTTP requests refused before upgrade, by reason.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_circle_rpc_requests_total", Help: "Circle JSON-RPC requests by method and result code (0 = success).",
		}, []string{"method", "code"}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_circle_auth_total", Help: "Circle authentications by result.",
		}, []string{"result"}),
		playDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_circle_play_duration_seconds", Help: "Circle play round trips as seen by the server.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.rejected, m.requests, m.auths, m.playDur} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("circle: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
