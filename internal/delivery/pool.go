package delivery

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// DefaultWriteStall is how long one write may block a writer before the
// writer is detached and replaced.
const DefaultWriteStall = 20 * time.Millisecond

// DefaultWriters is the writer count of a Config with Writers 0:
// GOMAXPROCS - 1, at least 1. Writers run without blocking while the
// sockets take their frames, so writers on every P keep all Ps busy, and
// the Go scheduler then polls the network only every 10 ms (sysmon): the
// API request, the Redis reply and the next publication waited behind a
// fan-out in progress (docs/benchmarks.md, "Cross-node fan-out after
// perf10"). One P left free picks up network readiness at once. Writers
// blocked on a peer that does not read are replaced after WriteStall, so
// few writers do not let slow peers hold up the others for longer.
func DefaultWriters() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// Config configures a Pool. Zero values mean defaults.
type Config struct {
	// Writers caps the goroutines writing at once; 0 means
	// DefaultWriters().
	Writers int
	// WriteStall is how long one blocked write may hold a writer before a
	// replacement starts; 0 means DefaultWriteStall.
	WriteStall time.Duration
	Clock      clock.Clock
	Registerer prometheus.Registerer
}

// Pool drains queues with a bounded set of writer goroutines. A queue
// with frames waits in a FIFO; a writer takes it, writes everything queued
// as one batch and, when more arrived meanwhile, puts it back at the tail.
//
// A writer whose write blocks longer than the stall limit (a peer that
// does not read) is detached: it finishes that one write on its own and
// exits, and a fresh writer takes its place.
type Pool struct {
	max     int
	stall   time.Duration
	clock   clock.Clock
	metrics *metrics

	mu      sync.Mutex
	ready   []*Queue
	head    int
	active  int // writers counted against max (not detached)
	workers map[*worker]struct{}
	closed  bool
	// check runs monitor while writers exist (armed); an idle pool has no
	// timer running.
	check clock.Timer
	armed bool

	wg sync.WaitGroup
}

type worker struct {
	writeStart atomic.Int64 // unix nanos of the write in progress, 0 when not writing
	detached   bool         // guarded by Pool.mu
}

// NewPool returns a running pool; Close stops it.
func NewPool(cfg Config) (*Pool, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = DefaultWriters()
	}
	if cfg.WriteStall <= 0 {
		cfg.WriteStall = DefaultWriteStall
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Pool{max: cfg.Writers, stall: cfg.WriteStall, clock: clock.OrReal(cfg.Clock), metrics: m,
		workers: map[*worker]struct{}{}}
	return p, nil
}

// checkInterval is how often stuck writers are looked for.
func (p *Pool) checkInterval() time.Duration { return max(p.stall/2, time.Millisecond) }

// submit queues q for writing. The caller marked q as writing.
func (p *Pool) submit(q *Queue) {
	p.mu.Lock()
	p.ready = append(p.ready, q)
	p.spawnLocked()
	p.mu.Unlock()
}

func (p *Pool) spawnLocked() {
	if p.closed || p.active >= p.max || len(p.ready) == p.head {
		return
	}
	w := &worker{}
	p.workers[w] = struct{}{}
	p.active++
	p.wg.Add(1)
	go p.work(w)
	if !p.armed {
		p.armed = true
		if p.check == nil {
			p.check = p.clock.AfterFunc(p.checkInterval(), p.monitor)
		} else {
			p.check.Reset(p.checkInterval())
		}
	}
}

func (p *Pool) next(w *worker) *Queue {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.detached || p.head == len(p.ready) {
		if !w.detached {
			p.active--
		}
		delete(p.workers, w)
		if p.head == len(p.ready) {
			p.ready, p.head = p.ready[:0], 0
		}
		return nil
	}
	q := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	if p.head > 1024 && p.head*2 > len(p.ready) {
		n := copy(p.ready, p.ready[p.head:])
		clear(p.ready[n:])
		p.ready, p.head = p.ready[:n], 0
	}
	return q
}

func (p *Pool) work(w *worker) {
	defer p.wg.Done()
	for q := p.next(w); q != nil; q = p.next(w) {
		if q.flush(w) {
			p.submit(q)
		}
	}
}

// monitor detaches writers stuck in a write, starts replacements and
// schedules the next check while any writer exists.
func (p *Pool) monitor() {
	limit := p.clock.Now().Add(-p.stall).UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for w := range p.workers {
		if start := w.writeStart.Load(); !w.detached && start != 0 && start <= limit {
			w.detached = true
			p.active--
			p.metrics.stalls.Inc()
		}
	}
	for p.active < p.max && p.head < len(p.ready) {
		before := p.active
		p.spawnLocked()
		if p.active == before {
			break
		}
	}
	if len(p.workers) == 0 {
		p.armed = false
		return
	}
	p.check.Reset(p.checkInterval())
}

// Close stops the pool and waits for its writers; writes still blocked
// end with their connections (closed by the hub's shutdown). Queues must
// not be used afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.check != nil {
		p.check.Stop()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
