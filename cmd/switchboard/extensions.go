package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/internal/gateway"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

type route struct {
	pattern string
	handler http.Handler
}

// Circle channels live in a hub namespace named by the circle's canonical
// key ("{key}:{channel}"). Unless the config defines that namespace, it keeps
// history for recovery and grants clients nothing by default: they
// subscribe with subscription tokens or through the server API.
var circleNamespaceDefaults = hub.ChannelOptions{HistorySize: 100, HistoryTTL: 5 * time.Minute, ForceRecovery: true}

// circleNamespaces validates the circle keys (an invalid key is an
// exitStatusError with status 2 naming it) and adds their namespaces.
func circleNamespaces(cfg config.Config, ns *hub.Namespaces) (*circle.Registry, error) {
	if len(cfg.Circles.Keys) == 0 {
		return nil, nil
	}
	reg, err := circle.NewRegistry(cfg.Circles.Keys)
	if err != nil {
		return nil, &exitStatusError{code: 2, err: err}
	}
	for _, k := range reg.Keys() {
		if _, ok := ns.Named[k]; !ok {
			ns.Named[k] = circleNamespaceDefaults
		}
	}
	return reg, nil
}

// hubPublisher lets circle scripts publish into their circle's channels.
type hubPublisher struct{ h *hub.Hub }

func (p hubPublisher) Publish(ctx context.Context, circleKey, channel string, data []byte) error {
	_, err := p.h.Publish(ctx, circleKey+hub.NamespaceSeparator+channel, data, nil, nil)
	return err
}

// extensions wires the optional systems (worker gateway, circles) and
// returns their routes; it sets *rpc to the worker pool when one runs.
func (m *Main) extensions(ctx context.Context, reg prometheus.Registerer, circles *circle.Registry, rpc *hub.RPCHandler) ([]route, error) {
	var routes []route
	if r := m.Config.Runner; len(r.Command) > 0 {
		wc := r.WorkerConfig()
		wc.Logger, wc.Registerer = m.Logger, reg
		pool, err := worker.New(wc)
		if err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		m.closers = append(m.closers, pool.Shutdown)
		cors, err := origin.New(r.CORS.Origins)
		if err != nil {
			return nil, fmt.Errorf("runner.cors.origins%w", err)
		}
		gc := r.GatewayConfig()
		gc.Origins = cors
		gc.Logger = m.Logger
		gw, err := gateway.New(gc, pool)
		if err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		routes = append(routes, route{pattern: gw.BasePath() + "/", handler: gw})
		*rpc = worker.NewRPCAdapter(pool)
	}
	if circles == nil {
		return routes, nil
	}
	c := m.Config.Circles
	st, err := m.sqliteStore(ctx, c.DataDir)
	if err != nil {
		return nil, fmt.Errorf("circles: data store: %w", err)
	}
	eng, err := newSandbox(c, st, hubPublisher{m.hub}, m.Logger, reg)
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, eng.Shutdown)
	dc := dispatch.Config{Concurrency: c.Concurrency, QueueSize: c.QueueSize, Logger: m.Logger, Metrics: reg}
	var player interface {
		circle.Player
		Shutdown(context.Context) error
	}
	if c.RedisURL == "" {
		player, err = dispatch.NewLocal(dc, eng)
	} else {
		// Queue names use the canonical keys, never the raw flag values.
		var rc rueidis.Client
		if rc, err = m.redisClient(c.RedisURL); err != nil {
			return nil, fmt.Errorf("circles.redis_url: %w", err)
		}
		player, err = dispatch.NewRedis(ctx, dispatch.RedisConfig{Config: dc, Client: rc, Circles: circles.Keys()}, eng)
	}
	if err != nil {
		return nil, fmt.Errorf("circles: dispatch: %w", err)
	}
	m.closers = append(m.closers, player.Shutdown)
	srv, err := circle.New(circle.Config{Keys: circles.Keys(), EnableAuth: c.EnableAuth, Player: player,
		PlayTimeout:    c.ScriptTimeout.Std() + 30*time.Second,
		MaxMessageSize: max(circle.DefaultMaxMessageSize, c.MaxScriptSize+4096),
		Origins:        m.origins, Logger: m.Logger, Metrics: reg})
	if err != nil {
		return nil, fmt.Errorf("circles: %w", err)
	}
	m.realtime = append(m.realtime, srv.Shutdown)
	if !c.EnableAuth {
		m.Logger.Warn("circles: authentication is off; anyone may play scripts (use --enable-auth)")
	}
	// The catch-all pattern: every specific route registered by Run wins,
	// so circle routes never shadow them; unknown paths get the circle 404.
	routes = append(routes, route{pattern: "/", handler: srv})
	return routes, nil
}
