package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// maxCancelled bounds the ids remembered after a timeout so that late
// replies to them are ignored rather than treated as unknown ids.
const maxCancelled = 1 << 16

// exitDrain bounds how long the reader may keep draining stdout after the
// process has exited (a grandchild may hold the pipe open).
const exitDrain = time.Second

// proc is one worker process. Fields marked "pool.mu" are guarded by the
// Pool's mutex; pending and cancelled by proc.mu.
type proc struct {
	pool    *Pool
	slot    int
	cmd     *exec.Cmd
	pid     int
	started time.Time
	stdin   *os.File
	stdout  *os.File
	stderr  *os.File
	writeCh chan []byte // nil element: close stdin
	nextID  atomic.Uint64

	mu        sync.Mutex
	pending   map[uint64]*call
	cancelled map[uint64]struct{}

	// pool.mu
	inflight   int
	jobs       int
	draining   bool
	dead       bool
	lastActive time.Time

	recycleCh   chan string   // buffered 1: recycle reason for the slot loop
	drained     chan struct{} // closed when draining and inflight reaches 0
	drainedOnce sync.Once
	done        chan struct{} // closed when the process is dead and pending failed
	failOnce    sync.Once
	reason      string // why it died; written before done is closed
	readerDone  chan struct{}
	exitedCh    chan struct{} // closed when Wait returned; exitErr is set
	exitErr     error
	callSem     chan struct{} // bounds concurrent calls being served
	answered    atomic.Bool   // it replied to a request: it is not crash-looping
	exited      atomic.Bool
	stopping    atomic.Bool
	stopOnce    sync.Once
}

type call struct {
	ch chan result // buffered 1; receives exactly one result
	// ctx and calls serve the worker's calls for this request (both set
	// before register, cleared before the call is reused).
	ctx   context.Context
	calls CallHandler
}

type result struct {
	r   reply
	err error
}

// spawn starts one worker process and its goroutines.
func (p *Pool) spawn(slot int) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Env = p.cfg.Env
	cmd.Dir = p.cfg.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	setProcAttr(cmd)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	now := p.clock.Now()
	w := &proc{
		pool:       p,
		slot:       slot,
		cmd:        cmd,
		pid:        cmd.Process.Pid,
		started:    now,
		stdin:      inW,
		stdout:     outR,
		stderr:     errR,
		writeCh:    make(chan []byte, p.cfg.MaxInFlight+64),
		pending:    make(map[uint64]*call),
		cancelled:  make(map[uint64]struct{}),
		lastActive: now,
		recycleCh:  make(chan string, 1),
		drained:    make(chan struct{}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		exitedCh:   make(chan struct{}),
		callSem:    make(chan struct{}, p.cfg.MaxInFlight),
	}
	p.mu.Lock()
	p.procs[w] = struct{}{}
	p.mu.Unlock()
	p.m.processes.Inc()
	p.log.Info("worker started", "pid", w.pid, "slot", slot)
	p.goFunc(w.readLoop)
	p.goFunc(w.stderrLoop)
	p.goFunc(w.writeLoop)
	p.goFunc(w.waitLoop)
	if p.tick > 0 {
		p.goFunc(w.supervise)
	}
	return w, nil
}

// register adds a pending call; false if the worker is already dead.
func (w *proc) register(id uint64, c *call) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		return false
	}
	w.pending[id] = c
	return true
}

// abandon removes a pending call after a timeout or cancellation and
// remembers its id so that a late reply is ignored. It returns false if the
// call already has (or is about to get) its result.
func (w *proc) abandon(id uint64) bool {
	w.mu.Lock()
	if _, ok := w.pending[id]; !ok {
		w.mu.Unlock()
		return false
	}
	delete(w.pending, id)
	if len(w.cancelled) >= maxCancelled {
		clear(w.cancelled)
	}
	w.cancelled[id] = struct{}{}
	w.mu.Unlock()
	w.trySend(appendControl(nil, "cancel", id))
	return true
}

func (w *proc) isPending(id uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.pending[id]
	return ok
}

// trySend queues a control line without blocking; it is dropped if the
// worker is not reading (the ping check then catches the worker).
func (w *proc) trySend(line []byte) {
	select {
	case w.writeCh <- line:
	default:
	}
}

func (w *proc) writeLoop() {
	const maxBatch = 64 << 10
	buf := make([]byte, 0, 4096)
	for {
		var b []byte
		select {
		case <-w.done:
			return
		case b = <-w.writeCh:
		}
		if b == nil {
			w.stdin.Close()
			return
		}
		buf = append(buf[:0], b...)
		closeAfter := false
	batch:
		for len(buf) < maxBatch {
			select {
			case b = <-w.writeCh:
				if b == nil {
					closeAfter = true
					break batch
				}
				buf = append(buf, b...)
			default:
				break batch
			}
		}
		if _, err := w.stdin.Write(buf); err != nil {
			w.fail(reasonExit, fmt.Errorf("write to worker: %w", err))
			return
		}
		if closeAfter {
			w.stdin.Close()
			return
		}
		if cap(buf) > 4*maxBatch {
			buf = make([]byte, 0, 4096)
		}
	}
}

func (w *proc) readLoop() {
	defer close(w.readerDone)
	sc := bufio.NewScanner(w.stdout)
	sc.Buffer(make([]byte, 0, min(64<<10, w.pool.cfg.MaxMessageSize)), w.pool.cfg.MaxMessageSize)
	for sc.Scan() {
		if err := w.handleLine(sc.Bytes()); err != nil {
			w.fail(reasonProtocol, err)
			return
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		w.fail(reasonProtocol, fmt.Errorf("line longer than %d bytes", w.pool.cfg.MaxMessageSize))
		return
	} else if err != nil && !errors.Is(err, os.ErrClosed) {
		w.fail(reasonExit, fmt.Errorf("read from worker: %w", err))
		return
	}
	// End of output: report the exit status (an *exec.ExitError naming a
	// signal or code) when the process ends soon, else a bare EOF.
	t := time.NewTimer(exitDrain)
	defer t.Stop()
	select {
	case <-w.exitedCh:
		if w.exitErr != nil {
			w.fail(reasonExit, w.exitErr)
			return
		}
	case <-t.C:
	}
	w.fail(reasonExit, io.EOF)
}

// handleLine dispatches one stdout line; an error is a protocol violation.
func (w *proc) handleLine(line []byte) error {
	r, err := decodeLine(line)
	if err == errBlankLine {
		return nil
	}
	if err != nil {
		return err
	}
	if r.ready {
		w.pool.announce(r.tasks, r.events)
		return nil
	}
	if r.isCall {
		w.startCall(r)
		return nil
	}
	w.mu.Lock()
	c, ok := w.pending[r.id]
	if ok {
		delete(w.pending, r.id)
	} else if _, late := w.cancelled[r.id]; late {
		delete(w.cancelled, r.id)
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("reply for unknown id %d", r.id)
	}
	w.answered.Store(true)
	if r.recycle { // before the caller releases w, so nothing new is sent to it
		w.pool.mu.Lock()
		w.pool.recycleLocked(w, reasonRequested)
		w.pool.mu.Unlock()
	}
	c.ch <- result{r: r}
	return nil
}

// startCall serves a worker's call on a goroutine owned by the pool. Calls
// for a request that is no longer pending get an error reply. When
// MaxInFlight calls are being served, reading waits (back pressure).
func (w *proc) startCall(r reply) {
	w.mu.Lock()
	var h CallHandler
	var ctx context.Context
	if c, ok := w.pending[r.id]; ok {
		h, ctx = c.calls, c.ctx
	}
	w.mu.Unlock()
	select {
	case w.callSem <- struct{}{}:
	case <-w.done:
		return
	}
	w.pool.goFunc(func() {
		defer func() { <-w.callSem }()
		var line []byte
		if h == nil {
			line = appendCallReply(nil, r.id, r.callID, nil, CodeNotFound, "no active request accepts calls")
		} else {
			res, err := h.HandleCall(ctx, r.method, r.params)
			if err != nil {
				code, msg := CodeExecution, err.Error()
				var e *Error
				if errors.As(err, &e) {
					code, msg = e.Code, e.Message
				}
				line = appendCallReply(nil, r.id, r.callID, nil, code, msg)
			} else {
				line = appendCallReply(nil, r.id, r.callID, res, "", "")
			}
		}
		select {
		case w.writeCh <- line:
		case <-w.done:
		}
	})
}

func (w *proc) stderrLoop() {
	br := bufio.NewReaderSize(w.stderr, 4096)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 {
			w.pool.log.Info("worker stderr", "pid", w.pid, "line", string(line))
		}
		for isPrefix && err == nil { // skip the rest of an overlong line
			_, isPrefix, err = br.ReadLine()
		}
		if err != nil {
			return
		}
	}
}

func (w *proc) waitLoop() {
	err := w.cmd.Wait()
	w.exited.Store(true)
	w.exitErr = err
	close(w.exitedCh)
	t := time.NewTimer(exitDrain)
	select {
	case <-w.readerDone:
	case <-t.C:
	}
	t.Stop()
	if err == nil {
		err = errors.New("exited with status 0")
	}
	w.fail(reasonExit, err)
	w.stdout.Close()
	w.stderr.Close()
	w.stdin.Close()
}

// fail marks the worker dead (once): kills it, fails every pending request
// with CodeWorkerCrashed and closes done.
func (w *proc) fail(reason string, cause error) {
	w.failOnce.Do(func() {
		p := w.pool
		w.reason = reason
		if !w.exited.Load() {
			killProc(w.cmd)
		}
		p.mu.Lock()
		w.dead = true
		delete(p.procs, w)
		p.mu.Unlock()
		p.m.processes.Dec()
		w.mu.Lock()
		pending := w.pending
		w.pending = nil
		w.mu.Unlock()
		n := 0
		for _, c := range pending {
			n++
			c.ch <- result{err: newErr(ErrWorkerCrashed, fmt.Errorf("worker pid %d %s: %w", w.pid, reason, cause))}
		}
		close(w.done)
		w.stdin.Close()
		if w.stopping.Load() && reason == reasonExit {
			p.log.Info("worker stopped", "pid", w.pid)
		} else {
			p.log.Warn("worker failed", "pid", w.pid, "reason", reason, "err", cause, "failed_requests", n)
		}
	})
}

// stop asks the worker to exit after it has answered everything: it sends
// the shutdown message, closes stdin and kills the worker if it has not
// exited by the deadline.
func (w *proc) stop(deadline <-chan time.Time) {
	w.stopOnce.Do(func() {
		w.stopping.Store(true)
		id := w.nextID.Add(1)
		w.mu.Lock()
		if w.cancelled != nil {
			w.cancelled[id] = struct{}{} // its reply is ignored
		}
		w.mu.Unlock()
		select {
		case w.writeCh <- appendControl(nil, "shutdown", id):
		case <-w.done:
		case <-deadline:
		}
		select {
		case w.writeCh <- nil:
		case <-w.done:
		case <-deadline:
		}
	})
	select {
	case <-w.done:
	case <-deadline:
		w.fail(reasonShutdown, errors.New("did not exit in time"))
	}
}

// supervise pings the worker and checks ttl, idle ttl and memory every
// p.tick on the pool's clock. A tick's callback returns once its checks are
// done, so a fake clock's Advance returns with them complete.
func (w *proc) supervise() {
	p := w.pool
	ticks := make(chan time.Time)
	handled := make(chan struct{})
	stopped := make(chan struct{})
	defer close(stopped)
	t := p.clock.AfterFunc(p.tick, func() {
		select {
		case ticks <- p.clock.Now():
		case <-stopped:
			return
		}
		select {
		case <-handled:
		case <-stopped:
		}
	})
	defer t.Stop()
	lastPing := p.clock.Now()
	var pingID uint64
	for {
		select {
		case <-w.done:
			return
		case now := <-ticks:
			if !w.check(now, &lastPing, &pingID) {
				return
			}
			t.Reset(p.tick)
			handled <- struct{}{}
		}
	}
}

// check runs one supervision tick; false means the worker was failed.
func (w *proc) check(now time.Time, lastPing *time.Time, pingID *uint64) bool {
	p := w.pool
	if p.cfg.PingInterval > 0 && now.Sub(*lastPing) >= p.cfg.PingInterval-p.tick/4 {
		if *pingID != 0 && w.isPending(*pingID) {
			w.fail(reasonPing, fmt.Errorf("no ping reply within %s", p.cfg.PingInterval))
			return false
		}
		*pingID = w.nextID.Add(1)
		if w.register(*pingID, &call{ch: make(chan result, 1)}) {
			w.trySend(appendControl(nil, "ping", *pingID))
		}
		*lastPing = now
	}
	var reason string
	p.mu.Lock()
	switch {
	case w.draining || w.dead:
	case p.cfg.TTL > 0 && now.Sub(w.started) >= p.cfg.TTL:
		reason = reasonTTL
	case p.cfg.IdleTTL > 0 && w.inflight == 0 && now.Sub(w.lastActive) >= p.cfg.IdleTTL:
		reason = reasonIdleTTL
	}
	if reason != "" {
		p.recycleLocked(w, reason)
	}
	draining := w.draining
	p.mu.Unlock()
	if p.cfg.MaxMemory > 0 && !draining {
		if rss, err := rssBytes(w.pid); err == nil && rss > p.cfg.MaxMemory {
			p.log.Info("worker over memory limit", "pid", w.pid, "rss", rss, "max_memory", p.cfg.MaxMemory)
			p.mu.Lock()
			p.recycleLocked(w, reasonMaxMemory)
			p.mu.Unlock()
		}
	}
	return true
}
