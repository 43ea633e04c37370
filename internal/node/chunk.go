package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Why a chunk's task was stopped before it finished.
const (
	stopNone      int32 = iota
	stopCancelled       // the job was cancelled: no report
	stopLeaseLost       // the scheduler gave the chunk to another node: no report
	stopHandBack        // shutdown: reported as a retryable failure
)

// chunkRun is one chunk held by the node, from its assignment to its
// report.
type chunkRun struct {
	n      *Node
	ctx    context.Context
	cancel context.CancelFunc
	reason atomic.Int32
	done   atomic.Int64 // iterations the worker reported done

	mu       sync.Mutex
	chunk    Chunk // the lease id changes when the chunk is re-leased to us
	received time.Time
}

func (r *chunkRun) current() Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunk
}

// stop ends the chunk's task for reason (the first reason wins).
func (r *chunkRun) stop(reason int32) {
	r.reason.CompareAndSwap(stopNone, reason)
	r.cancel()
}

// HandleCall implements worker.CallHandler: the worker may report its
// progress with method "progress", params {"done": N}.
func (r *chunkRun) HandleCall(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if method != "progress" {
		return nil, &worker.Error{Code: worker.CodeNotFound, Message: fmt.Sprintf("unknown method %q (the node serves \"progress\")", method)}
	}
	var p workerProgress
	if err := json.Unmarshal(params, &p); err != nil || p.Done < 0 {
		return nil, &worker.Error{Code: "INVALID_REQUEST", Message: `progress params must be {"done": N} with N ≥ 0`}
	}
	for {
		old := r.done.Load()
		if p.Done <= old || r.done.CompareAndSwap(old, p.Done) {
			break
		}
	}
	return nil, nil
}

func finishedKey(c Chunk) string { return c.ID.String() + "\x00" + c.LeaseID.String() }

// accept takes an assignment: it starts the chunk unless it runs already
// (a re-lease to this node only updates the lease id) or this lease was
// finished before (a duplicate from recovery or from /chunks/assigned).
// While shutting down, the chunk is handed back at once.
func (n *Node) accept(c Chunk) {
	n.mu.Lock()
	if r := n.running[c.ID.String()]; r != nil {
		r.mu.Lock()
		if r.chunk.LeaseID.String() != c.LeaseID.String() {
			n.log.Info("chunk re-leased while running", "chunk", c.ID.String(), "lease", c.LeaseID.String())
			r.chunk.LeaseID, r.chunk.Deadline = c.LeaseID, c.Deadline
		}
		r.mu.Unlock()
		n.mu.Unlock()
		return
	}
	if _, dup := n.finished[finishedKey(c)]; dup {
		n.mu.Unlock()
		return
	}
	if n.draining {
		n.rememberLocked(c)
		n.mu.Unlock()
		n.goFunc(func() {
			n.fail(c, chunkError{Message: "node shutting down", Code: worker.CodeShuttingDown}, true)
		})
		return
	}
	ctx, cancel := context.WithCancel(n.work)
	r := &chunkRun{n: n, ctx: ctx, cancel: cancel, chunk: c, received: n.clock.Now()}
	n.running[c.ID.String()] = r
	n.mu.Unlock()
	n.log.Info("chunk assigned", "chunk", c.ID.String(), "job", c.JobID.String(), "iterations", c.Iterations)
	n.goFunc(func() { n.runChunk(r) })
}

// rememberLocked records a finished lease, forgetting the oldest beyond
// rememberFinished.
func (n *Node) rememberLocked(c Chunk) {
	k := finishedKey(c)
	if _, ok := n.finished[k]; ok {
		return
	}
	n.finished[k] = struct{}{}
	n.finOrder = append(n.finOrder, k)
	if len(n.finOrder) > rememberFinished {
		delete(n.finished, n.finOrder[0])
		n.finOrder = n.finOrder[1:]
	}
}

func (n *Node) runChunk(r *chunkRun) {
	defer func() {
		r.cancel()
		n.mu.Lock()
		delete(n.running, r.chunk.ID.String())
		n.rememberLocked(r.current())
		n.checkIdleLocked()
		n.mu.Unlock()
	}()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() { // owned by runChunk, which waits for it below
		defer close(progressDone)
		n.progressLoop(r, stopProgress)
	}()
	res, err := n.execute(r)
	close(stopProgress)
	<-progressDone

	c := r.current()
	switch r.reason.Load() {
	case stopCancelled:
		return
	case stopLeaseLost:
		n.log.Warn("chunk lease lost; result dropped", "chunk", c.ID.String())
		return
	}
	if err == nil {
		n.complete(c, res)
		return
	}
	if r.reason.Load() == stopHandBack || errors.Is(err, errDraining) {
		n.fail(c, chunkError{Message: "node shutting down", Code: worker.CodeShuttingDown}, true)
		return
	}
	ce, retry := classify(err)
	n.log.Warn("chunk failed", "chunk", c.ID.String(), "code", ce.Code, "err", err, "retryable", retry)
	n.fail(c, ce, retry)
}

// execute waits for a slot and runs the chunk in the worker pool.
func (n *Node) execute(r *chunkRun) (json.RawMessage, error) {
	if err := n.acquireSlot(r.ctx); err != nil {
		return nil, err
	}
	defer n.releaseSlot()
	c := r.current()
	n.log.Debug("chunk started", "chunk", c.ID.String(), "job", c.JobID.String())
	n.mu.Lock()
	pool := n.pool
	n.mu.Unlock()
	return pool.Do(r.ctx, worker.Request{Kind: worker.KindTask, ID: n.cfg.TaskID, Input: c.Raw, Calls: r})
}

// classify turns a worker pool error into the failure report: the pool's
// own errors (crash, timeout, no worker, overload) are retryable, as is a
// worker without the task; a handler's error is not (the same input would
// fail again).
func classify(err error) (chunkError, bool) {
	var we *worker.Error
	if !errors.As(err, &we) {
		return chunkError{Message: trimErr(err.Error()), Code: "NODE_ERROR"}, true
	}
	msg := we.Message
	if !we.Remote && we.Err != nil {
		msg = msg + ": " + we.Err.Error()
	}
	return chunkError{Message: trimErr(msg), Code: we.Code}, !we.Remote || we.Code == worker.CodeNotFound
}

var errDraining = errors.New("node shutting down")

// acquireSlot waits until fewer than limit chunks run; it fails once the
// node is shutting down (a chunk not started yet is handed back at once).
func (n *Node) acquireSlot(ctx context.Context) error {
	for {
		n.mu.Lock()
		if n.draining {
			n.mu.Unlock()
			return errDraining
		}
		if n.active < n.limit {
			n.active++
			n.mu.Unlock()
			return nil
		}
		ch := n.slotFreed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (n *Node) releaseSlot() {
	n.mu.Lock()
	n.active--
	n.signalSlotsLocked()
	n.mu.Unlock()
}

func (n *Node) signalSlotsLocked() {
	close(n.slotFreed)
	n.slotFreed = make(chan struct{})
}

// progressInterval is a third of the chunk's lease, within
// [minProgressInterval, ProgressInterval].
func (n *Node) progressInterval(lease time.Duration) time.Duration {
	d := n.cfg.ProgressInterval
	if lease > 0 && lease/3 < d {
		d = lease / 3
	}
	return max(d, minProgressInterval)
}

// progressLoop reports the chunk's progress (which extends its lease)
// until stop closes; a 409/403/404 answer means the lease is lost and
// stops the task.
func (n *Node) progressLoop(r *chunkRun, stop <-chan struct{}) {
	c := r.current()
	lease := time.Duration(0)
	if !c.Deadline.IsZero() {
		lease = c.Deadline.Sub(r.received)
	}
	ctx, cancel := context.WithCancel(n.report)
	defer cancel()
	go func() { // ends with progressLoop (cancel) or stop
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for n.sleep(ctx, n.progressInterval(lease)) {
		c := r.current()
		var resp progressResponse
		err := n.api.call(ctx, http.MethodPost, "/chunks/progress",
			progressRequest{ChunkID: c.ID, LeaseID: c.LeaseID, Done: r.done.Load()}, &resp)
		switch {
		case err == nil:
			if !resp.Deadline.IsZero() {
				lease = resp.Deadline.Sub(n.clock.Now())
			}
		case leaseLost(err):
			n.log.Warn("chunk lease lost", "chunk", c.ID.String(), "err", err)
			r.stop(stopLeaseLost)
			return
		case ctx.Err() == nil:
			n.log.Warn("progress report failed", "chunk", c.ID.String(), "err", err)
		}
	}
}

// complete reports a result, retrying network errors and 5xx answers.
func (n *Node) complete(c Chunk, result json.RawMessage) {
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	var resp completeResponse
	err := n.reportRetry(http.MethodPost, "/chunks/complete", completeRequest{ChunkID: c.ID, LeaseID: c.LeaseID, Result: result}, &resp)
	if err != nil {
		n.log.Warn("chunk completion not accepted", "chunk", c.ID.String(), "err", err)
		return
	}
	n.log.Info("chunk completed", "chunk", c.ID.String(), "job", c.JobID.String(),
		"job_complete", resp.JobComplete, "already_completed", resp.AlreadyCompleted)
}

// fail reports a failure, retrying network errors and 5xx answers.
func (n *Node) fail(c Chunk, e chunkError, retry bool) {
	if e.Code == worker.CodeShuttingDown {
		n.awaitAnnounced()
	}
	err := n.reportRetry(http.MethodPost, "/chunks/fail", failRequest{ChunkID: c.ID, LeaseID: c.LeaseID, Error: e, Retryable: retry}, nil)
	if err != nil {
		n.log.Warn("chunk failure not accepted", "chunk", c.ID.String(), "err", err)
		return
	}
	n.log.Info("chunk failure reported", "chunk", c.ID.String(), "job", c.JobID.String(), "code", e.Code, "retryable", retry)
}

// awaitAnnounced waits, while the node is shutting down, until the
// draining heartbeat is done (or the final reports are cancelled), so a
// hand-back never overtakes it.
func (n *Node) awaitAnnounced() {
	n.mu.Lock()
	draining := n.draining
	n.mu.Unlock()
	if !draining {
		return
	}
	select {
	case <-n.announced:
	case <-n.report.Done():
	}
}

func (n *Node) reportRetry(method, path string, in, out any) error {
	b := n.newBackoff(200*time.Millisecond, 5*time.Second)
	var err error
	for i := 0; i < reportAttempts; i++ {
		if err = n.api.call(n.report, method, path, in, out); err == nil || !retryable(err) {
			return err
		}
		if !b.wait(n.report) {
			break
		}
	}
	return err
}
