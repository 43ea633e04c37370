package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rt/switchboard/internal/api"
	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clientproto"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

// Main is the whole server program: Run starts it from Config, Shutdown
// stops it. End-to-end tests boot it on port 0.
type Main struct {
	Config config.Config
	Logger *slog.Logger

	ln       net.Listener
	http     *http.Server
	hub      *hub.Hub
	ws       *ws.Handler
	registry *prometheus.Registry
	closers  []func(context.Context) error
	serveErr chan error
	wg       sync.WaitGroup
	once     sync.Once
	shutErr  error
}

// Addr is the listening address after Run.
func (m *Main) Addr() string { return m.ln.Addr().String() }

// URL is the server's base HTTP URL after Run.
func (m *Main) URL() string { return "http://" + m.Addr() }

// Hub exposes the core for tests.
func (m *Main) Hub() *hub.Hub { return m.hub }

// Run validates the configuration, wires every component, starts
// listening and serving, and returns. Serve errors surface from Wait.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := m.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.closeAll(context.Background())
		}
	}()
	log := m.Logger
	if len(cfg.NoEffect) > 0 {
		log.Warn("configuration keys without effect in Switchboard (Centrifugo options of features it does not have, switched off or tuned)",
			"keys", strings.Join(cfg.NoEffect, ", "))
	}
	m.registry = prometheus.NewRegistry()
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg := m.registry

	ns := cfg.Channel.HubNamespaces()
	circles, err := circleNamespaces(cfg, &ns)
	if err != nil {
		return err
	}
	broker, presence, err := newEngine(cfg, log, reg)
	if err != nil {
		return err
	}
	m.closers = append(m.closers, broker.Close)
	h, err := hub.New(hub.Config{
		Broker: broker, Presence: presence, Codecs: clientproto.Codecs(),
		Namespaces: ns, ConnectionLimit: cfg.Client.ConnectionLimit,
		UserConnectionLimit: cfg.Client.UserConnectionLimit, Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	m.hub = h

	var rpc hub.RPCHandler
	extra, err := m.extensions(ctx, reg, circles, &rpc)
	if err != nil {
		return err
	}

	tokens := auth.NewTokenVerifier(cfg.Client.Token.HMACSecretKey, cfg.Client.Token.Audience, cfg.Client.Token.Issuer)
	if cfg.Client.Token.HMACSecretKey == "" && !cfg.Client.AllowAnonymousConnectWithoutToken {
		log.Warn("client.token.hmac_secret_key is empty: clients cannot connect with tokens (set it, or allow anonymous connections)")
	}
	proto, err := clientproto.NewServer(clientproto.Config{
		Hub: h, Tokens: tokens, RPC: rpc, AllowAnonymous: cfg.Client.AllowAnonymousConnectWithoutToken,
		PingInterval: time.Duration(cfg.Client.PingInterval), PongTimeout: time.Duration(cfg.Client.PongTimeout),
		StaleCloseDelay: time.Duration(cfg.Client.StaleCloseDelay), ExpiredCloseDelay: time.Duration(cfg.Client.ExpiredCloseDelay),
		ChannelLimit: cfg.Client.ChannelLimit, QueueMaxSize: cfg.Client.QueueMaxSize,
		CommandRateLimit: cfg.Client.CommandRateLimit, Version: version(), Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	m.closers = append(m.closers, func(context.Context) error { proto.Close(); return nil })
	wsh, err := ws.New(ws.Config{Server: proto, AllowedOrigins: cfg.Client.AllowedOrigins,
		MessageSizeLimit: cfg.WebSocket.MessageSizeLimit, ReadBufferSize: cfg.WebSocket.ReadBufferSize, Logger: log})
	if err != nil {
		return err
	}
	m.ws = wsh
	if cfg.HTTPAPI.Key == "" && !cfg.HTTPAPI.Insecure {
		log.Warn("http_api.key is empty: the server API rejects every request")
	}
	apiH, err := api.New(api.Config{Hub: h, Key: cfg.HTTPAPI.Key, Insecure: cfg.HTTPAPI.Insecure, RPC: rpc,
		Version: version(), Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", wsh)
	mux.Handle("/api/", apiH)
	mux.Handle("/api", apiH)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if h.Closing() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"shutting down"}`))
			return
		}
		if err := engineHealth(r.Context(), broker); err != nil {
			writeUnhealthy(w, err)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	for _, e := range extra {
		mux.Handle(e.pattern, e.handler)
	}

	addr := net.JoinHostPort(cfg.HTTPServer.Address, strconv.Itoa(cfg.HTTPServer.Port))
	m.ln, err = net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	// Hijacked WebSocket connections drop these deadlines; they bound API
	// requests and idle keep-alive connections.
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	m.serveErr = make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.serveErr <- err
		}
		close(m.serveErr)
	}()
	log.Info("switchboard listening", "addr", m.URL(), "websocket", "ws://"+m.Addr()+"/connection/websocket", "version", version())
	return nil
}

// Wait blocks until the HTTP server stops and returns its error, if any.
func (m *Main) Wait() error { return <-m.serveErr }

// Shutdown stops accepting connections, disconnects clients with a
// reconnect code, drains and stops every component within ctx. It is
// idempotent.
func (m *Main) Shutdown(ctx context.Context) error {
	m.once.Do(func() {
		var errs []error
		if m.http != nil {
			// Stop accepting; hijacked WebSocket connections are the hub's.
			if err := m.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
		}
		if m.hub != nil {
			if err := m.hub.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if m.ws != nil {
			if err := m.ws.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}

		if err := m.closeAll(ctx); err != nil {
			errs = append(errs, err)
		}
		m.wg.Wait()
		m.shutErr = errors.Join(errs...)
	})
	return m.shutErr
}

func (m *Main) closeAll(ctx context.Context) error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	m.closers = nil
	return errors.Join(errs...)
}

// newLogger builds the process logger.
func newLogger(format, level string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: config.Log{Level: level}.SlogLevel()}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
