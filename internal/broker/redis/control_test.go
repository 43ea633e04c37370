package redis

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/hub/controltest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// newTestControl returns a control plane on a broker of prefix, closed at
// cleanup.
func newTestControl(t *testing.T, cfg Config) *Control {
	t.Helper()
	b := newTestBroker(t, cfg)
	p, err := b.ControlPlane()
	require.NoError(t, err)
	c := p.(*Control)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, c.Close(ctx))
	})
	return c
}

func TestControlConformance(t *testing.T) {
	testenv.RedisURL(t)
	controltest.Run(t, func(t *testing.T) func() hub.ControlPlane {
		prefix := testPrefix(t)
		return func() hub.ControlPlane { return newTestControl(t, Config{Prefix: prefix}) }
	})
}

type controlRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *controlRecorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.got = append(r.got, string(data))
	r.mu.Unlock()
}

func (r *controlRecorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.got, s)
}

// After a Redis restart the control connection resubscribes by itself.
func TestControlSurvivesRedisRestart(t *testing.T) {
	s := startRedis(t)
	cfg := Config{Address: s.URL(), Prefix: testPrefix(t), ReconnectDelay: 10 * time.Millisecond,
		PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond}
	a, b := newTestControl(t, cfg), newTestControl(t, cfg)
	ra, rb := &controlRecorder{}, &controlRecorder{}
	require.NoError(t, a.Run("a", ra))
	require.NoError(t, b.Run("b", rb))
	ctx := context.Background()
	require.NoError(t, a.Send(ctx, "b", []byte("before")))
	require.Eventually(t, func() bool { return rb.has("before") }, 5*time.Second, 5*time.Millisecond)

	s.Kill()
	require.Error(t, a.Broadcast(ctx, []byte("while down")), "publish fails while Redis is down")
	s.Start()
	require.Eventually(t, func() bool {
		_ = a.Broadcast(ctx, []byte("after"))
		return rb.has("after") && ra.has("after")
	}, 10*time.Second, 20*time.Millisecond, "both nodes resubscribed")
}

// chanHandler signals every message it receives.
type chanHandler chan struct{}

func (c chanHandler) HandleControl([]byte) { c <- struct{}{} }

// BenchmarkControlRoundTrip: one Send from node a until node b handles it,
// through the test Redis.
func BenchmarkControlRoundTrip(b *testing.B) {
	url := testenv.RedisURL(b)
	prefix := testPrefix(b)
	mk := func(node string, h hub.ControlHandler) *Control {
		br, err := New(Config{Address: url, Prefix: prefix})
		require.NoError(b, err)
		p, err := br.ControlPlane()
		require.NoError(b, err)
		c := p.(*Control)
		require.NoError(b, c.Run(node, h))
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(b, c.Close(ctx))
			require.NoError(b, br.Close(ctx))
		})
		return c
	}
	got := make(chanHandler, 1)
	a := mk("a", chanHandler(make(chan struct{}, 1)))
	mk("b", got)
	ctx := context.Background()
	msg := []byte(`{"t":"disconnect","n":"a","c":{"u":"alice","code":3503}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Send(ctx, "b", msg); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
