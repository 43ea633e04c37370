package scheduler

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the switchboard_scheduler_* collectors.
type metrics struct {
	assigned        prometheus.Counter
	completed       prometheus.Counter
	failed          prometheus.Counter
	expired         prometheus.Counter
	retried         prometheus.Counter
	publishFailures prometheus.Counter
	latency         prometheus.Histogram
}

// jobsCollector reports jobs by status, read from the store at scrape
// time (so it is right across processes sharing a database).
type jobsCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var counts map[JobStatus]int
	err := c.s.store.InTx(ctx, func(tx Tx) (err error) {
		counts, err = tx.CountJobs(ctx)
		return err
	})
	if err != nil {
		c.s.log.Warn("count jobs for metrics failed", "error", err)
		return
	}
	for _, st := range []JobStatus{JobPending, JobRunning, JobCompleted, JobFailed, JobCancelled} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// drainingCollector reports the online nodes that are draining, counted
// in the store at scrape time; nothing when the count fails (logged).
type drainingCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c drainingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c drainingCollector) Collect(ch chan<- prometheus.Metric) {
	n := 0
	if ids := c.s.onlineIDs(); len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := c.s.store.InTx(ctx, func(tx Tx) (err error) {
			n, err = tx.CountDraining(ctx, ids)
			return err
		})
		if err != nil {
			c.s.log.Warn("count draining nodes for metrics failed", "error", err)
			return
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "scheduler", Name: name, Help: help})
	}
	m := &metrics{
		assigned:        counter("chunks_assigned_total", "Chunks leased to nodes and published."),
		completed:       counter("chunks_completed_total", "Chunks completed by nodes."),
		failed:          counter("chunks_failed_total", "Chunks that failed for good (attempt cap or non-retryable)."),
		expired:         counter("chunks_expired_total", "Leases that expired."),
		retried:         counter("chunks_retried_total", "Chunks put back to pending after a failure or expiry."),
		publishFailures: counter("publish_failures_total", "Scheduler publications that failed."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "scheduler", Name: "assignment_latency_seconds",
			Help:    "Time from a chunk becoming assignable (job created, backoff over) to its publication to a node.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	if reg == nil {
		return m, nil
	}
	online := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "scheduler", Name: "nodes_online", Help: "Nodes present in nodes:online.",
	}, func() float64 { return float64(len(s.onlineIDs())) })
	draining := drainingCollector{s: s, desc: prometheus.NewDesc("switchboard_scheduler_nodes_draining",
		"Nodes present in nodes:online that are shutting down (offered no chunks).", nil, nil)}
	jobs := jobsCollector{s: s, desc: prometheus.NewDesc("switchboard_scheduler_jobs", "Jobs by status.", []string{"status"}, nil)}
	for _, c := range []prometheus.Collector{m.assigned, m.completed, m.failed, m.expired, m.retried, m.publishFailures, m.latency, online, draining, jobs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
