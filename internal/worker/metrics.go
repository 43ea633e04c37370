package worker

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome labels of switchboard_worker_requests_total.
const (
	outcomeOK         = "ok"
	outcomeError      = "error" // handler error reported by the worker
	outcomeNotFound   = "not_found"
	outcomeTimeout    = "timeout"
	outcomeCrashed    = "crashed"
	outcomeOverloaded = "overloaded"
	outcomeCanceled   = "canceled"
	outcomeShutdown   = "shutdown"
	outcomeInvalid    = "invalid"
)

// Restart reasons of switchboard_worker_restarts_total.
const (
	reasonExit      = "exit"
	reasonProtocol  = "protocol"
	reasonPing      = "ping"
	reasonSpawn     = "spawn_failed"
	reasonMaxJobs   = "max_jobs"
	reasonTTL       = "ttl"
	reasonIdleTTL   = "idle_ttl"
	reasonMaxMemory = "max_memory"
	reasonShutdown  = "shutdown"
	reasonTimeout   = "timeout"
	reasonRequested = "requested"
)

var (
	kindLabels    = []string{"task", "event", "rpc"}
	outcomeLabels = []string{outcomeOK, outcomeError, outcomeNotFound, outcomeTimeout, outcomeCrashed,
		outcomeOverloaded, outcomeCanceled, outcomeShutdown, outcomeInvalid}
	reasonLabels = []string{reasonExit, reasonProtocol, reasonPing, reasonSpawn, reasonMaxJobs,
		reasonTTL, reasonIdleTTL, reasonMaxMemory, reasonTimeout, reasonRequested}
)

type metrics struct {
	requests   map[[2]string]prometheus.Counter
	latency    map[string]prometheus.Observer
	queueDepth prometheus.Gauge
	inFlight   prometheus.Gauge
	processes  prometheus.Gauge
	restarts   map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_worker_requests_total",
		Help: "Worker requests by kind (task, event, rpc) and outcome.",
	}, []string{"kind", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchboard_worker_request_duration_seconds",
		Help:    "Worker request latency from submission to reply, by kind.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"kind"})
	m := &metrics{
		requests: make(map[[2]string]prometheus.Counter),
		latency:  make(map[string]prometheus.Observer),
		restarts: make(map[string]prometheus.Counter),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_worker_queue_depth",
			Help: "Requests waiting for a free worker.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_worker_in_flight",
			Help: "Requests dispatched to workers and not yet answered.",
		}),
		processes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_worker_processes",
			Help: "Live worker processes (including draining ones).",
		}),
	}
	restarts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_worker_restarts_total",
		Help: "Worker replacements by reason.",
	}, []string{"reason"})
	for _, k := range kindLabels {
		m.latency[k] = latency.WithLabelValues(k)
		for _, o := range outcomeLabels {
			m.requests[[2]string{k, o}] = requests.WithLabelValues(k, o)
		}
	}
	for _, r := range reasonLabels {
		m.restarts[r] = restarts.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{requests, latency, m.queueDepth, m.inFlight, m.processes, restarts} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("worker metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(kind, outcome string, d time.Duration) {
	if c := m.requests[[2]string{kind, outcome}]; c != nil {
		c.Inc()
	}
	m.latency[kind].Observe(d.Seconds())
}

func (m *metrics) restart(reason string) {
	if c := m.restarts[reason]; c != nil {
		c.Inc()
	}
}
