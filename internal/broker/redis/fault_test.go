package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func startRedis(t *testing.T, args ...string) *testenv.RedisServer {
	t.Helper()
	return testenv.StartRedis(t, args...)
}

// admin runs one command on srv on a connection of its own.
func admin(t *testing.T, srv *testenv.RedisServer, args ...string) {
	t.Helper()
	reply, err := srv.Command(args...)
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(reply, "-"), "%v: %s", args, reply)
}

func fastConfig(url string) Config {
	return Config{
		Address: url, ReconnectDelay: 20 * time.Millisecond, PingInterval: 100 * time.Millisecond,
		PingTimeout: 200 * time.Millisecond, SubscribeTimeout: time.Second, ResubscribeBatch: 7, Shards: 3,
	}
}

// After Redis restarts, every shard resubscribes (in batches) and new
// publications reach every channel; Subscribe meanwhile is 108.
func TestFaultRedisRestart(t *testing.T) {
	srv := startRedis(t)
	b := newTestBroker(t, fastConfig(srv.URL()))
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	const n = 40
	for i := 0; i < n; i++ {
		subscribe(t, b, fmt.Sprint("r", i))
	}
	publish(t, b, "r0", "before")
	require.Eventually(t, func() bool { return len(rec.Events("r0")) == 1 }, 5*time.Second, 10*time.Millisecond)

	require.Eventually(t, func() bool { return b.Health(ctxT(t)) == nil }, 5*time.Second, 10*time.Millisecond, "healthy before the restart")
	srv.Kill()
	require.Eventually(t, func() bool {
		err := b.Health(ctxT(t))
		return err != nil && strings.Contains(err.Error(), "redis: ping") && strings.Contains(err.Error(), "PUB/SUB connections are reconnecting")
	}, 5*time.Second, 10*time.Millisecond, "Health must name Redis while it is down")
	require.Eventually(t, func() bool {
		err := b.Subscribe("while-down")
		return errors.Is(err, hub.ErrRetryLater)
	}, 5*time.Second, 10*time.Millisecond, "Subscribe while Redis is down must fail with 108")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := b.Publish(ctx, "r0", &hub.Publication{Data: []byte("lost")}, hub.PublishOptions{})
	cancel()
	require.ErrorContains(t, err, "redis broker: publish")

	srv.Start()
	for i := 0; i < n; i++ {
		ch := fmt.Sprint("r", i)
		require.Eventually(t, func() bool {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = b.Publish(c, ch, &hub.Publication{Data: []byte("after")}, hub.PublishOptions{})
			for _, ev := range rec.Events(ch) {
				if string(ev.Pub.Data) == "after" {
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, "channel %s not resubscribed", ch)
	}
	subscribe(t, b, "new-after-restart")
	require.Eventually(t, func() bool { return b.Health(ctxT(t)) == nil }, 5*time.Second, 10*time.Millisecond, "healthy after the restart")
}

// With nothing listening, every operation fails fast with an error naming
// the operation; nothing hangs.
func TestFaultRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	b := newTestBroker(t, fastConfig("redis://"+addr))
	require.NoError(t, b.Run(brokertest.NewRecorder()))
	ops := map[string]func(ctx context.Context) error{
		"publish": func(ctx context.Context) error {
			_, err := b.Publish(ctx, "c", &hub.Publication{Data: []byte("x")}, hub.PublishOptions{HistorySize: 1, HistoryTTL: time.Minute})
			return err
		},
		"history":      func(ctx context.Context) error { _, err := b.History(ctx, "c", hub.HistoryOptions{}); return err },
		"add presence": func(ctx context.Context) error { return b.AddPresence(ctx, "c", "x", &hub.ClientInfo{}) },
		"presence":     func(ctx context.Context) error { _, err := b.Presence(ctx, "c"); return err },
		"publish join": func(ctx context.Context) error { return b.PublishJoin(ctx, "c", &hub.ClientInfo{}) },
	}
	for name, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := op(ctx)
		cancel()
		require.ErrorContains(t, err, "redis broker: "+name, name)
		require.Equal(t, errs.Internal, errs.CodeOf(err), name)
	}
	err = b.Subscribe("c")
	require.ErrorIs(t, err, hub.ErrRetryLater)
}

// Redis slower than the deadline: operations fail with a deadline error,
// the wedged PUB/SUB connection is replaced, and everything recovers.
func TestFaultRedisSlow(t *testing.T) {
	srv := startRedis(t)
	reg := prometheus.NewRegistry()
	cfg := fastConfig(srv.URL())
	cfg.Registerer = reg
	b := newTestBroker(t, cfg)
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	subscribe(t, b, "slow")
	publish(t, b, "slow", "1")
	require.Eventually(t, func() bool { return len(rec.Events("slow")) == 1 }, 5*time.Second, 10*time.Millisecond)
	lives := metricValue(t, reg, "switchboard_redis_pubsub_connects_total")

	admin(t, srv, "CLIENT", "PAUSE", "1500", "ALL")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := b.Publish(ctx, "slow", &hub.Publication{Data: []byte("2")}, hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, `redis broker: publish "slow"`)
	require.Less(t, time.Since(start), time.Second, "the deadline was not honoured")

	// A first subscriber's SUBSCRIBE ends with its context (a client
	// command's deadline), a temporary 108; Unsubscribe does not wait on
	// the paused Redis beyond unsubscribeWait.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	start = time.Now()
	err = b.SubscribeContext(ctx, "slow-new")
	cancel()
	require.ErrorIs(t, err, hub.ErrRetryLater)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), time.Second, "the subscribe deadline was not honoured")
	start = time.Now()
	require.NoError(t, b.Unsubscribe("slow-new"))
	require.Less(t, time.Since(start), unsubscribeWait+500*time.Millisecond, "Unsubscribe waited on the paused Redis")

	// Recovery: publications are delivered again through a fresh PUB/SUB
	// connection (the probe replaced the paused one).
	require.Eventually(t, func() bool {
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := b.Publish(c, "slow", &hub.Publication{Data: []byte("3")}, hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute})
		if err != nil {
			return false
		}
		for _, ev := range rec.Events("slow") {
			if string(ev.Pub.Data) == "3" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	require.Greater(t, metricValue(t, reg, "switchboard_redis_pubsub_connects_total"), lives, "the paused PUB/SUB connection was not probed and replaced")
}

// roundTrip checks that b, running with rec, delivers and stores a publication.
func roundTrip(t *testing.T, b *Broker, rec *brokertest.Recorder) {
	t.Helper()
	subscribe(t, b, "rt")
	sp := publish(t, b, "rt", "hello")
	require.Equal(t, uint64(1), sp.Offset)
	require.Eventually(t, func() bool { return len(rec.Events("rt")) == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestAddressUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	startRedis(t, "--unixsocket", sock)
	b := newTestBroker(t, Config{Address: "unix://" + sock})
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	roundTrip(t, b, rec)
}

// A redis+sentinel:// address finds the master through a real Sentinel.
func TestAddressSentinel(t *testing.T) {
	master := startRedis(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor mymaster 127.0.0.1 %d 1\n", master.Port())), 0o600))
	sentinel := startRedis(t, conf, "--sentinel")
	b := newTestBroker(t, Config{Address: fmt.Sprintf("redis+sentinel://127.0.0.1:%d?sentinel_master_name=mymaster", sentinel.Port())})
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	roundTrip(t, b, rec)
}

// Sentinel failover: the master dies, Sentinel promotes the replica, and
// the broker's commands and PUB/SUB follow the new master (the wedged
// PUB/SUB of Centrifugo's #1189 must not happen).
func TestFaultSentinelFailover(t *testing.T) {
	master := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"sentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 300\nsentinel failover-timeout mymaster 2000\n",
		master.Port())), 0o600))
	sentinel := startRedis(t, conf, "--sentinel")
	cfg := fastConfig(fmt.Sprintf("redis+sentinel://127.0.0.1:%d?sentinel_master_name=mymaster", sentinel.Port()))
	b := newTestBroker(t, cfg)
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	roundTrip(t, b, rec)
	// The replica must have synced before the master goes, or Sentinel
	// refuses to promote it.
	require.Eventually(t, func() bool {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", replica.Port())}, DisableCache: true})
		if err != nil {
			return false
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 10*time.Second, 50*time.Millisecond, "replica did not sync")

	master.Kill()
	require.Eventually(t, func() bool {
		c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, _ = b.Publish(c, "rt", &hub.Publication{Data: []byte("after failover")}, hub.PublishOptions{})
		for _, ev := range rec.Events("rt") {
			if string(ev.Pub.Data) == "after failover" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no delivery through the promoted replica")
}

// metricValue reads the counter or gauge called name from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
