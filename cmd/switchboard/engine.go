package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	redisbroker "github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// engine is a broker that holds resources to release at shutdown.
type engine interface {
	hub.Broker
	Close(ctx context.Context) error
}

// newEngine builds the broker and presence manager engine.type selects.
func newEngine(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (engine, hub.PresenceManager, error) {
	rc, useRedis := cfg.RedisEngine()
	if !useRedis {
		b := memory.New(nil)
		b.MetaTTL = cfg.MemoryMetaTTL()
		return b, memory.NewPresence(), nil
	}
	rc.Logger, rc.Registerer = log, reg
	b, err := redisbroker.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("engine.redis: %w", err)
	}
	log.Info("redis engine", "prefix", rc.Prefix)
	return b, b, nil
}

// controlPlane returns the plane linking this process to the other nodes:
// Main.Control when set, the engine's own when it has one (Redis), else a
// one-node loopback (memory).
func (m *Main) controlPlane(e engine) (hub.ControlPlane, error) {
	if m.Control != nil {
		return m.Control, nil
	}
	if ce, ok := e.(interface {
		ControlPlane() (hub.ControlPlane, error)
	}); ok {
		cp, err := ce.ControlPlane()
		if err != nil {
			return nil, fmt.Errorf("engine control plane: %w", err)
		}
		if c, ok := cp.(hub.Closer); ok {
			m.closers = append(m.closers, c.Close) // closed before the engine
		}
		return cp, nil
	}
	loop := memory.NewControlNetwork().Node()
	m.closers = append(m.closers, loop.Close)
	return loop, nil
}

// engineHealthTimeout bounds the engine check of one /health request.
const engineHealthTimeout = time.Second

// engineHealth asks engines that can tell (Redis) whether they work.
func engineHealth(ctx context.Context, e engine) error {
	hc, ok := e.(interface{ Health(context.Context) error })
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, engineHealthTimeout)
	defer cancel()
	return hc.Health(ctx)
}

func writeUnhealthy(w http.ResponseWriter, err error) {
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "engine unavailable", "error": err.Error()})
}
