package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestPoolRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"node", nodeWorker},
		{"python", []string{"python3", "testdata/testworker.py"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPool(t, Config{Command: tc.cmd, Workers: 2})
			ctx := context.Background()
			res, err := p.Do(ctx, task("app.tasks.add", map[string]int{"a": 5, "b": 3}))
			require.NoError(t, err)
			require.Equal(t, "8", string(res))

			_, err = p.Do(ctx, Request{Kind: KindEvent, ID: "app.events.notify", Input: json.RawMessage(`{"m":1}`)})
			require.NoError(t, err)

			_, err = p.Do(ctx, task("nope", nil))
			require.ErrorIs(t, err, ErrNotFound)

			_, err = p.Do(ctx, task("test.fail", map[string]string{"message": "bad", "code": "MY_CODE"}))
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, &Error{Code: "MY_CODE", Message: "bad", Remote: true}, e)

			res, err = p.Do(ctx, Request{Kind: KindTask, ID: "test.echo", Input: json.RawMessage("{\n\"x\": 1}"),
				Context: &RequestContext{User: "u1", Headers: map[string]string{"a": "b"}}})
			require.NoError(t, err)
			require.JSONEq(t, `{"input":{"x":1},"context":{"user":"u1","headers":{"a":"b"}}}`, string(res))

			_, err = p.Do(ctx, Request{Kind: KindTask, ID: "app.tasks.add", Input: json.RawMessage("{")})
			require.ErrorIs(t, err, ErrInvalidInput)

			if tc.name == "python" {
				res, err = p.Do(ctx, task("test.asyncadd", map[string]int{"a": 1, "b": 2}))
				require.NoError(t, err)
				require.Equal(t, "3", string(res))
			}

			require.Eventually(t, func() bool { return p.Discovery().Enabled }, testenv.Wait, testenv.Tick, "ready announcement")
			require.Contains(t, p.Discovery().Tasks, "app.tasks.add")
			require.True(t, p.Exposed(KindTask, "app.tasks.add"))
			require.False(t, p.Exposed(KindTask, "nope"))
			require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_requests_total", map[string]string{"kind": "task", "outcome": "not_found"}))
		})
	}
}

func TestAllowList(t *testing.T) {
	p := mustPool(t, Config{AllowTasks: []string{"app.*", "x"}, AllowEvents: []string{"e"}})
	require.True(t, p.Exposed(KindTask, "app.tasks.add"))
	require.True(t, p.Exposed(KindTask, "x"))
	require.False(t, p.Exposed(KindTask, "test.echo"))
	require.False(t, p.Exposed(KindEvent, "x"))
	require.True(t, p.Exposed(KindEvent, "e"))
	require.Equal(t, Discovery{Enabled: true, Tasks: []string{"app.*", "x"}, Events: []string{"e"}}, p.Discovery())
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{})
	require.ErrorContains(t, err, "command is required")
	_, err = New(Config{Command: []string{"x"}, Timeout: -1, MaxJobs: -1})
	require.ErrorContains(t, err, "timeout")
	require.ErrorContains(t, err, "max_jobs")
}

func TestTimeoutSendsCancel(t *testing.T) {
	p := mustPool(t, Config{Timeout: 100 * time.Millisecond})
	_, err := p.Do(context.Background(), task("test.sleep", map[string]int{"ms": 5000}))
	require.ErrorIs(t, err, ErrTimeout)
	require.Eventually(t, func() bool {
		res, err := p.Do(context.Background(), task("test.cancelled", nil))
		return err == nil && string(res) == "1"
	}, testenv.Wait, testenv.Tick, "cancel reaches worker")
}

func TestCallerCancel(t *testing.T) {
	p := mustPool(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := p.Do(ctx, task("test.sleep", map[string]int{"ms": 5000}))
		errc <- err
	}()
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_in_flight", nil) == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	cancel()
	require.ErrorIs(t, <-errc, ErrCanceled)
}

func TestOverloaded(t *testing.T) {
	p := mustPool(t, Config{MaxInFlight: 1, QueueSize: 1, QueueTimeout: 100 * time.Millisecond})
	p.pid(t) // worker up
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = p.Do(context.Background(), task("test.sleep", map[string]int{"ms": 600}))
	}()
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_in_flight", nil) == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	// One waits in the queue and times out; meanwhile the next finds it full.
	errc := make(chan error, 1)
	go func() {
		_, err := p.Do(context.Background(), task("app.tasks.add", map[string]int{"a": 1, "b": 1}))
		errc <- err
	}()
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_queue_depth", nil) == 1
	}, testenv.Wait, testenv.Tick, "queued")
	_, err := p.Do(context.Background(), task("app.tasks.add", map[string]int{"a": 1, "b": 1}))
	require.ErrorIs(t, err, ErrOverloaded)
	require.ErrorContains(t, err, "queue full")
	err = <-errc
	require.ErrorIs(t, err, ErrOverloaded)
	require.ErrorContains(t, err, "queue timeout")
	wg.Wait()
}

func TestQueuedRequestsServedInOrder(t *testing.T) {
	p := mustPool(t, Config{MaxInFlight: 2, QueueTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Do(context.Background(), task("app.tasks.add", map[string]int{"a": i, "b": i}))
			if err == nil && string(res) == fmt.Sprint(2*i) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 20, ok.Load())
}

func TestCrashFailsInFlightAndReplaces(t *testing.T) {
	p := mustPool(t, Config{})
	pid := p.pid(t)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Do(context.Background(), task("test.sleep", map[string]int{"ms": 10000}))
		errc <- err
	}()
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_in_flight", nil) == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	require.Greater(t, pid, 1)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.ErrorIs(t, <-errc, ErrWorkerCrashed)
	require.Eventually(t, func() bool {
		res, err := p.Do(context.Background(), task("test.pid", nil))
		return err == nil && string(res) != fmt.Sprint(pid)
	}, testenv.Wait, testenv.Tick, "replacement")
	require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "exit"}))
}

func TestProtocolViolations(t *testing.T) {
	for _, tc := range []struct{ name, task string }{
		{"garbage", "test.garbage"},
		{"unknown id", "test.unknownid"},
		{"oversize", "test.big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPool(t, Config{MaxMessageSize: 4096})
			pid := p.pid(t)
			_, err := p.Do(context.Background(), task(tc.task, map[string]int{"n": 10000}))
			require.ErrorIs(t, err, ErrWorkerCrashed)
			require.Eventually(t, func() bool {
				res, err := p.Do(context.Background(), task("test.pid", nil))
				return err == nil && string(res) != fmt.Sprint(pid)
			}, testenv.Wait, testenv.Tick, "replacement")
			require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "protocol"}))
		})
	}
}

func TestHangingWorkerKilledByPing(t *testing.T) {
	// Pings run on a fake clock: only the test's Advance sends them, so a
	// slowly booting replacement is never pinged out as well.
	clk := clocktest.New(time.Unix(1000, 0))
	p := mustPool(t, Config{Timeout: 100 * time.Millisecond, PingInterval: time.Second, Clock: clk})
	pid := p.pid(t)
	_, err := p.Do(context.Background(), task("test.hang", nil))
	require.ErrorIs(t, err, ErrTimeout)
	require.Eventually(t, func() bool { return clk.Pending() == 1 }, testenv.Wait, testenv.Tick, "supervision scheduled")
	// One interval sends a ping, the next finds it unanswered. The
	// restart is counted before the replacement starts, so at most one
	// more Advance reaches the replacement: it is pinged, never killed.
	require.Eventually(t, func() bool {
		if metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "ping"}) == 1 {
			return true
		}
		clk.Advance(time.Second)
		return false
	}, testenv.Wait, testenv.Tick, "the hanging worker killed by the ping check")
	require.Eventually(t, func() bool {
		res, err := p.Do(context.Background(), task("test.pid", nil))
		return err == nil && string(res) != fmt.Sprint(pid)
	}, testenv.Wait, testenv.Tick, "replacement")
	require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "ping"}))
}

func TestCommandCannotStart(t *testing.T) {
	p := mustPool(t, Config{Command: []string{"/nonexistent/switchboard-worker"}})
	require.Contains(t, p.logs.String(), "worker command cannot start")
	start := time.Now()
	_, err := p.Do(context.Background(), task("app.tasks.add", nil))
	require.ErrorIs(t, err, ErrWorkerCrashed)
	require.Less(t, time.Since(start), time.Second)
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "spawn_failed"}) >= 2
	}, testenv.Wait, testenv.Tick, "background retry")
}

func TestCommandExitsAtOnce(t *testing.T) {
	p := mustPool(t, Config{Command: []string{"node", "-e", "process.exit(1)"}})
	require.Eventually(t, func() bool {
		_, err := p.Do(context.Background(), task("app.tasks.add", nil))
		return errors.Is(err, ErrWorkerCrashed) &&
			metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "exit"}) >= 2
	}, testenv.Wait, testenv.Tick, "backoff")
}

// TestRecycle checks that every recycling trigger replaces the worker with
// no failed request while requests keep flowing.
func TestRecycle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		reason string
	}{
		{"max_jobs", Config{MaxJobs: 25, Workers: 2}, reasonMaxJobs},
		{"ttl", Config{TTL: 300 * time.Millisecond}, reasonTTL},
		{"max_memory", Config{MaxMemory: 1}, reasonMaxMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPool(t, tc.cfg)
			var failed atomic.Int32
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						res, err := p.Do(context.Background(), task("app.tasks.add", map[string]int{"a": g, "b": i}))
						if err != nil || string(res) != fmt.Sprint(g+i) {
							t.Errorf("request failed: %v %s", err, res)
							failed.Add(1)
							return
						}
					}
				}()
			}
			require.Eventually(t, func() bool {
				return metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": tc.reason}) >= 3
			}, 20*time.Second, testenv.Tick, "3 recycles")
			close(stop)
			wg.Wait()
			require.Zero(t, failed.Load())
			require.Zero(t, metricValue(t, p.reg, "switchboard_worker_requests_total", map[string]string{"outcome": "crashed"}))
		})
	}
}

func TestIdleTTL(t *testing.T) {
	p := mustPool(t, Config{IdleTTL: 100 * time.Millisecond})
	pid := p.pid(t)
	require.Eventually(t, func() bool {
		return metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "idle_ttl"}) >= 1
	}, testenv.Wait, testenv.Tick, "idle recycle")
	require.NotEqual(t, pid, p.pid(t))
}

func TestShutdownDrains(t *testing.T) {
	logs := &testenv.Buffer{}
	_ = logs
	p, err := New(Config{Command: nodeWorker})
	require.NoError(t, err)
	_ = (&testPool{Pool: p}).pid(t)
	done := make(chan error, 1)
	go func() {
		res, err := p.Do(context.Background(), task("test.sleep", map[string]int{"ms": 300}))
		if err == nil && string(res) != "300" {
			err = fmt.Errorf("bad result %s", res)
		}
		done <- err
	}()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.inflight == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Shutdown(ctx))
	require.NoError(t, <-done)
	_, err = p.Do(context.Background(), task("app.tasks.add", nil))
	require.ErrorIs(t, err, ErrShuttingDown)
	require.NoError(t, p.Shutdown(ctx)) // idempotent
}

func TestShutdownDeadlineKills(t *testing.T) {
	p, err := New(Config{Command: nodeWorker})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := p.Do(context.Background(), task("test.hang", nil))
		done <- err
	}()
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.inflight == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Shutdown(ctx), context.DeadlineExceeded)
	require.ErrorIs(t, <-done, ErrWorkerCrashed)
}

func TestStderrLogged(t *testing.T) {
	p := mustPool(t, Config{})
	pid := p.pid(t)
	_, err := p.Do(context.Background(), task("test.stderr", map[string]string{"line": "hello from worker"}))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(p.logs.String(), fmt.Sprintf(`msg="worker stderr" component=worker pid=%d line="hello from worker"`, pid))
	}, testenv.Wait, testenv.Tick, "stderr log")
}

func TestRPCAdapter(t *testing.T) {
	p := mustPool(t, Config{AllowTasks: []string{"app.tasks.add", "test.*", "missing"}})
	a := NewRPCAdapter(p.Pool)
	ctx := context.Background()
	res, err := a.HandleRPC(ctx, hub.RPCRequest{Method: "app.tasks.add", Data: []byte(`{"a":2,"b":3}`)})
	require.NoError(t, err)
	require.Equal(t, "5", string(res))

	res, err = a.HandleRPC(ctx, hub.RPCRequest{Method: "test.echo", User: "alice", Client: "c1", Data: []byte(`{"x":1}`)})
	require.NoError(t, err)
	require.JSONEq(t, `{"input":{"x":1},"context":{"user":"alice","client":"c1"}}`, string(res))

	for _, tc := range []struct {
		name string
		req  hub.RPCRequest
		want error
	}{
		{"not exposed", hub.RPCRequest{Method: "app.other"}, hub.ErrMethodNotFound},
		{"worker not found", hub.RPCRequest{Method: "missing"}, hub.ErrMethodNotFound},
		{"bad data", hub.RPCRequest{Method: "app.tasks.add", Data: []byte{0x0a, 0xff}}, hub.ErrBadRequest},
		{"handler error", hub.RPCRequest{Method: "test.fail", Data: []byte(`{"message":"nope","code":"X"}`)}, &hub.AppError{Code: 1000, Message: "nope"}},
		{"numeric code", hub.RPCRequest{Method: "test.fail", Data: []byte(`{"message":"denied","code":"4003"}`)}, &hub.AppError{Code: 4003, Message: "denied"}},
		{"crash", hub.RPCRequest{Method: "test.crash"}, &errs.Error{Code: errs.Unavailable, Message: "worker unavailable", Temporary: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.HandleRPC(ctx, tc.req)
			require.Equal(t, tc.want, err)
		})
	}
	require.GreaterOrEqual(t, metricValue(t, p.reg, "switchboard_worker_requests_total", map[string]string{"kind": "rpc", "outcome": "ok"}), 2.0)
}
