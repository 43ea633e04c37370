package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var nodeWorker = []string{"node", "testdata/testworker.js"}

type testPool struct {
	*Pool
	reg  *prometheus.Registry
	logs *testenv.Buffer
}

func mustPool(tb testing.TB, cfg Config) *testPool {
	tb.Helper()
	if cfg.Command == nil {
		cfg.Command = nodeWorker
	}
	logs := &testenv.Buffer{}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(tb, p.Shutdown(ctx))
	})
	return &testPool{Pool: p, reg: reg, logs: logs}
}

func metricValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := reg.Gather() // called from Eventually conditions: no FailNow
	if !assert.NoError(tb, err) {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func task(id string, input any) Request {
	b, _ := json.Marshal(input)
	return Request{Kind: KindTask, ID: id, Input: b}
}

func (p *testPool) pid(tb testing.TB) int {
	tb.Helper()
	var res json.RawMessage
	require.Eventually(tb, func() bool { // cold start may exceed short timeouts
		var err error
		res, err = p.Do(context.Background(), task("test.pid", nil))
		return err == nil
	}, testenv.Wait, testenv.Tick, "worker up")
	var pid int
	require.NoError(tb, json.Unmarshal(res, &pid))
	return pid
}
