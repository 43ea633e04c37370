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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/api"
	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clientproto"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

// Main is the whole server program: Run starts it from Config, Shutdown
// stops it. End-to-end tests boot it on port 0.
type Main struct {
	Config config.Config
	Logger *slog.Logger
	// Control links this process's hub to the other nodes of one server;
	// nil = the memory engine's one-node loopback. Tests join several
	// Mains to one memory.ControlNetwork.
	Control hub.ControlPlane

	ln       net.Listener
	http     *http.Server
	hub      *hub.Hub
	ws       *ws.Transport
	relay    *relay.Server
	origins  *origin.Checker // client.allowed_origins, for every WebSocket route
	registry *prometheus.Registry
	// closers stop components in reverse start order, after the drain.
	closers []func(context.Context) error
	// redisClients are the shared Redis clients by address (redisClient).
	redisClients map[string]rueidis.Client
	// sqlite is the one SQLite store, shared by circles and the scheduler
	// (sqliteStore).
	sqlite *sqlite.Store
	// realtime stop realtime servers other than the hub's clients (circle
	// sessions); Shutdown runs them at once, concurrently with the drain.
	realtime []func(context.Context) error
	closing  atomic.Bool  // set first by Shutdown; /health answers 503
	requests atomic.Int64 // HTTP requests in their handler
	serveErr chan error
	wg       sync.WaitGroup
	once     sync.Once
	shutErr  error

	// sched is the compute scheduler while scheduler.enabled (the console
	// lists every job and node through it); nil otherwise.
	sched *scheduler.Service
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
		return usageError(err)
	}
	defer func() {
		if err != nil {
			m.stopRealtime(context.Background())
			// The hub before the closers, as in Shutdown: it announces
			// itself on the control plane until it is shut down.
			if m.hub != nil {
				_ = m.hub.Shutdown(context.Background())
			}
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
	if err := schedulerNamespaces(cfg, &ns); err != nil {
		return err
	}
	relayNamespace(cfg, &ns)
	broker, presence, err := newEngine(cfg, log, reg, m.redisClient)
	if err != nil {
		return err
	}
	m.closers = append(m.closers, broker.Close)
	control, err := m.controlPlane(broker)
	if err != nil {
		return err
	}
	if err := addConsoleNamespace(cfg, &ns); err != nil {
		return err
	}
	h, err := hub.New(hub.Config{
		// The struct hides the broker's Close from hub.Shutdown: the broker
		// stops with the other components, after in-flight requests drain.
		Broker: hideClose(broker), Presence: presence,
		Namespaces: ns, ConnectionLimit: cfg.Client.ConnectionLimit,
		UserConnectionLimit: cfg.Client.UserConnectionLimit, Logger: log, Registerer: reg,
		PositionCheckInterval: time.Duration(cfg.Client.ChannelPositionCheckDelay),
		Cluster:               hub.ClusterConfig{Control: control, Version: version()},
	})
	if err != nil {
		return err
	}
	m.hub = h

	if m.origins, err = origin.New(cfg.Client.AllowedOrigins); err != nil {
		return fmt.Errorf("client.allowed_origins%w", err)
	}
	var rpc hub.RPCHandler
	extra, err := m.extensions(ctx, reg, circles, &rpc)
	if err != nil {
		return err
	}
	schedRoutes, err := m.startScheduler(ctx, reg)
	if err != nil {
		return err
	}
	extra = append(schedRoutes, extra...) // before the circles' catch-all

	tokens := auth.NewTokenVerifier(cfg.Client.Token.HMACSecretKey, cfg.Client.Token.Audience, cfg.Client.Token.Issuer)
	if cfg.Client.Token.HMACSecretKey == "" && !cfg.Client.AllowAnonymousConnectWithoutToken {
		log.Warn("client.token.hmac_secret_key is empty: clients cannot connect with tokens (set it, or allow anonymous connections)")
	}
	consoleRoutes, err := m.console(tokens)
	if err != nil {
		return err
	}
	extra = append(extra, consoleRoutes...)
	// One delivery pool drains every connection's queue (WebSocket, relay).
	pool, err := delivery.NewPool(delivery.Config{Clock: h.Clock(), Registerer: reg})
	if err != nil {
		return err
	}
	m.closers = append(m.closers, func(context.Context) error { pool.Close(); return nil })
	proto, err := clientproto.NewServer(clientproto.Config{
		Hub: h, Tokens: tokens, Delivery: pool, RPC: rpc, AllowAnonymous: cfg.Client.AllowAnonymousConnectWithoutToken,
		PingInterval: time.Duration(cfg.Client.PingInterval), PongTimeout: time.Duration(cfg.Client.PongTimeout),
		StaleCloseDelay: time.Duration(cfg.Client.StaleCloseDelay), ExpiredCloseDelay: time.Duration(cfg.Client.ExpiredCloseDelay),
		ChannelLimit: cfg.Client.ChannelLimit, QueueMaxSize: cfg.Client.QueueMaxSize,
		CommandRateLimit: cfg.Client.CommandRateLimit, Version: version(), Logger: log, Registerer: reg,
		CommandTimeout: time.Duration(cfg.Client.CommandTimeout),
	})
	if err != nil {
		return err
	}
	m.closers = append(m.closers, func(context.Context) error { proto.Close(); return nil })
	wst, err := ws.New(ws.Config{Origins: m.origins, Subprotocols: []string{clientproto.ProtobufSubprotocol},
		MessageSizeLimit: cfg.WebSocket.MessageSizeLimit, ReadBufferSize: cfg.WebSocket.ReadBufferSize,
		ShutdownCode: uint16(hub.DisconnectShutdown.Code), ShutdownReason: hub.DisconnectShutdown.Reason, Logger: log})
	if err != nil {
		return err
	}
	m.ws = wst
	if cfg.HTTPAPI.Key == "" && !cfg.HTTPAPI.Insecure {
		log.Warn("http_api.key is empty: the server API rejects every request")
	}
	apiH, err := api.New(api.Config{Hub: h, Key: cfg.HTTPAPI.Key, Insecure: cfg.HTTPAPI.Insecure, RPC: rpc,
		TransportErrors: cfg.HTTPAPI.ErrorMode == "transport", Timeout: time.Duration(cfg.HTTPAPI.Timeout),
		Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	if err := m.startRelay(cfg, h, tokens, pool, reg, log); err != nil {
		return err
	}
	extra = append(extra, m.relayRoutes()...)

	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", proto.WebSocketHandler(wst))
	mux.Handle("/api/", apiH)
	mux.Handle("/api", apiH)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if m.closing.Load() {
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
	m.relayPagePort()
	// Requests are counted for Shutdown's drain; during shutdown their
	// connection closes after the response (upgrades excepted).
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.requests.Add(1)
		defer m.requests.Add(-1)
		if m.closing.Load() && r.Header.Get("Upgrade") == "" {
			w.Header().Set("Connection", "close")
		}
		mux.ServeHTTP(w, r)
	})
	// Hijacked WebSocket connections drop these deadlines; they bound API
	// requests and idle keep-alive connections.
	m.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	m.serveErr = make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// Shutdown closes the listener itself before http.Server.Shutdown
		// runs, so Serve may report that close instead of ErrServerClosed.
		err := m.http.Serve(m.ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !(m.closing.Load() && errors.Is(err, net.ErrClosed)) {
			m.serveErr <- err
		}
		close(m.serveErr)
	}()
	log.Info("switchboard listening", "addr", m.URL(), "websocket", "ws://"+m.Addr()+"/connection/websocket", "version", version())
	return nil
}

// Wait blocks until the HTTP server stops and returns its error, if any.
func (m *Main) Wait() error { return <-m.serveErr }

// Shutdown stops the server within ctx, in this order:
//
//  1. mark shutting down: /health answers 503 {"status":"shutting down"};
//  2. stop accepting: the listener closes, so a load balancer's next
//     connect is refused and goes to another instance; connections already
//     open are still answered, each response with Connection: close;
//  3. at once, disconnect every realtime client (Centrifugo clients get
//     3001 and reconnect elsewhere; circles refuse new plays and close each
//     session when its running plays end), while in-flight HTTP requests
//     (server API, worker gateway) run to completion; then the idle
//     connections close;
//  4. stop the other components in reverse start order (client protocol,
//     circle dispatch and store, workers, broker).
//
// If ctx ends during step 3, the connections still open are closed and
// step 4 runs with the ended ctx, so every component forces its stop. It
// is idempotent.
func (m *Main) Shutdown(ctx context.Context) error {
	m.once.Do(func() {
		m.closing.Store(true)
		var mu sync.Mutex
		var errs []error
		add := func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}
		var wg sync.WaitGroup
		if m.http != nil {
			_ = m.ln.Close() // before any client is told to reconnect
			wg.Add(1)
			go func() { defer wg.Done(); add(m.drainHTTP(ctx)) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); add(m.disconnectClients(ctx)) }()
		for _, stop := range m.realtime {
			wg.Add(1)
			go func() { defer wg.Done(); add(stop(ctx)) }()
		}
		wg.Wait()
		m.realtime = nil
		add(m.closeAll(ctx))
		m.wg.Wait()
		m.shutErr = errors.Join(errs...)
	})
	return m.shutErr
}

// drainHTTP waits until no request runs: those in flight and those still
// arriving on connections opened before (answered with Connection: close).
// Then it closes the idle connections. When ctx ends first it closes every
// connection.
func (m *Main) drainHTTP(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for m.requests.Load() > 0 {
		select {
		case <-ctx.Done():
			_ = m.http.Close()
			return fmt.Errorf("http shutdown: %d requests still running: %w", m.requests.Load(), ctx.Err())
		case <-t.C:
		}
	}
	// The listener is already closed, hence net.ErrClosed.
	if err := m.http.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		_ = m.http.Close()
		return fmt.Errorf("http shutdown: requests still running: %w", err)
	}
	return nil
}

// disconnectClients disconnects the hub's clients with 3001, then closes
// WebSocket connections that never sent connect.
func (m *Main) disconnectClients(ctx context.Context) error {
	var errs []error
	if m.hub != nil {
		errs = append(errs, m.hub.Shutdown(ctx))
	}
	if m.ws != nil {
		errs = append(errs, m.ws.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// stopRealtime runs the realtime stops one after another (Run's failure
// path; nothing is serving yet).
func (m *Main) stopRealtime(ctx context.Context) {
	for _, stop := range m.realtime {
		_ = stop(ctx)
	}
	m.realtime = nil
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
