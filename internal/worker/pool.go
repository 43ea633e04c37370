package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan result, 1)} }}

type slotState uint8

const (
	slotRunning  slotState = iota // cur is set (it may have just died)
	slotStarting                  // a process is being spawned
	slotBackoff                   // waiting before the next spawn attempt
)

type slot struct {
	idx   int
	cur   *proc
	state slotState
}

type grant struct {
	w   *proc
	err error
}

type waiter struct {
	ch chan grant // buffered 1
}

// Discovery is what the pool exposes: the allow-list when configured,
// otherwise what the workers announced. Enabled is false when neither
// exists, in which case every id is passed to the workers.
type Discovery struct {
	Enabled bool
	Tasks   []string
	Events  []string
}

// Pool is a supervised pool of worker processes. It is safe for concurrent
// use. Create it with New and stop it with Shutdown.
type Pool struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	tick  time.Duration
	clock clock.Clock

	allowTasks, allowEvents []string
	announced               atomic.Pointer[Discovery]

	mu       sync.Mutex
	slots    []*slot
	procs    map[*proc]struct{}
	waiters  []*waiter
	rr       int
	inflight int
	closed   bool
	idle     chan struct{} // closed when closed and inflight == 0
	idleOnce sync.Once

	closing chan struct{}
	wg      sync.WaitGroup
	stopped chan struct{}
}

// New validates cfg, fills in defaults and starts cfg.Workers processes.
// The first spawn of each worker happens before New returns; if the command
// cannot start, New logs the error, keeps retrying in the background with
// backoff and the pool answers CodeWorkerCrashed meanwhile. New fails only
// for an invalid Config or metrics that cannot be registered.
func New(cfg Config) (*Pool, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "worker"),
		m:           m,
		clock:       clock.OrReal(cfg.Clock),
		allowTasks:  slices.Clone(cfg.AllowTasks),
		allowEvents: slices.Clone(cfg.AllowEvents),
		procs:       make(map[*proc]struct{}),
		idle:        make(chan struct{}),
		closing:     make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	p.tick = supervisionTick(&cfg)
	for i := 0; i < cfg.Workers; i++ {
		p.slots = append(p.slots, &slot{idx: i, state: slotStarting})
	}
	for _, s := range p.slots {
		w, err := p.spawn(s.idx)
		if err != nil {
			p.log.Error("worker command cannot start; retrying in the background",
				"command", strings.Join(cfg.Command, " "), "err", err)
			p.m.restart(reasonSpawn)
			s.state = slotBackoff
		} else {
			s.cur, s.state = w, slotRunning
		}
		p.goFunc(func() { p.runSlot(s, w) })
	}
	return p, nil
}

func supervisionTick(c *Config) time.Duration {
	tick := time.Duration(0)
	min := func(d time.Duration) {
		if d > 0 && (tick == 0 || d < tick) {
			tick = d
		}
	}
	if c.PingInterval > 0 {
		min(c.PingInterval)
	}
	min(c.TTL / 4)
	min(c.IdleTTL / 4)
	if c.MaxMemory > 0 {
		min(time.Second)
	}
	if tick != 0 && tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	return tick
}

func (p *Pool) goFunc(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// backoff is the delay before the next start after fails consecutive
// failures: 0 for the first, then MinBackoff doubling up to MaxBackoff.
func backoff(fails int) time.Duration {
	if fails <= 1 {
		return 0
	}
	d := MinBackoff << min(fails-2, 16)
	return min(d, MaxBackoff)
}

// runSlot owns one worker slot: it replaces the process when it dies
// (with backoff) or is recycled (at once), until the pool closes.
func (p *Pool) runSlot(s *slot, w *proc) {
	fails := 0
	if w == nil {
		fails = 2 // first spawn failed: back off before retrying
	}
	for {
		if w == nil {
			if !p.sleep(max(backoff(fails), MinBackoff)) {
				return
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				return
			}
			s.state = slotStarting
			p.mu.Unlock()
			nw, err := p.spawn(s.idx)
			if err != nil {
				fails++
				p.m.restart(reasonSpawn)
				p.log.Error("worker command cannot start", "command", strings.Join(p.cfg.Command, " "),
					"err", err, "retry_in", max(backoff(fails), MinBackoff))
				p.mu.Lock()
				s.state = slotBackoff
				p.failWaitersIfHopelessLocked()
				p.mu.Unlock()
				continue
			}
			if !p.install(s, nw) {
				return
			}
			w = nw
		}
		select {
		case <-p.closing:
			return
		case reason := <-w.recycleCh:
			p.m.restart(reason)
			p.log.Info("recycling worker", "pid", w.pid, "reason", reason)
			old := w
			p.goFunc(func() { p.retire(old) })
			fails = 0
		case <-w.done:
			p.m.restart(w.reason)
			// A worker that served requests before dying (killed on a
			// timeout, out of memory on one request) is replaced at once;
			// only a worker that dies before answering backs off.
			if p.clock.Now().Sub(w.started) >= backoffReset || w.answered.Load() {
				fails = 0
			}
			fails++
		}
		// Replace w.
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		d := backoff(fails)
		if d > 0 {
			s.state = slotBackoff
			s.cur = nil
			p.failWaitersIfHopelessLocked()
		} else {
			s.state = slotStarting
		}
		p.mu.Unlock()
		if d > 0 && !p.sleep(d) {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		s.state = slotStarting
		p.mu.Unlock()
		nw, err := p.spawn(s.idx)
		if err != nil {
			fails = max(fails+1, 2)
			p.m.restart(reasonSpawn)
			p.log.Error("worker command cannot start", "command", strings.Join(p.cfg.Command, " "), "err", err)
			p.mu.Lock()
			s.state = slotBackoff
			if s.cur != nil && s.cur.dead {
				s.cur = nil
			}
			p.failWaitersIfHopelessLocked()
			p.mu.Unlock()
			w = nil
			continue
		}
		if !p.install(s, nw) {
			return
		}
		w = nw
	}
}

// install makes nw the slot's running worker and hands it waiting
// requests. It reports false, failing nw, when the pool closed meanwhile.
func (p *Pool) install(s *slot, nw *proc) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nw.fail(reasonShutdown, errors.New("pool closed")) // fail takes p.mu
		return false
	}
	s.cur, s.state = nw, slotRunning
	p.dispatchWaitersLocked()
	p.mu.Unlock()
	return true
}

// sleep waits d or until the pool closes; false means closed.
func (p *Pool) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.closing:
		return false
	}
}

// retire drains a recycled worker and stops it.
func (p *Pool) retire(w *proc) {
	select {
	case <-w.drained:
	case <-w.done:
		return
	case <-p.closing:
		return // Shutdown stops every process
	}
	t := time.NewTimer(p.cfg.StopGrace)
	defer t.Stop()
	w.stop(t.C)
}

// recycleLocked stops dispatching to w and asks its slot loop to replace it.
func (p *Pool) recycleLocked(w *proc, reason string) {
	if w.draining || w.dead {
		return
	}
	w.draining = true
	select {
	case w.recycleCh <- reason:
	default:
	}
	if w.inflight == 0 {
		w.drainedOnce.Do(func() { close(w.drained) })
	}
}

// pickLocked reserves a slot on the least-loaded ready worker, or nil.
func (p *Pool) pickLocked() *proc {
	var best *proc
	n := len(p.slots)
	for i := 0; i < n; i++ {
		w := p.slots[(p.rr+i)%n].cur
		if w == nil || w.dead || w.draining || w.inflight >= p.cfg.MaxInFlight {
			continue
		}
		if best == nil || w.inflight < best.inflight {
			best = w
			if w.inflight == 0 {
				break
			}
		}
	}
	if best == nil {
		return nil
	}
	p.rr++
	best.inflight++
	best.jobs++
	p.inflight++
	p.m.inFlight.Inc()
	if p.cfg.MaxJobs > 0 && best.jobs >= p.cfg.MaxJobs {
		p.recycleLocked(best, reasonMaxJobs)
	}
	return best
}

// hopeLocked reports whether some worker is alive or being started.
func (p *Pool) hopeLocked() bool {
	for _, s := range p.slots {
		if s.state != slotBackoff {
			return true
		}
	}
	return false
}

func (p *Pool) failWaitersIfHopelessLocked() {
	if p.hopeLocked() {
		return
	}
	for _, wt := range p.waiters {
		wt.ch <- grant{err: newErr(ErrWorkerCrashed, errors.New("no worker running"))}
	}
	p.waiters = p.waiters[:0]
	p.m.queueDepth.Set(0)
}

func (p *Pool) dispatchWaitersLocked() {
	for len(p.waiters) > 0 {
		w := p.pickLocked()
		if w == nil {
			break
		}
		wt := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		wt.ch <- grant{w: w}
	}
	p.m.queueDepth.Set(float64(len(p.waiters)))
}

// acquire reserves a slot on a worker, waiting in the queue if needed.
func (p *Pool) acquire(ctx context.Context) (*proc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrShuttingDown
	}
	if w := p.pickLocked(); w != nil {
		p.mu.Unlock()
		return w, nil
	}
	if !p.hopeLocked() {
		p.mu.Unlock()
		return nil, newErr(ErrWorkerCrashed, errors.New("no worker running"))
	}
	if len(p.waiters) >= p.cfg.QueueSize {
		p.mu.Unlock()
		return nil, newErr(ErrOverloaded, errors.New("queue full"))
	}
	wt := &waiter{ch: make(chan grant, 1)}
	p.waiters = append(p.waiters, wt)
	p.m.queueDepth.Set(float64(len(p.waiters)))
	p.mu.Unlock()

	t := time.NewTimer(p.cfg.QueueTimeout)
	defer t.Stop()
	var err error
	select {
	case g := <-wt.ch:
		return g.w, g.err
	case <-t.C:
		err = newErr(ErrOverloaded, errors.New("queue timeout"))
	case <-ctx.Done():
		err = newErr(ErrCanceled, ctx.Err())
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, wt); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.m.queueDepth.Set(float64(len(p.waiters)))
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	g := <-wt.ch // granted meanwhile: use it
	return g.w, g.err
}

// release gives back the slot reserved by acquire.
func (p *Pool) release(w *proc) {
	now := p.clock.Now()
	p.mu.Lock()
	w.inflight--
	p.inflight--
	w.lastActive = now
	if w.draining && w.inflight == 0 {
		w.drainedOnce.Do(func() { close(w.drained) })
	}
	p.dispatchWaitersLocked()
	if p.closed && p.inflight == 0 {
		p.idleOnce.Do(func() { close(p.idle) })
	}
	p.mu.Unlock()
	p.m.inFlight.Dec()
}

// Do sends req to a worker and waits for its reply. It returns the result
// (nil for an empty or null result) or an *Error: CodeNotFound when the
// worker has no handler, the worker's own code (Remote set) for a handler
// error, CodeOverloaded, CodeTimeout, CodeWorkerCrashed, CodeShuttingDown,
// CodeCanceled (ctx ended) or CodeInvalidInput. Do does not check the
// allow-list; see Exposed. Do never blocks longer than QueueTimeout plus
// Timeout.
func (p *Pool) Do(ctx context.Context, req Request) (json.RawMessage, error) {
	start := time.Now()
	res, outcome, err := p.do(ctx, &req)
	kind := req.Kind.String()
	if req.rpc {
		kind = "rpc"
	}
	p.m.observe(kind, outcome, time.Since(start))
	return res, err
}

func (p *Pool) do(ctx context.Context, req *Request) (json.RawMessage, string, error) {
	input, err := normalizeInput(req.Input)
	if err != nil {
		return nil, outcomeInvalid, err
	}
	var ctxJSON []byte
	if req.Context != nil {
		ctxJSON = req.Context.appendJSON(make([]byte, 0, 256))
	}
	w, err := p.acquire(ctx)
	if err != nil {
		return nil, outcomeFor(err), err
	}
	defer p.release(w)
	id := w.nextID.Add(1)
	// c goes back to the pool only on paths where its result was received
	// (so no one can still send to it).
	c := callPool.Get().(*call)
	c.ctx, c.calls = ctx, req.Calls
	if !w.register(id, c) {
		c.ctx, c.calls = nil, nil
		callPool.Put(c)
		err := newErr(ErrWorkerCrashed, errors.New("worker died before dispatch"))
		return nil, outcomeCrashed, err
	}
	line := appendRequest(make([]byte, 0, 96+len(req.ID)+len(input)+len(ctxJSON)), req.Kind, id, req.ID, input, ctxJSON)
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case w.writeCh <- line:
	case <-w.done: // fail delivered the crash to c
	case <-t.C:
		if w.abandon(id) {
			return nil, outcomeTimeout, newErr(ErrTimeout, errors.New("worker input blocked"))
		}
	case <-ctx.Done():
		if w.abandon(id) {
			return nil, outcomeCanceled, newErr(ErrCanceled, ctx.Err())
		}
	}
	var res result
	select {
	case res = <-c.ch:
	case <-t.C:
		if w.abandon(id) {
			if p.cfg.KillOnTimeout {
				w.fail(reasonTimeout, fmt.Errorf("task %q ran longer than %s", req.ID, p.cfg.Timeout))
			}
			return nil, outcomeTimeout, newErr(ErrTimeout, fmt.Errorf("task %q after %s", req.ID, p.cfg.Timeout))
		}
		res = <-c.ch
	case <-ctx.Done():
		if w.abandon(id) {
			return nil, outcomeCanceled, newErr(ErrCanceled, ctx.Err())
		}
		res = <-c.ch
	}
	c.ctx, c.calls = nil, nil
	callPool.Put(c)
	if res.err != nil {
		return nil, outcomeCrashed, res.err
	}
	if res.r.ok {
		return res.r.result, outcomeOK, nil
	}
	if res.r.code == CodeNotFound {
		return nil, outcomeNotFound, &Error{Code: CodeNotFound, Message: res.r.msg, Remote: true}
	}
	return nil, outcomeError, &Error{Code: res.r.code, Message: res.r.msg, Remote: true}
}

func outcomeFor(err error) string {
	switch ErrorCode(err) {
	case CodeOverloaded:
		return outcomeOverloaded
	case CodeShuttingDown:
		return outcomeShutdown
	case CodeCanceled:
		return outcomeCanceled
	case CodeTimeout:
		return outcomeTimeout
	default:
		return outcomeCrashed
	}
}

// announce records the handlers a worker announced in its ready line.
func (p *Pool) announce(tasks, events []string) {
	d := &Discovery{Enabled: true, Tasks: slices.Clone(tasks), Events: slices.Clone(events)}
	if d.Tasks == nil {
		d.Tasks = []string{}
	}
	if d.Events == nil {
		d.Events = []string{}
	}
	p.announced.Store(d)
}

// Discovery returns the exposed ids: the configured allow-list if any,
// else the latest worker announcement, else Enabled=false.
func (p *Pool) Discovery() Discovery {
	if len(p.allowTasks) > 0 || len(p.allowEvents) > 0 {
		return Discovery{Enabled: true, Tasks: nonNil(p.allowTasks), Events: nonNil(p.allowEvents)}
	}
	if d := p.announced.Load(); d != nil {
		return *d
	}
	return Discovery{Tasks: []string{}, Events: []string{}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Exposed reports whether the task or event id may be called from outside:
// it is in the allow-list (an entry ending in "*" matches by prefix), or,
// with no allow-list, in the workers' announcement, or nothing is known.
func (p *Pool) Exposed(kind Kind, id string) bool {
	d := p.Discovery()
	if !d.Enabled {
		return true
	}
	list := d.Tasks
	if kind == KindEvent {
		list = d.Events
	}
	for _, a := range list {
		if a == id || (strings.HasSuffix(a, "*") && strings.HasPrefix(id, a[:len(a)-1])) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting requests (new ones fail with CodeShuttingDown),
// waits for in-flight requests until ctx ends, then sends every worker the
// shutdown message and kills those still running when ctx ends. It waits
// for all goroutines and is idempotent; it returns ctx.Err() if the drain
// was cut short.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed
	if first {
		p.closed = true
		close(p.closing)
		for _, wt := range p.waiters {
			wt.ch <- grant{err: ErrShuttingDown}
		}
		p.waiters = nil
		p.m.queueDepth.Set(0)
	}
	if p.inflight == 0 {
		p.idleOnce.Do(func() { close(p.idle) })
	}
	p.mu.Unlock()
	if !first {
		select {
		case <-p.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var err error
	select {
	case <-p.idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	procs := make([]*proc, 0, len(p.procs))
	for w := range p.procs {
		procs = append(procs, w)
	}
	p.mu.Unlock()
	deadline := make(chan time.Time)
	stopCtx, cancel := context.WithTimeout(ctx, p.cfg.StopGrace)
	defer cancel()
	go func() {
		<-stopCtx.Done()
		close(deadline)
	}()
	var wg sync.WaitGroup
	for _, w := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop(deadline)
		}()
	}
	wg.Wait()
	cancel()
	p.wg.Wait()
	close(p.stopped)
	p.log.Info("worker pool stopped")
	return err
}
