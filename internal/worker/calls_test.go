package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

var callWorker = []string{"python3", "testdata/callworker.py"}

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the call tests run a Python worker")
	}
}

type echoCalls struct{ seen chan string }

func (e echoCalls) HandleCall(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	e.seen <- method
	if string(params) == `"fail"` {
		return nil, &Error{Code: "quota", Message: "over the limit"}
	}
	return params, nil
}

func TestWorkerCallsTheServer(t *testing.T) {
	needPython(t)
	p := mustPool(t, Config{Command: callWorker})
	calls := echoCalls{seen: make(chan string, 2)}
	res, err := p.Do(context.Background(), Request{Kind: KindTask, ID: "test.call", Input: json.RawMessage(`{"a":1}`), Calls: calls})
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(res))
	require.Equal(t, "echo", <-calls.seen)

	// A handler error reaches the worker with its code.
	_, err = p.Do(context.Background(), Request{Kind: KindTask, ID: "test.call", Input: json.RawMessage(`"fail"`), Calls: calls})
	var we *Error
	require.True(t, errors.As(err, &we), "%v", err)
	require.Equal(t, "quota", we.Code)
	require.Equal(t, "over the limit", we.Message)

	// Without a handler the call gets an error reply, not a dead worker.
	_, err = p.Do(context.Background(), Request{Kind: KindTask, ID: "test.call", Input: json.RawMessage(`1`)})
	require.True(t, errors.As(err, &we), "%v", err)
	require.Equal(t, CodeNotFound, we.Code)
}

func TestWorkerAsksToBeRecycled(t *testing.T) {
	needPython(t)
	p := mustPool(t, Config{Command: callWorker})
	res, err := p.Do(context.Background(), task("test.recycle", nil))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := p.Do(context.Background(), task("test.pid", nil))
		return err == nil && string(got) != string(res)
	}, testenv.Wait, testenv.Tick, "replacement")
	require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "requested"}))
}

func TestKillOnTimeout(t *testing.T) {
	needPython(t)
	p := mustPool(t, Config{Command: callWorker, Timeout: 2 * time.Second, KillOnTimeout: true, PingInterval: -1})
	pid := p.pid(t)
	_, err := p.Do(context.Background(), task("test.hang", nil))
	require.ErrorIs(t, err, ErrTimeout)
	// Replaced at once (the worker had served), not after a ping interval.
	res, err := p.Do(context.Background(), task("test.pid", nil))
	require.NoError(t, err)
	require.NotEqual(t, fmt.Sprint(pid), string(res))
	require.Equal(t, 1.0, metricValue(t, p.reg, "switchboard_worker_restarts_total", map[string]string{"reason": "timeout"}))
}

// A crash reports the exit status, so callers can tell a limit (a signal,
// a status) from other failures.
func TestCrashCarriesExitStatus(t *testing.T) {
	needPython(t)
	p := mustPool(t, Config{Command: callWorker})
	_, err := p.Do(context.Background(), task("test.exit", map[string]int{"code": 7}))
	require.ErrorIs(t, err, ErrWorkerCrashed)
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, 7, ee.ExitCode())
}
