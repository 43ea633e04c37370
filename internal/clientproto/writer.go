package clientproto

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Writer pool defaults.
const (
	// DefaultWriteStall is how long one write may block a pool worker
	// before the worker is detached and replaced.
	DefaultWriteStall = 20 * time.Millisecond
	writeStallCheck   = 10 * time.Millisecond
)

// writerPool drains sessions' outgoing queues with a bounded set of
// goroutines. A session with queued messages waits in a FIFO; a worker
// takes it, writes everything queued as one transport message and, when
// more arrived meanwhile, puts it back at the tail, so a busy connection
// coalesces while others are served. Idle connections own no goroutine.
//
// A worker whose write blocks longer than the stall limit (a peer that
// does not read) is detached: it finishes that one write on its own and
// exits, and a fresh worker takes its place, so one stuck socket never
// delays the others for longer than the limit.
type writerPool struct {
	max   int
	stall time.Duration

	mu      sync.Mutex
	ready   []*Session
	head    int
	active  int // workers counted against max (not detached)
	workers map[*poolWorker]struct{}
	closed  bool

	wg   sync.WaitGroup
	stop chan struct{}
}

type poolWorker struct {
	writeStart atomic.Int64 // unix nanos of the write in progress, 0 when not writing
	detached   bool         // guarded by writerPool.mu
}

func newWriterPool(max int, stall time.Duration) *writerPool {
	if max <= 0 {
		max = 4 * runtime.GOMAXPROCS(0)
	}
	if stall <= 0 {
		stall = DefaultWriteStall
	}
	p := &writerPool{max: max, stall: stall, workers: map[*poolWorker]struct{}{}, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.monitor()
	return p
}

// submit queues s for writing. The caller marked s as writing.
func (p *writerPool) submit(s *Session) {
	p.mu.Lock()
	p.ready = append(p.ready, s)
	p.spawnLocked()
	p.mu.Unlock()
}

func (p *writerPool) spawnLocked() {
	if p.closed || p.active >= p.max || len(p.ready) == p.head {
		return
	}
	w := &poolWorker{}
	p.workers[w] = struct{}{}
	p.active++
	p.wg.Add(1)
	go p.work(w)
}

func (p *writerPool) next(w *poolWorker) *Session {
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
	s := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	if p.head > 1024 && p.head*2 > len(p.ready) {
		n := copy(p.ready, p.ready[p.head:])
		clear(p.ready[n:])
		p.ready, p.head = p.ready[:n], 0
	}
	return s
}

func (p *writerPool) work(w *poolWorker) {
	defer p.wg.Done()
	for s := p.next(w); s != nil; s = p.next(w) {
		if s.flushOnce(w) {
			p.submit(s)
		}
	}
}

// monitor detaches workers stuck in a write and starts replacements.
func (p *writerPool) monitor() {
	defer p.wg.Done()
	t := time.NewTicker(writeStallCheck)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			limit := now.Add(-p.stall).UnixNano()
			p.mu.Lock()
			for w := range p.workers {
				if start := w.writeStart.Load(); !w.detached && start != 0 && start < limit {
					w.detached = true
					p.active--
				}
			}
			for p.active < p.max && p.head < len(p.ready) {
				before := p.active
				p.spawnLocked()
				if p.active == before {
					break
				}
			}
			p.mu.Unlock()
		}
	}
}

// close stops the monitor and waits for the workers; writes still blocked
// end with their connections (closed by the hub's shutdown).
func (p *writerPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
}
