package script

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RunMetrics counts script runs by result and times them. Both the
// in-process Engine and the sandbox runner record runs through it, so the
// metric names exist once. It is safe for concurrent use.
type RunMetrics struct {
	runs *prometheus.CounterVec
	durs prometheus.Histogram
}

// NewRunMetrics returns the run collectors, registered on reg when reg is
// not nil.
func NewRunMetrics(reg prometheus.Registerer) (*RunMetrics, error) {
	m := &RunMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_script_runs_total",
			Help: "Circle script runs by result (ok or the error kind).",
		}, []string{"result"}),
		durs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_script_run_duration_seconds",
			Help:    "Wall-clock duration of circle script runs.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.runs, m.durs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Observe records one run that started at start and ended with err: its
// *Error kind, "cancelled" for any other error, or "ok".
func (m *RunMetrics) Observe(start time.Time, err error) {
	m.durs.Observe(time.Since(start).Seconds())
	label := "ok"
	var se *Error
	switch {
	case errors.As(err, &se):
		label = string(se.Kind)
	case err != nil:
		label = string(KindCancelled)
	}
	m.runs.WithLabelValues(label).Inc()
}
