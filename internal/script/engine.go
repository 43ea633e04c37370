package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Defaults of Config.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxSteps      = 100_000_000
	DefaultMaxScriptSize = 64 << 10
	DefaultMaxOutputSize = 1 << 20
	DefaultMaxKeySize    = 1 << 10
	DefaultMaxValueSize  = 1 << 20
	DefaultMaxKeys       = 10_000
	DefaultMaxPublishes  = 100
	DefaultMaxChannelLen = 255
)

// resultVar receives the value of a trailing expression statement.
const resultVar = "_switchboard_result_"

// Store is the persistent key-value store of the circles. Keys and values
// are opaque strings scoped by circle; implementations must be safe for
// concurrent use. Get reports ok=false for a missing key; Delete reports
// whether the key existed; Keys returns at most limit keys starting with
// prefix in ascending order.
type Store interface {
	Get(ctx context.Context, circle, key string) (value string, ok bool, err error)
	Set(ctx context.Context, circle, key, value string) error
	Delete(ctx context.Context, circle, key string) (existed bool, err error)
	Keys(ctx context.Context, circle, prefix string, limit int) ([]string, error)
}

// Publisher publishes data (a JSON document) into channel of circle's hub.
// It must be safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, circle, channel string, data []byte) error
}

// Config configures an Engine. Zero values mean the defaults.
type Config struct {
	// Timeout bounds one run's wall-clock time; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxSteps caps the Starlark execution steps of one run; zero means
	// DefaultMaxSteps.
	MaxSteps uint64
	// MaxScriptSize is the largest accepted script in bytes; zero means
	// DefaultMaxScriptSize.
	MaxScriptSize int
	// MaxOutputSize bounds the result (printed output plus the trailing
	// value) in bytes; zero means DefaultMaxOutputSize.
	MaxOutputSize int
	// MaxKeySize and MaxValueSize bound store keys and values in bytes;
	// zero means DefaultMaxKeySize / DefaultMaxValueSize.
	MaxKeySize, MaxValueSize int
	// MaxKeys caps the length of a store.keys() result; zero means
	// DefaultMaxKeys.
	MaxKeys int
	// MaxPublishes caps publish() calls per run; zero means
	// DefaultMaxPublishes.
	MaxPublishes int
	// Store backs store.*; nil makes store calls fail with a clear error.
	Store Store
	// Publisher backs publish(); nil makes publish fail with a clear error.
	Publisher Publisher
	// Logger receives debug logs; nil means discard.
	Logger *slog.Logger
	// Metrics, when not nil, receives the engine's collectors.
	Metrics prometheus.Registerer
}

// Request is one script run.
type Request struct {
	Circle string // canonical circle key, bound to CONTEXT_ID
	Caller string // authenticated public key or "", bound to CALLER_ID
	Script string
}

// ErrorKind classifies script failures.
type ErrorKind string

// Error kinds; their string values are the `result` label of the metrics.
const (
	KindSyntax    ErrorKind = "syntax"
	KindRuntime   ErrorKind = "runtime"
	KindTimeout   ErrorKind = "timeout"
	KindSteps     ErrorKind = "steps"
	KindOutput    ErrorKind = "output"
	KindTooLarge  ErrorKind = "too_large"
	KindCancelled ErrorKind = "cancelled"
	// Limits enforced around the engine (the sandbox, the store).
	KindMemory  ErrorKind = "memory"
	KindCPU     ErrorKind = "cpu"
	KindQuota   ErrorKind = "quota"
	KindSandbox ErrorKind = "sandbox"
)

// Error is a script failure whose message is meant for the script's
// author: it carries no server internals.
type Error struct {
	Kind ErrorKind
	Msg  string
}

// Error returns "<kind>: <message>".
func (e *Error) Error() string { return string(e.Kind) + ": " + e.Msg }

// ClientMessage returns the text to show to the client.
func (e *Error) ClientMessage() string { return e.Error() }

// Engine runs scripts. It is safe for concurrent use; each Run uses its own
// Starlark thread. It owns no goroutine between runs.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	opts  *syntax.FileOptions
	stats *RunMetrics
	store Store
}

// New returns an Engine configured by cfg. It fails when the metrics
// cannot be registered.
func New(cfg Config) (*Engine, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxSteps == 0 {
		cfg.MaxSteps = DefaultMaxSteps
	}
	if cfg.MaxScriptSize <= 0 {
		cfg.MaxScriptSize = DefaultMaxScriptSize
	}
	if cfg.MaxOutputSize <= 0 {
		cfg.MaxOutputSize = DefaultMaxOutputSize
	}
	if cfg.MaxKeySize <= 0 {
		cfg.MaxKeySize = DefaultMaxKeySize
	}
	if cfg.MaxValueSize <= 0 {
		cfg.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.MaxPublishes <= 0 {
		cfg.MaxPublishes = DefaultMaxPublishes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "script"),
		opts:  &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true},
		store: cfg.Store,
	}
	stats, err := NewRunMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	e.stats = stats
	return e, nil
}

// Config returns the configuration with the defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Timeout returns the configured per-run timeout.
func (e *Engine) Timeout() time.Duration { return e.cfg.Timeout }

// Run executes req.Script and returns its result string. The run stops at
// the first of: completion, ctx done, the timeout, the step cap, the output
// cap. Script failures are returned as *Error; other errors (a store
// failure surfaces as a runtime *Error) do not occur. When ctx is
// cancelled with a *Error as its cause (context.WithCancelCause), that
// error is the result: a supervisor uses it to name the limit it enforced.
// A *Error returned by the Store (a quota) fails the run with that error.
func (e *Engine) Run(ctx context.Context, req Request) (string, error) {
	start := time.Now()
	out, err := e.run(ctx, req)
	e.stats.Observe(start, err)
	return out, err
}

type runState struct {
	mu        sync.Mutex
	out       limitWriter
	overflow  bool
	publishes int
	failure   *Error // a limit reported by the Store
}

func (st *runState) fail(e *Error) {
	st.mu.Lock()
	if st.failure == nil {
		st.failure = e
	}
	st.mu.Unlock()
}

func (e *Engine) run(ctx context.Context, req Request) (string, error) {
	if len(req.Script) > e.cfg.MaxScriptSize {
		return "", &Error{Kind: KindTooLarge, Msg: fmt.Sprintf("script is %d bytes, limit %d", len(req.Script), e.cfg.MaxScriptSize)}
	}
	f, err := e.opts.Parse("play.star", req.Script, 0)
	if err != nil {
		return "", &Error{Kind: KindSyntax, Msg: err.Error()}
	}
	hasResult := false
	if n := len(f.Stmts); n > 0 {
		if es, ok := f.Stmts[n-1].(*syntax.ExprStmt); ok {
			start, _ := es.X.Span()
			f.Stmts[n-1] = &syntax.AssignStmt{
				OpPos: start, Op: syntax.EQ,
				LHS: &syntax.Ident{NamePos: start, Name: resultVar},
				RHS: es.X,
			}
			hasResult = true
		}
	}

	st := &runState{}
	thread := &starlark.Thread{Name: "play"}
	thread.SetMaxExecutionSteps(e.cfg.MaxSteps)
	st.out.max = e.cfg.MaxOutputSize
	thread.Print = func(th *starlark.Thread, msg string) { // print is predeclared; this is a fallback
		st.mu.Lock()
		defer st.mu.Unlock()
		if !st.out.writeString(msg) || !st.out.writeString("\n") {
			st.overflow = true
			th.Cancel("output limit exceeded")
		}
	}

	runCtx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	predeclared := e.predeclared(runCtx, req, st)
	prog, err := starlark.FileProgram(f, predeclared.Has)
	if err != nil {
		return "", &Error{Kind: KindSyntax, Msg: err.Error()}
	}

	watchDone := make(chan struct{})
	watcherExited := make(chan struct{})
	go func() { // owned by run: it waits for watcherExited below
		defer close(watcherExited)
		select {
		case <-runCtx.Done():
			thread.Cancel(runCtx.Err().Error())
		case <-watchDone:
		}
	}()
	globals, err := prog.Init(thread, predeclared)
	close(watchDone)
	<-watcherExited

	st.mu.Lock()
	overflow := st.overflow
	failure := st.failure
	st.mu.Unlock()

	var cause *Error
	if ctx.Err() != nil {
		errors.As(context.Cause(ctx), &cause)
	}
	if err != nil {
		switch {
		case cause != nil:
			return "", cause
		case failure != nil:
			return "", failure
		case overflow:
			return "", e.outputErr()
		case ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded):
			return "", &Error{Kind: KindTimeout, Msg: fmt.Sprintf("script exceeded %s", e.cfg.Timeout)}
		case ctx.Err() != nil:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", &Error{Kind: KindTimeout, Msg: "deadline exceeded"}
			}
			return "", &Error{Kind: KindCancelled, Msg: "cancelled"}
		case thread.ExecutionSteps() >= e.cfg.MaxSteps:
			return "", &Error{Kind: KindSteps, Msg: fmt.Sprintf("script exceeded %d execution steps", e.cfg.MaxSteps)}
		}
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return "", &Error{Kind: KindRuntime, Msg: ee.Backtrace()}
		}
		return "", &Error{Kind: KindRuntime, Msg: err.Error()}
	}
	if cause != nil {
		return "", cause
	}
	if failure != nil {
		return "", failure
	}
	if hasResult {
		if v, ok := globals[resultVar]; ok && v != starlark.None {
			st.mu.Lock()
			ok := writeResult(&st.out, v)
			st.mu.Unlock()
			if !ok {
				return "", e.outputErr()
			}
		}
	}
	return st.out.b.String(), nil
}

func (e *Engine) outputErr() *Error {
	return &Error{Kind: KindOutput, Msg: fmt.Sprintf("output exceeds %d bytes", e.cfg.MaxOutputSize)}
}

func (e *Engine) predeclared(ctx context.Context, req Request, st *runState) starlark.StringDict {
	return starlark.StringDict{
		"CONTEXT_ID": starlark.String(req.Circle),
		"CALLER_ID":  starlark.String(req.Caller),
		"json":       json.Module,
		"store": &starlarkstruct.Module{Name: "store", Members: starlark.StringDict{
			"get":    starlark.NewBuiltin("store.get", e.storeGet(ctx, req.Circle, st)),
			"set":    starlark.NewBuiltin("store.set", e.storeSet(ctx, req.Circle, st)),
			"delete": starlark.NewBuiltin("store.delete", e.storeDelete(ctx, req.Circle, st)),
			"keys":   starlark.NewBuiltin("store.keys", e.storeKeys(ctx, req.Circle, st)),
		}},
		"publish": starlark.NewBuiltin("publish", e.publish(ctx, req.Circle, st)),
		"print":   starlark.NewBuiltin("print", printFn(st)),
	}
}

type builtinFn = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var errNoStore = errors.New("no key-value store configured")

func (e *Engine) checkKey(key string) error {
	if key == "" {
		return errors.New("key must not be empty")
	}
	if len(key) > e.cfg.MaxKeySize {
		return fmt.Errorf("key is %d bytes, limit %d", len(key), e.cfg.MaxKeySize)
	}
	return nil
}

// storeErr hides driver details from scripts and logs them; a *Error (a
// quota) is passed on and fails the run.
func (e *Engine) storeErr(st *runState, op string, err error) error {
	var se *Error
	if errors.As(err, &se) {
		st.fail(se)
		return fmt.Errorf("%s: %s", op, se.Msg)
	}
	e.log.Error("store operation failed", "op", op, "err", err)
	return fmt.Errorf("%s: store unavailable", op)
}

func (e *Engine) storeGet(ctx context.Context, circle string, st *runState) builtinFn {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var key string
		var def starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "default?", &def); err != nil {
			return nil, err
		}
		if e.store == nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), errNoStore)
		}
		if err := e.checkKey(key); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		v, ok, err := e.store.Get(ctx, circle, key)
		if err != nil {
			return nil, e.storeErr(st, b.Name(), err)
		}
		if !ok {
			return def, nil
		}
		return starlark.String(v), nil
	}
}

func (e *Engine) storeSet(ctx context.Context, circle string, st *runState) builtinFn {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var key string
		var val starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "value", &val); err != nil {
			return nil, err
		}
		if e.store == nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), errNoStore)
		}
		if err := e.checkKey(key); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		s, ok := starlark.AsString(val)
		if !ok {
			return nil, fmt.Errorf("%s: value must be a string or bytes, got %s (use json.encode)", b.Name(), val.Type())
		}
		if len(s) > e.cfg.MaxValueSize {
			return nil, fmt.Errorf("%s: value is %d bytes, limit %d", b.Name(), len(s), e.cfg.MaxValueSize)
		}
		if err := e.store.Set(ctx, circle, key, s); err != nil {
			return nil, e.storeErr(st, b.Name(), err)
		}
		return starlark.None, nil
	}
}

func (e *Engine) storeDelete(ctx context.Context, circle string, st *runState) builtinFn {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var key string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key); err != nil {
			return nil, err
		}
		if e.store == nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), errNoStore)
		}
		if err := e.checkKey(key); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		existed, err := e.store.Delete(ctx, circle, key)
		if err != nil {
			return nil, e.storeErr(st, b.Name(), err)
		}
		return starlark.Bool(existed), nil
	}
}

func (e *Engine) storeKeys(ctx context.Context, circle string, st *runState) builtinFn {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		prefix := ""
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "prefix?", &prefix); err != nil {
			return nil, err
		}
		if e.store == nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), errNoStore)
		}
		if len(prefix) > e.cfg.MaxKeySize {
			return nil, fmt.Errorf("%s: prefix is %d bytes, limit %d", b.Name(), len(prefix), e.cfg.MaxKeySize)
		}
		keys, err := e.store.Keys(ctx, circle, prefix, e.cfg.MaxKeys)
		if err != nil {
			return nil, e.storeErr(st, b.Name(), err)
		}
		l := make([]starlark.Value, len(keys))
		for i, k := range keys {
			l[i] = starlark.String(k)
		}
		return starlark.NewList(l), nil
	}
}

var jsonEncode = json.Module.Members["encode"]

func (e *Engine) publish(ctx context.Context, circle string, st *runState) builtinFn {
	return func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var channel string
		var data starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "channel", &channel, "data", &data); err != nil {
			return nil, err
		}
		if e.cfg.Publisher == nil {
			return nil, fmt.Errorf("%s: publishing is not available on this server", b.Name())
		}
		if channel == "" || len(channel) > DefaultMaxChannelLen {
			return nil, fmt.Errorf("%s: channel must be 1 to %d bytes", b.Name(), DefaultMaxChannelLen)
		}
		st.mu.Lock()
		st.publishes++
		n := st.publishes
		st.mu.Unlock()
		if n > e.cfg.MaxPublishes {
			return nil, fmt.Errorf("%s: more than %d publishes in one run", b.Name(), e.cfg.MaxPublishes)
		}
		enc, err := starlark.Call(th, jsonEncode, starlark.Tuple{data}, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: data is not JSON-encodable: %w", b.Name(), err)
		}
		s, _ := starlark.AsString(enc)
		if len(s) > e.cfg.MaxValueSize {
			return nil, fmt.Errorf("%s: data is %d bytes, limit %d", b.Name(), len(s), e.cfg.MaxValueSize)
		}
		if err := e.cfg.Publisher.Publish(ctx, circle, channel, []byte(s)); err != nil {
			e.log.Warn("script publish failed", "err", err)
			return nil, fmt.Errorf("%s: %v", b.Name(), err)
		}
		return starlark.None, nil
	}
}

// Write is one staged store change; a nil Value deletes Key.
type Write struct {
	Key   string
	Value *string
}

// Defaults of a circle's store quota.
const (
	DefaultQuotaKeys  = 10_000
	DefaultQuotaBytes = 16 << 20
)

// Quota bounds the data one circle keeps in the store: MaxKeys keys and
// MaxBytes bytes (the sum of key and value lengths). Zero means no bound.
type Quota struct {
	MaxKeys  int
	MaxBytes int64
}

// Check returns a KindQuota *Error naming the first bound that keys/bytes
// exceed, when that measure grew from before; shrinking is always allowed.
func (q Quota) Check(beforeKeys, keys int, beforeBytes, bytes int64) error {
	if q.MaxKeys > 0 && keys > q.MaxKeys && keys > beforeKeys {
		return &Error{Kind: KindQuota, Msg: fmt.Sprintf("store quota exceeded: the circle would hold %d keys, limit %d (nothing was written)", keys, q.MaxKeys)}
	}
	if q.MaxBytes > 0 && bytes > q.MaxBytes && bytes > beforeBytes {
		return &Error{Kind: KindQuota, Msg: fmt.Sprintf("store quota exceeded: the circle would hold %d bytes, limit %d (nothing was written)", bytes, q.MaxBytes)}
	}
	return nil
}
