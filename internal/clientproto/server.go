// Package clientproto implements the Centrifugo client protocol v2 (JSON
// and Protobuf) on top of the hub. It is transport-agnostic: a transport
// adapter feeds each received message to a Session and gives it a
// Transport to write to.
package clientproto

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Defaults of Config.
const (
	DefaultPingInterval      = 25 * time.Second
	DefaultPongTimeout       = 8 * time.Second
	DefaultStaleCloseDelay   = 10 * time.Second
	DefaultExpiredCloseDelay = 25 * time.Second
	DefaultChannelLimit      = 128
	DefaultQueueMaxSize      = 1 << 20
	DefaultHistoryMaxLimit   = 300
	DefaultMaxRPCInFlight    = 16
	// DefaultCommandTimeout is below the official clients' 5s command
	// timeout, so they get the error reply rather than a timeout of their own.
	DefaultCommandTimeout = 4 * time.Second
)

// TokenVerifier verifies connection and subscription tokens.
type TokenVerifier interface {
	VerifyConnect(token string) (auth.ConnectClaims, error)
	VerifySubscribe(token string) (auth.SubscribeClaims, error)
}

// Config configures a Server. Zero durations and limits mean defaults.
// Its timers (stale, ping, pong, expiry, rate limit) run on the hub's
// clock (hub.Config.Clock).
type Config struct {
	Hub    *hub.Hub      // required
	Tokens TokenVerifier // required
	// RPC handles client rpc commands; nil answers ErrMethodNotFound.
	RPC hub.RPCHandler
	// AllowAnonymous lets clients connect without a token (user "").
	AllowAnonymous bool
	// PingInterval between server pings; negative disables pings.
	PingInterval time.Duration
	// PongTimeout for the client's pong; negative disables the check.
	PongTimeout       time.Duration
	StaleCloseDelay   time.Duration
	ExpiredCloseDelay time.Duration
	// ChannelLimit caps subscriptions per connection.
	ChannelLimit int
	// QueueMaxSize caps queued outgoing bytes per connection; a client
	// beyond it is disconnected as slow.
	QueueMaxSize int
	// CommandRateLimit caps commands per second per connection; 0 = none.
	CommandRateLimit int
	// HistoryMaxLimit caps publications returned to a client history call.
	HistoryMaxLimit int
	// MaxRPCInFlight caps concurrent rpc calls per connection.
	MaxRPCInFlight int
	// CommandTimeout is the deadline of one client command (its broker
	// round trips); the command's context also ends when the connection
	// goes. 0 = DefaultCommandTimeout. RPC calls are bounded by their
	// handler instead.
	CommandTimeout time.Duration
	// Delivery is the writer pool draining the sessions' queues; nil
	// starts one of the server's own from Writers and WriteStall, on the
	// hub's clock and Registerer.
	Delivery *delivery.Pool
	// Writers caps the goroutines writing to connections at once; 0 means
	// delivery.DefaultWriters().
	Writers int
	// WriteStall is how long one blocked write may hold a writer before a
	// replacement starts; 0 means delivery.DefaultWriteStall.
	WriteStall time.Duration
	Version    string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server creates Sessions sharing one configuration and metrics. Its
// timers run on the hub's clock.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	clock   clock.Clock
	pool    *delivery.Pool
	ownPool bool
	// formats maps FormatJSON/FormatProtobuf to the hub's format ids.
	formats [len(formats)]hub.FormatID
}

// Close stops the server's own writer pool (not one given in Config).
// Call it after every session has closed (after the hub's Shutdown).
func (s *Server) Close() {
	if s.ownPool {
		s.pool.Close()
	}
}

// NewServer validates cfg, fills defaults and registers metrics.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Hub == nil || cfg.Tokens == nil {
		return nil, errors.New("clientproto: hub and token verifier are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	// Negative ping interval or pong timeout disable pings or pong checks.
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout == 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	def(&cfg.StaleCloseDelay, DefaultStaleCloseDelay)
	def(&cfg.ExpiredCloseDelay, DefaultExpiredCloseDelay)
	def(&cfg.CommandTimeout, DefaultCommandTimeout)
	if cfg.PingInterval > 0 && cfg.PongTimeout >= cfg.PingInterval {
		return nil, errors.New("clientproto: pong timeout must be shorter than ping interval")
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&cfg.ChannelLimit, DefaultChannelLimit)
	defInt(&cfg.QueueMaxSize, DefaultQueueMaxSize)
	defInt(&cfg.HistoryMaxLimit, DefaultHistoryMaxLimit)
	defInt(&cfg.MaxRPCInFlight, DefaultMaxRPCInFlight)
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, log: cfg.Logger.With("component", "clientproto"), metrics: m,
		clock: cfg.Hub.Clock(), pool: cfg.Delivery}
	for i, f := range formats {
		id, err := cfg.Hub.RegisterFormat(FormatNames[i], f)
		if err != nil {
			return nil, fmt.Errorf("clientproto: %w", err)
		}
		srv.formats[i] = id
	}
	if srv.pool == nil {
		srv.pool, err = delivery.NewPool(delivery.Config{Writers: cfg.Writers, WriteStall: cfg.WriteStall,
			Clock: srv.clock, Registerer: cfg.Registerer})
		if err != nil {
			return nil, fmt.Errorf("clientproto: %w", err)
		}
		srv.ownPool = true
	}
	return srv, nil
}
