package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/script"
)

// Defaults of Config.
const (
	DefaultConcurrency = 4
	DefaultQueueSize   = 256
)

// Runner runs one script; *script.Engine implements it. It must be safe
// for concurrent use and honour ctx.
type Runner interface {
	Run(ctx context.Context, req script.Request) (string, error)
}

var _ Runner = (*script.Engine)(nil)

// Config holds the settings shared by both dispatchers. Zero values mean
// the defaults.
type Config struct {
	// Concurrency is the number of scripts one circle runs at once (the
	// number of workers per circle); zero means DefaultConcurrency.
	Concurrency int
	// QueueSize bounds the plays waiting in one circle's in-process queue;
	// zero means DefaultQueueSize. Unused by Redis.
	QueueSize int
	// Logger receives logs; nil means discard.
	Logger *slog.Logger
	// Metrics, when not nil, receives the dispatcher's collectors.
	Metrics prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// clientError is an error whose text is fit for clients, with its domain
// code.
type clientError struct {
	msg  string
	code errs.Code
}

func (e *clientError) Error() string         { return "dispatch: " + e.msg }
func (e *clientError) ClientMessage() string { return e.msg }

// Unwrap returns the domain error.
func (e *clientError) Unwrap() error {
	return &errs.Error{Code: e.code, Message: e.msg, Temporary: true}
}

// Sentinel errors of Play. Each has a ClientMessage method giving text fit
// for clients.
var (
	ErrQueueFull = error(&clientError{"circle queue full, try again later", errs.Unavailable})
	ErrClosed    = error(&clientError{"server shutting down", errs.Unavailable})
	ErrNoReply   = error(&clientError{"timed out waiting for a worker", errs.Timeout})
)

// WorkerError is a failure reported by a worker (a script error, a
// timeout), with its message meant for the client.
type WorkerError struct{ Msg string }

// Error returns the worker's message.
func (e *WorkerError) Error() string { return "worker: " + e.Msg }

// ClientMessage returns the worker's message.
func (e *WorkerError) ClientMessage() string { return e.Msg }

// ClientMessage returns the client-facing text of err and true when err
// (or an error it wraps) has a ClientMessage method, for example a
// *script.Error, a *WorkerError or one of this package's sentinels.
func ClientMessage(err error) (string, bool) {
	var cm interface{ ClientMessage() string }
	if errors.As(err, &cm) {
		return cm.ClientMessage(), true
	}
	return "", false
}

type metrics struct {
	plays  *prometheus.CounterVec
	queued prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, mode string) (*metrics, error) {
	m := &metrics{
		plays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "switchboard_dispatch_plays_total",
			Help:        "Circle plays handled by the dispatcher, by result.",
			ConstLabels: prometheus.Labels{"mode": mode},
		}, []string{"result"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "switchboard_dispatch_inflight",
			Help:        "Circle plays queued or running (in-process) or awaiting a reply (redis).",
			ConstLabels: prometheus.Labels{"mode": mode},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.plays, m.queued} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dispatch: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) result(err error) {
	switch {
	case err == nil:
		m.plays.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrQueueFull):
		m.plays.WithLabelValues("queue_full").Inc()
	case errors.Is(err, ErrNoReply), errors.Is(err, context.DeadlineExceeded):
		m.plays.WithLabelValues("timeout").Inc()
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		m.plays.WithLabelValues("cancelled").Inc()
	default:
		m.plays.WithLabelValues("error").Inc()
	}
}
