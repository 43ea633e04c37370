package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blockRunner blocks scripts named "block" until released or cancelled and
// echoes everything else.
type blockRunner struct {
	release chan struct{}
	mu      sync.Mutex
	running int
}

func (r *blockRunner) Run(ctx context.Context, req script.Request) (string, error) {
	if req.Script == "block" {
		r.mu.Lock()
		r.running++
		r.mu.Unlock()
		select {
		case <-r.release:
			return "released", nil
		case <-ctx.Done():
			return "", &script.Error{Kind: script.KindCancelled, Msg: "cancelled"}
		}
	}
	if req.Script == "fail" {
		return "", &script.Error{Kind: script.KindRuntime, Msg: "boom"}
	}
	return req.Circle + ":" + req.Caller + ":" + req.Script, nil
}

func (r *blockRunner) Running() int { r.mu.Lock(); defer r.mu.Unlock(); return r.running }

func TestLocalIsolationAndQueueFull(t *testing.T) {
	r := &blockRunner{release: make(chan struct{})}
	l, err := NewLocal(Config{Concurrency: 1, QueueSize: 1, Metrics: prometheus.NewRegistry()}, r)
	require.NoError(t, err)
	defer l.Shutdown(context.Background())

	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(chan string, 2)
	wg.Add(1)
	go func() { defer wg.Done(); out, _ := l.Play(ctx, "slow", "", "block"); results <- out }()
	require.Eventually(t, func() bool { return r.Running() == 1 }, testenv.Wait, testenv.Tick, "the first play runs")
	wg.Add(1)
	go func() { defer wg.Done(); out, _ := l.Play(ctx, "slow", "", "block"); results <- out }()
	require.Eventually(t, func() bool { l.mu.RLock(); defer l.mu.RUnlock(); return len(l.queues["slow"]) == 1 },
		testenv.Wait, testenv.Tick, "the second play waits in slow's queue")
	// slow's queue is full now
	_, err = l.Play(ctx, "slow", "", "x")
	require.ErrorIs(t, err, ErrQueueFull)
	msg, ok := ClientMessage(err)
	require.True(t, ok)
	require.Contains(t, msg, "queue full")

	// another circle is not delayed
	out, err := l.Play(ctx, "fast", "me", "hello")
	require.NoError(t, err)
	require.Equal(t, "fast:me:hello", out)
	_, err = l.Play(ctx, "fast", "", "fail")
	var se *script.Error
	require.True(t, errors.As(err, &se))

	close(r.release)
	wg.Wait()
	require.Equal(t, "released", <-results)
	require.Equal(t, "released", <-results)
}

func TestLocalContextAndShutdown(t *testing.T) {
	r := &blockRunner{release: make(chan struct{})}
	l, err := NewLocal(Config{}, r)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.Play(ctx, "c", "", "block")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	errc := make(chan error, 1)
	go func() { _, err := l.Play(context.Background(), "c", "", "block"); errc <- err }()
	require.Eventually(t, func() bool { return r.Running() == 2 }, testenv.Wait, testenv.Tick,
		"the second play runs (the timed-out one still holds its runner)")
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer scancel()
	require.ErrorIs(t, l.Shutdown(sctx), context.DeadlineExceeded)
	var se *script.Error
	require.True(t, errors.As(<-errc, &se))
	_, err = l.Play(context.Background(), "c", "", "x")
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, l.Shutdown(context.Background()))
}
