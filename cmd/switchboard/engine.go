package main

import (
	"context"
	"fmt"
	"log/slog"

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
func newEngine(cfg config.Config, log *slog.Logger) (engine, hub.PresenceManager, error) {
	rc, useRedis := cfg.RedisEngine()
	if !useRedis {
		b := memory.New(nil)
		b.MetaTTL = cfg.MemoryMetaTTL()
		return b, memory.NewPresence(), nil
	}
	rc.Logger = log
	b, err := redisbroker.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("engine.redis: %w", err)
	}
	log.Info("redis engine", "prefix", rc.Prefix)
	return b, b, nil
}
