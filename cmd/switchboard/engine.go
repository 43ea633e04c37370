package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

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
// The Redis client comes from dial (cmd's shared clients).
func newEngine(cfg config.Config, log *slog.Logger, reg prometheus.Registerer, dial func(string) (rueidis.Client, error)) (engine, hub.PresenceManager, error) {
	rc, useRedis := cfg.RedisEngine()
	if !useRedis {
		b := memory.New(nil)
		b.MetaTTL = cfg.MemoryMetaTTL()
		return b, memory.NewPresence(), nil
	}
	rc.Logger, rc.Registerer = log, reg
	c, err := dial(rc.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("engine.redis.address: %w", err)
	}
	rc.Client = c
	b, err := redisbroker.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("engine.redis: %w", err)
	}
	log.Info("redis engine", "prefix", rc.Prefix)
	return b, b, nil
}

// hideClose returns b without its Close method (the hub must not close
// it) but with its optional hub.ContextSubscriber and hub.TopicBroker.
func hideClose(b engine) hub.Broker {
	cs, ctxSub := b.(hub.ContextSubscriber)
	tb, topics := b.(hub.TopicBroker) // the relay's rooms across processes
	switch {
	case ctxSub && topics:
		return struct {
			hub.Broker
			hub.ContextSubscriber
			hub.TopicBroker
		}{b, cs, tb}
	case ctxSub:
		return struct {
			hub.Broker
			hub.ContextSubscriber
		}{b, cs}
	case topics:
		return struct {
			hub.Broker
			hub.TopicBroker
		}{b, tb}
	}
	return struct{ hub.Broker }{b}
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

// redisClient returns cmd's one client for address, creating it on first
// use: the engine and the circles' queues on the same URL share it. It is
// closed after the components that use it (closers run in reverse).
func (m *Main) redisClient(address string) (rueidis.Client, error) {
	if c, ok := m.redisClients[address]; ok {
		return c, nil
	}
	c, err := redisbroker.NewClient(address, m.Logger)
	if err != nil {
		return nil, err
	}
	if m.redisClients == nil {
		m.redisClients = map[string]rueidis.Client{}
	}
	m.redisClients[address] = c
	m.closers = append(m.closers, func(context.Context) error {
		c.Close()
		delete(m.redisClients, address)
		return nil
	})
	return c, nil
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

// applyRedis applies --engine and --redis-url. --redis-url is the one
// shared Redis: it sets engine.redis.address and circles.redis_url (flags
// win over the file; use the file for two different Redis servers).
// --engine redis needs an address: the flag, engine.redis.address set to
// something other than the default, or broker.redis_url.
func (s *ServeCmd) applyRedis(cfg *config.Config) error {
	if s.RedisURL != "" {
		if _, err := redisbroker.ClientOption(s.RedisURL); err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		cfg.Engine.Redis.Address = s.RedisURL
		cfg.Circles.RedisURL = s.RedisURL
		if cfg.Broker.Type == config.BrokerRedis {
			cfg.Broker.RedisURL = s.RedisURL
		}
	}
	switch s.Engine {
	case "":
	case config.BrokerMemory, config.BrokerRedis:
		cfg.Engine.Type = s.Engine
	default:
		return fmt.Errorf("--engine: unknown engine %q (use %q or %q)", s.Engine, config.BrokerMemory, config.BrokerRedis)
	}
	if s.Engine == config.BrokerRedis && s.RedisURL == "" && cfg.Broker.RedisURL == "" &&
		cfg.Engine.Redis.Address == config.DefaultRedisAddress {
		return errors.New("--engine redis needs --redis-url URL (or engine.redis.address in the configuration)")
	}
	return nil
}
