package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPrefix is a key prefix of its own for each test.
func testPrefix(t testing.TB) string {
	r := strings.NewReplacer("/", ".", " ", "_", "{", "", "}", "")
	return fmt.Sprintf("sbtest.%s.%d", r.Replace(t.Name()), time.Now().UnixNano())
}

// newTestBroker returns a broker on the test Redis (not running), closed
// at cleanup together with its keys.
func newTestBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	if cfg.Address == "" && cfg.Client == nil {
		cfg.Address = testenv.RedisURL(t)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix(t)
	}
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if b.owned {
			cleanKeys(ctx, b)
		}
		require.NoError(t, b.Close(ctx))
	})
	return b
}

func cleanKeys(ctx context.Context, b *Broker) {
	keys, err := b.client.Do(ctx, b.client.B().Keys().Pattern(b.prefix+".*").Build()).AsStrSlice()
	if err != nil || len(keys) == 0 {
		return
	}
	_ = b.client.Do(ctx, b.client.B().Del().Key(keys...).Build()).Error()
}

func TestConformance(t *testing.T) {
	testenv.RedisURL(t)
	brokertest.Run(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b := newTestBroker(t, Config{})
		return b, b
	})
}

func TestConformanceOneShard(t *testing.T) {
	testenv.RedisURL(t)
	brokertest.Run(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b := newTestBroker(t, Config{Shards: 1})
		return b, b
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIdempotentPublish(t *testing.T) {
	b := newTestBroker(t, Config{})
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	subscribe(t, b, "idem")
	opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
	sp1, err := b.PublishIdempotent(ctxT(t), "idem", &hub.Publication{Data: []byte("a")}, opts, "k1", time.Minute)
	require.NoError(t, err)
	sp2, err := b.PublishIdempotent(ctxT(t), "idem", &hub.Publication{Data: []byte("a")}, opts, "k1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, sp1, sp2, "a repeated key returns the first result")
	sp3, err := b.PublishIdempotent(ctxT(t), "idem", &hub.Publication{Data: []byte("b")}, opts, "k2", time.Minute)
	require.NoError(t, err)
	require.Equal(t, sp1.Offset+1, sp3.Offset)
	r, err := b.History(ctxT(t), "idem", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Len(t, r.Publications, 2)
	require.Eventually(t, func() bool { return len(rec.Events("idem")) == 2 }, 5*time.Second, 10*time.Millisecond)

	// Without history the key still suppresses the second delivery.
	_, err = b.PublishIdempotent(ctxT(t), "idem", &hub.Publication{Data: []byte("c")}, hub.PublishOptions{}, "k3", time.Minute)
	require.NoError(t, err)
	_, err = b.PublishIdempotent(ctxT(t), "idem", &hub.Publication{Data: []byte("c")}, hub.PublishOptions{}, "k3", time.Minute)
	require.NoError(t, err)
	sp4 := publish(t, b, "idem", "marker")
	require.Equal(t, sp3.Offset+1, sp4.Offset)
	require.Eventually(t, func() bool { return len(rec.Events("idem")) == 4 }, 5*time.Second, 10*time.Millisecond)
	ev := rec.Events("idem")
	require.Equal(t, "c", string(ev[2].Pub.Data))
	require.Equal(t, "marker", string(ev[3].Pub.Data))
}

// Presence entries vanish PresenceTTL after their last AddPresence.
func TestPresenceTTL(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b := newTestBroker(t, Config{PresenceTTL: time.Minute, Now: clock})
	ctx := ctxT(t)
	require.NoError(t, b.AddPresence(ctx, "p", "c1", &hub.ClientInfo{ClientID: "c1", UserID: "u1"}))
	require.NoError(t, b.AddPresence(ctx, "p", "c2", &hub.ClientInfo{ClientID: "c2", UserID: "u2"}))
	advance(40 * time.Second)
	require.NoError(t, b.AddPresence(ctx, "p", "c1", &hub.ClientInfo{ClientID: "c1", UserID: "u1"})) // refresh
	advance(30 * time.Second)
	m, err := b.Presence(ctx, "p")
	require.NoError(t, err)
	require.Contains(t, m, "c1", "a refreshed entry stays")
	require.NotContains(t, m, "c2", "an entry not refreshed within the TTL expires")
	st, err := b.PresenceStats(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 1, NumUsers: 1}, st)
	// The expired member is gone from Redis, not only from the answer.
	n, err := b.client.Do(ctx, b.client.B().Hlen().Key(b.key("presence.data", "p")).Build()).AsInt64()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	advance(time.Minute)
	m, err = b.Presence(ctx, "p")
	require.NoError(t, err)
	require.Empty(t, m)
}

// Keys expire: a stream TTL after its last publication, the meta hash and
// presence keys with their TTLs.
func TestKeyTTLs(t *testing.T) {
	b := newTestBroker(t, Config{MetaTTL: time.Hour, PresenceTTL: time.Minute})
	ctx := ctxT(t)
	publishOpts(t, b, "k", "x", hub.PublishOptions{HistorySize: 5, HistoryTTL: 30 * time.Second})
	require.NoError(t, b.AddPresence(ctx, "k", "c1", &hub.ClientInfo{ClientID: "c1"}))
	pttl := func(key string) time.Duration {
		v, err := b.client.Do(ctx, b.client.B().Pttl().Key(key).Build()).AsInt64()
		require.NoError(t, err)
		return time.Duration(v) * time.Millisecond
	}
	require.InDelta(t, float64(30*time.Second), float64(pttl(b.key("stream", "k"))), float64(5*time.Second))
	require.InDelta(t, float64(time.Hour), float64(pttl(b.key("meta", "k"))), float64(5*time.Second))
	require.InDelta(t, float64(time.Minute), float64(pttl(b.key("presence.data", "k"))), float64(5*time.Second))
	require.InDelta(t, float64(time.Minute), float64(pttl(b.key("presence.expire", "k"))), float64(5*time.Second))
}

func TestSubscribeBeforeRun(t *testing.T) {
	b := newTestBroker(t, Config{})
	require.ErrorContains(t, b.Subscribe("x"), "not running")
	require.Error(t, b.Run(nil))
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	b := newTestBroker(t, Config{})
	rec := brokertest.NewRecorder()
	require.NoError(t, b.Run(rec))
	subscribe(t, b, "u")
	publish(t, b, "u", "1")
	require.Eventually(t, func() bool { return len(rec.Events("u")) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Unsubscribe("u"))
	subscribe(t, b, "marker")
	publish(t, b, "u", "2")
	publish(t, b, "marker", "m")
	require.Eventually(t, func() bool { return len(rec.Events("marker")) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Len(t, rec.Events("u"), 1, "no delivery after Unsubscribe")
}

func TestBadPrefix(t *testing.T) {
	_, err := New(Config{Address: "redis://127.0.0.1:1", Prefix: "a{b"})
	require.ErrorContains(t, err, "prefix")
	_, err = New(Config{})
	require.ErrorContains(t, err, "address")
	_, err = New(Config{Address: "http://x"})
	require.ErrorContains(t, err, "scheme")
}

func subscribe(t *testing.T, b *Broker, ch string) {
	t.Helper()
	var err error
	require.Eventually(t, func() bool { err = b.Subscribe(ch); return err == nil }, 10*time.Second, 10*time.Millisecond, "subscribe: %v", err)
}

func publish(t *testing.T, b *Broker, ch, data string) hub.StreamPosition {
	t.Helper()
	return publishOpts(t, b, ch, data, hub.PublishOptions{HistorySize: 100, HistoryTTL: time.Minute})
}

func publishOpts(t *testing.T, b *Broker, ch, data string, opts hub.PublishOptions) hub.StreamPosition {
	t.Helper()
	sp, err := b.Publish(ctxT(t), ch, &hub.Publication{Data: []byte(data)}, opts)
	require.NoError(t, err)
	return sp
}

// The broker refreshes the entries it added until they are removed, so
// they outlive PresenceTTL while the process lives.
func TestPresenceRefresher(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b := newTestBroker(t, Config{PresenceTTL: time.Minute, PresenceRefresh: 10 * time.Millisecond, Now: clock})
	require.NoError(t, b.Run(brokertest.NewRecorder()))
	ctx := ctxT(t)
	require.NoError(t, b.AddPresence(ctx, "r", "c1", &hub.ClientInfo{ClientID: "c1", UserID: "u1"}))
	require.NoError(t, b.AddPresence(ctx, "r", "c2", &hub.ClientInfo{ClientID: "c2", UserID: "u2"}))
	require.NoError(t, b.RemovePresence(ctx, "r", "c2", "u2"))
	score := func() float64 {
		v, err := b.client.Do(ctx, b.client.B().Zscore().Key(b.key("presence.expire", "r")).Member("c1").Build()).AsFloat64()
		require.NoError(t, err)
		return v
	}
	first := score()
	advance(50 * time.Second)
	require.Eventually(t, func() bool { return score() > first }, 5*time.Second, 10*time.Millisecond, "entry not refreshed")
	advance(30 * time.Second) // past the first expiry
	m, err := b.Presence(ctx, "r")
	require.NoError(t, err)
	require.Contains(t, m, "c1")
	require.NotContains(t, m, "c2", "a removed entry is not refreshed back")
}

// Two brokers on one prefix are two processes of one server: publications,
// joins and leaves cross between them in order; history and presence are
// shared.
func TestTwoBrokersOneServer(t *testing.T) {
	prefix := testPrefix(t)
	a := newTestBroker(t, Config{Prefix: prefix})
	b := newTestBroker(t, Config{Prefix: prefix})
	recA, recB := brokertest.NewRecorder(), brokertest.NewRecorder()
	require.NoError(t, a.Run(recA))
	require.NoError(t, b.Run(recB))
	subscribe(t, a, "x")
	subscribe(t, b, "x")
	ctx := ctxT(t)
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1"}
	publish(t, a, "x", "1")
	require.NoError(t, b.PublishJoin(ctx, "x", info))
	publish(t, b, "x", "2")
	require.NoError(t, a.PublishLeave(ctx, "x", info))
	for _, rec := range []*brokertest.Recorder{recA, recB} {
		require.Eventually(t, func() bool { return len(rec.Events("x")) == 4 }, 5*time.Second, 10*time.Millisecond)
		ev := rec.Events("x")
		require.Equal(t, "1", string(ev[0].Pub.Data))
		require.Equal(t, "join", ev[1].Kind)
		require.Equal(t, uint64(2), ev[2].Pub.Offset)
		require.Equal(t, "leave", ev[3].Kind)
	}
	r, err := b.History(ctx, "x", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Len(t, r.Publications, 2)
	require.NoError(t, a.AddPresence(ctx, "x", "c1", info))
	m, err := b.Presence(ctx, "x")
	require.NoError(t, err)
	require.Contains(t, m, "c1")
}
