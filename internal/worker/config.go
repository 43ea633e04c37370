package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultWorkers        = 1
	DefaultTimeout        = 30 * time.Second
	DefaultMaxInFlight    = 64
	DefaultQueueSize      = 1024
	DefaultQueueTimeout   = 5 * time.Second
	DefaultPingInterval   = 10 * time.Second
	DefaultMaxMessageSize = 16 << 20
	DefaultStopGrace      = 10 * time.Second
	// MinBackoff and MaxBackoff bound the delay between restarts of a worker
	// that keeps failing; the first restart after a crash is immediate.
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 10 * time.Second
	// backoffReset is how long a worker must live for its crash to count as
	// a first crash again.
	backoffReset = 10 * time.Second
)

// Config configures a Pool. Zero values mean the documented default.
type Config struct {
	// Command is the worker argv, e.g. {"node", "worker.js"}. Required.
	Command []string
	// Env is the worker environment; nil inherits the server's.
	Env []string
	// Dir is the worker working directory; "" is the server's.
	Dir string
	// Workers is the number of worker processes (default 1).
	Workers int
	// Timeout bounds one request from dispatch to reply (default 30 s).
	// On expiry the request fails with CodeTimeout and the worker is sent
	// {"type":"cancel","id":N}.
	Timeout time.Duration
	// MaxInFlight is the number of requests pipelined to one worker at
	// once (default 64).
	MaxInFlight int
	// QueueSize bounds requests waiting for a free worker (default 1024);
	// negative means no queue (fail with CodeOverloaded at once).
	QueueSize int
	// QueueTimeout bounds the wait in the queue (default 5 s), after which
	// the request fails with CodeOverloaded.
	QueueTimeout time.Duration
	// MaxJobs recycles a worker after that many requests (0: never).
	MaxJobs int
	// TTL recycles a worker after that lifetime (0: never).
	TTL time.Duration
	// IdleTTL recycles a worker idle for that long (0: never).
	IdleTTL time.Duration
	// MaxMemory recycles a worker whose resident set size (VmRSS of the
	// direct child, from /proc/PID/status) exceeds it, in bytes (0: never).
	MaxMemory int64
	// PingInterval is how often each worker is pinged; a worker that has
	// not answered the previous ping by the next one is killed and
	// replaced (default 10 s; negative disables pings).
	PingInterval time.Duration
	// KillOnTimeout kills (and so replaces) a worker whose request ran
	// past Timeout instead of only sending it a cancel line; for workers
	// running untrusted code that may not stop on request.
	KillOnTimeout bool
	// MaxMessageSize bounds one line from a worker in bytes (default
	// 16 MiB); a longer line is a protocol violation.
	MaxMessageSize int
	// StopGrace bounds how long a recycled worker may take to exit after
	// the shutdown message before it is killed (default 10 s).
	StopGrace time.Duration
	// AllowTasks and AllowEvents are the exposed ids. An entry ending in
	// "*" matches by prefix. When both are empty, the ids the workers
	// announce in their "ready" line are exposed; when workers announce
	// nothing either, every id is passed to the workers.
	AllowTasks  []string
	AllowEvents []string
	// Logger receives pool events (nil: discard). Worker stderr lines are
	// logged at info level with the worker pid.
	Logger *slog.Logger
	// Registerer receives the pool metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Clock drives supervision (pings, ttl, idle ttl, memory checks);
	// nil is the real clock. Request timeouts and backoff use real time.
	Clock clock.Clock
}

func (c *Config) setDefaults() {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueSize < 0 {
		c.QueueSize = 0
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Command) == 0 || c.Command[0] == "" {
		errs = append(errs, errors.New("command is required"))
	}
	if c.Workers < 0 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("workers %d out of range 1..1024", c.Workers))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, errors.New("max_in_flight must not be negative"))
	}
	if c.QueueTimeout < 0 {
		errs = append(errs, errors.New("queue_timeout must not be negative"))
	}
	if c.MaxJobs < 0 {
		errs = append(errs, errors.New("max_jobs must not be negative"))
	}
	if c.TTL < 0 || c.IdleTTL < 0 {
		errs = append(errs, errors.New("ttl and idle_ttl must not be negative"))
	}
	if c.MaxMemory < 0 {
		errs = append(errs, errors.New("max_memory must not be negative"))
	}
	if c.MaxMessageSize < 1024 {
		errs = append(errs, errors.New("max message size must be at least 1024 bytes"))
	}
	if c.StopGrace < 0 {
		errs = append(errs, errors.New("stop grace must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	return nil
}
