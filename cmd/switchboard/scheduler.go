package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/schedapi"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/postgres"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
)

// The compute scheduler's hub namespaces (SCHED.md). None lets clients
// subscribe or publish: nodes get their channels as server-side
// subscriptions from the connect token's channels claim, which bypass
// namespace permissions, so no namespace permission can be missing (the
// origin's 103 on subscribe) and no client can read another node's work.
// A browser follows a job on jobs:{id} with a subscription token from
// POST /jobs/{id}/subscription and, once subscribed, may read its history
// to catch up; the console gets its feeds (scheduler:…) as server-side
// subscriptions too.
var schedulerNamespaceDefaults = map[string]hub.ChannelOptions{
	// Assignments: a reconnecting node recovers every chunk published
	// while it was away.
	"chunks": {HistorySize: 1000, HistoryTTL: 24 * time.Hour, ForceRecovery: true},
	// Node control, and nodes:online whose presence is the online set.
	"nodes": {HistorySize: 100, HistoryTTL: 24 * time.Hour, ForceRecovery: true, Presence: true, JoinLeave: true},
	// Job events: a browser that arrives late catches up.
	"jobs": {HistorySize: 1000, HistoryTTL: 24 * time.Hour, ForceRecovery: true, AllowHistoryForSubscriber: true},
	// Admin and owner feeds.
	"scheduler": {HistorySize: 100, HistoryTTL: time.Hour, ForceRecovery: true, AllowHistoryForSubscriber: true},
}

// schedulerNamespaces adds the scheduler's namespaces unless the
// configuration defines them; a configured one must keep what the
// scheduler relies on (history; presence with join/leave for nodes) and
// must not let clients subscribe or publish. Errors name the namespace
// (exit status 2).
func schedulerNamespaces(cfg config.Config, ns *hub.Namespaces) error {
	if !cfg.Scheduler.Enabled {
		return nil
	}
	for name, def := range schedulerNamespaceDefaults {
		o, ok := ns.Named[name]
		if !ok {
			ns.Named[name] = def
			continue
		}
		p := "channel.namespaces " + name
		switch {
		case o.HistorySize <= 0 || o.HistoryTTL <= 0:
			return usageError(fmt.Errorf("%s: the scheduler needs history (history_size and history_ttl) in it", p))
		case name == "nodes" && !(o.Presence && o.JoinLeave):
			return usageError(fmt.Errorf("%s: the scheduler needs presence and join_leave in it (nodes:online)", p))
		case o.AllowSubscribeForClient || o.AllowSubscribeForAnonymous || o.AllowPublishForClient ||
			o.AllowPublishForAnonymous || o.AllowPublishForSubscriber:
			return usageError(fmt.Errorf("%s: must not let clients subscribe or publish (nodes get their channels from their token)", p))
		}
	}
	return nil
}

// sqliteStore returns the one SQLite store of dir, opening it on first use
// (circles and the scheduler share the handle); the first opener's closer
// closes it after every component that uses it.
func (m *Main) sqliteStore(ctx context.Context, dir string) (*sqlite.Store, error) {
	if m.sqlite != nil {
		return m.sqlite, nil
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	m.sqlite = st
	m.closers = append(m.closers, func(context.Context) error { return st.Close() })
	return st, nil
}

// schedulerStore opens the PostgreSQL store of scheduler.database_url, or
// the SQLite store of circles.data_dir; its closer runs after the
// Service's.
func (m *Main) schedulerStore(ctx context.Context) (scheduler.Store, error) {
	sc := m.Config.Scheduler
	if sc.DatabaseURL != "" {
		pc := sc.PostgresConfig()
		pc.Logger = m.Logger
		st, err := postgres.Open(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("scheduler.database_url: %w", err)
		}
		m.closers = append(m.closers, func(context.Context) error { return st.Close() })
		return st, nil
	}
	st, err := m.sqliteStore(ctx, m.Config.Circles.DataDir)
	if err != nil {
		return nil, fmt.Errorf("scheduler: data store (circles.data_dir): %w", err)
	}
	return st, nil
}

// startScheduler wires the compute scheduler when it is enabled: the store,
// the Service on the hub (publisher and presence source), its HTTP API, and
// returns the API's routes. The Service runs from here; its Shutdown is a
// closer, so it stops after in-flight requests drain and before the store
// and the broker close.
func (m *Main) startScheduler(ctx context.Context, reg prometheus.Registerer) ([]route, error) {
	cfg := m.Config
	if !cfg.Scheduler.Enabled {
		return nil, nil
	}
	st, err := m.schedulerStore(ctx)
	if err != nil {
		return nil, err
	}
	sc := cfg.Scheduler.ServiceConfig()
	sc.Store, sc.Publisher, sc.Presence = st, m.hub, m.hub
	sc.Logger, sc.Registerer = m.Logger, reg
	svc, err := scheduler.New(sc)
	if err != nil {
		return nil, err
	}
	if err := svc.Run(ctx); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	m.closers = append(m.closers, svc.Shutdown)
	m.sched = svc

	tc := cfg.Client.Token
	ac := cfg.Scheduler.APIConfig()
	ac.Service = svc
	ac.Tokens = auth.NewTokenVerifier(tc.HMACSecretKey, tc.Audience, tc.Issuer)
	ac.Signer = auth.NewTokenSigner(tc.HMACSecretKey, tc.Audience, tc.Issuer)
	ac.APIKey = cfg.HTTPAPI.Key
	ac.Nodes = auth.NewNodeVerifier(cfg.Scheduler.NodeVerifierConfig())
	ac.Logger, ac.Registerer = m.Logger, reg
	api, err := schedapi.New(ac)
	if err != nil {
		return nil, err
	}
	var routes []route
	for _, p := range schedapi.Patterns() {
		routes = append(routes, route{pattern: p, handler: api})
	}
	m.Logger.Info("compute scheduler running", "store", storeName(cfg.Scheduler), "lease", cfg.Scheduler.Lease.Std())
	return routes, nil
}

func storeName(s config.Scheduler) string {
	if s.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}
