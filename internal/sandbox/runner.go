package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Defaults of Config.
const (
	DefaultWorkers   = 2
	DefaultMaxMemory = 256 << 20
	DefaultNice      = 19
	// DefaultQueueSize bounds plays waiting for a free sandbox.
	DefaultQueueSize = 1024
	// wallGrace is how long past the engine's own timeout the parent
	// waits before it kills the sandbox.
	wallGrace = 2 * time.Second
	// exitCPU is the child's exit status when it stops itself on a
	// repeated SIGXCPU.
	exitCPU = 3
	// EnvConfig carries the child's settings (JSON) to ChildMain.
	EnvConfig = "SWITCHBOARD_SANDBOX"
)

// Store is the circle store as the parent needs it: the script.Store
// reads, plus usage and atomic batches for the quota (*sqlite.Store).
type Store interface {
	script.Store
	Usage(ctx context.Context, circle string) (keys int, bytes int64, err error)
	Apply(ctx context.Context, circle string, writes []script.Write, q script.Quota) error
}

// Config configures a Runner. Zero values mean the defaults.
type Config struct {
	// Command starts one sandbox process; nil means this executable with
	// the argument "sandbox-worker". The process gets an environment of
	// only EnvConfig (no secret of the server's leaks into it).
	Command []string
	// Workers is the number of sandbox processes, i.e. plays running at
	// once across all circles (default DefaultWorkers).
	Workers int
	// MaxMemory is the per-play memory cap in bytes (default 256 MiB).
	MaxMemory int64
	// MaxCPU is the per-play CPU time cap (default: Engine.Timeout).
	MaxCPU time.Duration
	// Nice is the sandbox scheduling priority (default 19, the lowest;
	// negative: 0).
	Nice int
	// QueueSize bounds plays waiting for a sandbox (default 1024), and
	// QueueTimeout their wait (default Engine.Timeout).
	QueueSize    int
	QueueTimeout time.Duration
	// Engine holds the script limits applied in the child (Timeout is the
	// per-play wall time). Its Store, Publisher, Logger and Metrics are
	// ignored: the child reaches Store and Publisher below.
	Engine script.Config
	// Quota bounds each circle's store; both fields must be positive.
	Quota script.Quota
	// Store keeps the circles' data; nil makes store calls fail.
	Store Store
	// Publisher publishes into the circles' hubs; nil makes publish fail.
	Publisher script.Publisher
	// Logger receives logs (nil: discard); Metrics the run counters.
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// childConfig is what the child needs, passed in EnvConfig.
type childConfig struct {
	MaxMemory     int64         `json:"max_memory"`
	MaxCPU        time.Duration `json:"max_cpu"`
	Nice          int           `json:"nice"`
	Timeout       time.Duration `json:"timeout"`
	MaxSteps      uint64        `json:"max_steps"`
	MaxScriptSize int           `json:"max_script_size"`
	MaxOutputSize int           `json:"max_output_size"`
	MaxKeySize    int           `json:"max_key_size"`
	MaxValueSize  int           `json:"max_value_size"`
	MaxKeys       int           `json:"max_keys"`
	MaxPublishes  int           `json:"max_publishes"`
}

// Runner runs plays in the sandbox pool; it implements dispatch.Runner.
// It is safe for concurrent use; Shutdown stops the pool.
type Runner struct {
	cfg   Config
	eng   script.Config // with defaults applied
	log   *slog.Logger
	pool  *worker.Pool
	stats *script.RunMetrics
}

// New starts the sandbox pool. It fails on an invalid Config, when the
// executable cannot be found or the metrics cannot be registered.
func New(cfg Config) (*Runner, error) {
	base := cfg.Engine
	base.Store, base.Publisher, base.Metrics, base.Logger = nil, nil, nil, nil
	eng, err := script.New(base) // fills in the engine defaults
	if err != nil {
		return nil, err
	}
	ec := eng.Config()
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.MaxCPU == 0 {
		cfg.MaxCPU = ec.Timeout
	}
	if cfg.Nice == 0 {
		cfg.Nice = DefaultNice
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = ec.Timeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Workers < 0:
		return nil, fmt.Errorf("sandbox: workers must be positive, got %d", cfg.Workers)
	case cfg.MaxMemory < 16<<20:
		return nil, fmt.Errorf("sandbox: max memory must be at least 16 MiB, got %d bytes", cfg.MaxMemory)
	case cfg.MaxCPU < time.Second:
		return nil, fmt.Errorf("sandbox: max cpu must be at least 1s, got %s", cfg.MaxCPU)
	case cfg.Quota.MaxKeys <= 0 || cfg.Quota.MaxBytes <= 0:
		return nil, fmt.Errorf("sandbox: store quota must be positive, got %d keys, %d bytes", cfg.Quota.MaxKeys, cfg.Quota.MaxBytes)
	}
	if cfg.Command == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sandbox: find executable: %w", err)
		}
		cfg.Command = []string{exe, "sandbox-worker"}
	}
	cc, err := json.Marshal(childConfig{
		MaxMemory: cfg.MaxMemory, MaxCPU: cfg.MaxCPU, Nice: max(cfg.Nice, 0),
		Timeout: ec.Timeout, MaxSteps: ec.MaxSteps, MaxScriptSize: ec.MaxScriptSize,
		MaxOutputSize: ec.MaxOutputSize, MaxKeySize: ec.MaxKeySize, MaxValueSize: ec.MaxValueSize,
		MaxKeys: ec.MaxKeys, MaxPublishes: ec.MaxPublishes,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r := &Runner{
		cfg: cfg, eng: ec, log: cfg.Logger.With("component", "sandbox"),
	}
	if r.stats, err = script.NewRunMetrics(cfg.Metrics); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r.pool, err = worker.New(worker.Config{
		Command: cfg.Command, Env: []string{EnvConfig + "=" + string(cc)},
		Workers: cfg.Workers, MaxInFlight: 1,
		Timeout: ec.Timeout + wallGrace, KillOnTimeout: true,
		QueueSize: cfg.QueueSize, QueueTimeout: cfg.QueueTimeout,
		// A sandbox that kept memory after a big play is replaced.
		MaxMemory:      cfg.MaxMemory + childOverhead,
		MaxMessageSize: 6*max(ec.MaxOutputSize, ec.MaxValueSize, ec.MaxScriptSize) + 64<<10,
		StopGrace:      2 * time.Second,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return r, nil
}

// childOverhead is the memory a sandbox needs besides the play's: the Go
// runtime, the engine, a line buffer.
const childOverhead = 64 << 20

// Shutdown stops the sandboxes: running plays may finish until ctx ends.
func (r *Runner) Shutdown(ctx context.Context) error { return r.pool.Shutdown(ctx) }

// MaxMemory returns the per-play memory cap in bytes.
func (r *Runner) MaxMemory() int64 { return r.cfg.MaxMemory }

type playInput struct {
	Circle string `json:"circle"`
	Caller string `json:"caller"`
	Script string `json:"script"`
}

type playOutput struct {
	Output string `json:"output"`
}

// Run runs req in a sandbox. Script failures, including every limit, are
// *script.Error values naming the limit; the play's store writes are
// applied only when it succeeds and fits the quota. ctx's error is
// returned when ctx ends first.
func (r *Runner) Run(ctx context.Context, req script.Request) (string, error) {
	start := time.Now()
	out, err := r.run(ctx, req)
	r.stats.Observe(start, err)
	return out, err
}

func (r *Runner) run(ctx context.Context, req script.Request) (string, error) {
	if len(req.Script) > r.eng.MaxScriptSize {
		return "", &script.Error{Kind: script.KindTooLarge, Msg: fmt.Sprintf("script is %d bytes, limit %d", len(req.Script), r.eng.MaxScriptSize)}
	}
	in, err := json.Marshal(playInput{Circle: req.Circle, Caller: req.Caller, Script: req.Script})
	if err != nil {
		return "", &script.Error{Kind: script.KindRuntime, Msg: "script is not valid text"}
	}
	tx := newTxn(r, req.Circle)
	res, err := r.pool.Do(ctx, worker.Request{Kind: worker.KindTask, ID: "play", Input: in, Calls: tx})
	writes := tx.finish()
	if err != nil {
		return "", r.mapErr(ctx, err)
	}
	var po playOutput
	if err := json.Unmarshal(res, &po); err != nil {
		r.log.Error("sandbox sent a malformed result", "err", err)
		return "", &script.Error{Kind: script.KindSandbox, Msg: "sandbox failed"}
	}
	if len(writes) > 0 {
		if err := r.cfg.Store.Apply(ctx, req.Circle, writes, r.cfg.Quota); err != nil {
			var se *script.Error
			if errors.As(err, &se) {
				return "", se
			}
			r.log.Error("store apply failed", "circle", req.Circle, "err", err)
			return "", &script.Error{Kind: script.KindRuntime, Msg: "store unavailable; nothing was written"}
		}
	}
	return po.Output, nil
}

// mapErr turns a pool error into the error the client sees.
func (r *Runner) mapErr(ctx context.Context, err error) error {
	var we *worker.Error
	if !errors.As(err, &we) {
		return err
	}
	if we.Remote {
		return &script.Error{Kind: script.ErrorKind(we.Code), Msg: we.Message}
	}
	switch we.Code {
	case worker.CodeTimeout:
		return &script.Error{Kind: script.KindTimeout, Msg: fmt.Sprintf("script exceeded %s; the sandbox was stopped", r.eng.Timeout)}
	case worker.CodeCanceled:
		if ctx.Err() != nil {
			return ctx.Err()
		}
	case worker.CodeOverloaded:
		return &script.Error{Kind: script.KindSandbox, Msg: "all sandboxes are busy, try again later"}
	case worker.CodeShuttingDown:
		return &script.Error{Kind: script.KindCancelled, Msg: "server shutting down"}
	case worker.CodeWorkerCrashed:
		return r.crashErr(err)
	}
	r.log.Error("sandbox failed", "err", err)
	return &script.Error{Kind: script.KindSandbox, Msg: "sandbox failed"}
}

// crashErr names the OS limit that ended a sandbox during a play.
func (r *Runner) crashErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch exitLimit(ee) {
		case script.KindMemory:
			return &script.Error{Kind: script.KindMemory, Msg: fmt.Sprintf("memory limit exceeded (%s): the sandbox ran out of memory", mib(r.cfg.MaxMemory))}
		case script.KindCPU:
			return &script.Error{Kind: script.KindCPU, Msg: fmt.Sprintf("cpu limit exceeded (%s): the sandbox was stopped", r.cfg.MaxCPU)}
		}
	}
	r.log.Warn("sandbox died during a play", "err", err)
	return &script.Error{Kind: script.KindSandbox, Msg: "sandbox process failed during the play"}
}

// mib formats n bytes as "N MiB" (or bytes when not a whole MiB).
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
