package dispatch

import (
	"context"
	"log/slog"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/script"
)

type result struct {
	out string
	err error
}

type job struct {
	ctx  context.Context
	req  script.Request
	done chan result // buffered 1
}

// Local runs plays in-process. Each circle gets its own queue of QueueSize
// and Concurrency workers, created on the circle's first play. It is safe
// for concurrent use; Shutdown stops it.
type Local struct {
	cfg    Config
	runner Runner
	log    *slog.Logger
	m      *metrics

	hardCtx    context.Context // cancelled when Shutdown's deadline passes
	hardCancel context.CancelFunc

	mu     sync.RWMutex
	queues map[string]chan *job
	closed bool
	wg     sync.WaitGroup
}

// NewLocal returns an in-process dispatcher running scripts on runner.
func NewLocal(cfg Config, runner Runner) (*Local, error) {
	cfg.setDefaults()
	m, err := newMetrics(cfg.Metrics, "local")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Local{
		cfg: cfg, runner: runner, log: cfg.Logger.With("component", "dispatch"), m: m,
		hardCtx: ctx, hardCancel: cancel, queues: make(map[string]chan *job),
	}, nil
}

// Play queues the script on circle's queue and waits for its result or for
// ctx. It returns ErrQueueFull when the circle's queue is full, ErrClosed
// after Shutdown, ctx's error when ctx ends first, and the runner's error
// (a *script.Error for script failures) otherwise.
func (l *Local) Play(ctx context.Context, circle, caller, src string) (string, error) {
	out, err := l.play(ctx, circle, caller, src)
	l.m.result(err)
	return out, err
}

func (l *Local) play(ctx context.Context, circle, caller, src string) (string, error) {
	j := &job{ctx: ctx, req: script.Request{Circle: circle, Caller: caller, Script: src}, done: make(chan result, 1)}
	if err := l.enqueue(j); err != nil {
		return "", err
	}
	l.m.queued.Inc()
	defer l.m.queued.Dec()
	select {
	case r := <-j.done:
		return r.out, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (l *Local) enqueue(j *job) error {
	l.mu.RLock()
	q, ok := l.queues[j.req.Circle]
	if ok && !l.closed {
		defer l.mu.RUnlock()
		select {
		case q <- j:
			return nil
		default:
			return ErrQueueFull
		}
	}
	l.mu.RUnlock()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	q, ok = l.queues[j.req.Circle]
	if !ok {
		q = make(chan *job, l.cfg.QueueSize)
		l.queues[j.req.Circle] = q
		for i := 0; i < l.cfg.Concurrency; i++ {
			l.wg.Add(1)
			go l.worker(q)
		}
	}
	select {
	case q <- j:
		return nil
	default:
		return ErrQueueFull
	}
}

func (l *Local) worker(q chan *job) {
	defer l.wg.Done()
	for j := range q {
		if l.hardCtx.Err() != nil {
			j.done <- result{err: ErrClosed}
			continue
		}
		if err := j.ctx.Err(); err != nil {
			j.done <- result{err: err}
			continue
		}
		ctx, cancel := context.WithCancel(j.ctx)
		stop := context.AfterFunc(l.hardCtx, cancel)
		out, err := l.runner.Run(ctx, j.req)
		stop()
		cancel()
		j.done <- result{out: out, err: err}
	}
}

// Shutdown stops accepting plays, lets queued and running plays finish
// until ctx ends, then cancels what remains and waits for the workers. It
// is idempotent and returns ctx's error if the deadline cut plays short.
func (l *Local) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		for _, q := range l.queues {
			close(q)
		}
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		l.hardCancel()
		return nil
	case <-ctx.Done():
		l.hardCancel()
		<-done
		return ctx.Err()
	}
}
