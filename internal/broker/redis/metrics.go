package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reconnects prometheus.Counter
	dropped    prometheus.Counter
}

func (b *Broker) initMetrics(reg prometheus.Registerer) error {
	b.metrics = metrics{
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_pubsub_connects_total", Help: "PUB/SUB connections that went live (first connects and reconnects).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_pubsub_frames_dropped_total", Help: "PUB/SUB frames that did not decode.",
		}),
	}
	if reg == nil {
		return nil
	}
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_redis_pubsub_shards_up", Help: "PUB/SUB connections currently live.",
	}, func() float64 { return float64(b.shardsUp()) })
	for _, c := range []prometheus.Collector{b.metrics.reconnects, b.metrics.dropped, up} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("redis broker: metrics: %w", err)
		}
	}
	return nil
}

func (b *Broker) shardsUp() int {
	n := 0
	for _, s := range b.shards {
		s.mu.Lock()
		if s.conn != nil {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// Health reports whether Redis answers a PING within ctx and every PUB/SUB
// connection is live; the error says which part is not.
func (b *Broker) Health(ctx context.Context) error {
	var errs []error
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		errs = append(errs, fmt.Errorf("redis: ping: %w", err))
	}
	if b.started.Load() {
		if up := b.shardsUp(); up < len(b.shards) {
			errs = append(errs, fmt.Errorf("redis: %d of %d PUB/SUB connections are reconnecting", len(b.shards)-up, len(b.shards)))
		}
	}
	return errors.Join(errs...)
}
