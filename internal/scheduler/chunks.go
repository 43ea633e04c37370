package scheduler

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"time"
)

// Maximum lengths of what a node reports about a failure.
const (
	MaxErrorMessage = 2000
	MaxErrorCode    = 100
)

// holding is the outcome of checking a node's claim on a chunk.
type holding int

const (
	holds            holding = iota // the node holds the running chunk
	alreadyCompleted                // the node completed it with this lease
)

// checkHolder decides what a node may do with chunk c given the lease id
// it sent ("" = its current lease): ErrNotOwner when it never held the
// chunk, ErrLeaseLost when its lease is not the chunk's live one.
func checkHolder(ctx context.Context, tx Tx, c Chunk, nodeID, leaseID string) (holding, error) {
	if leaseID != "" && leaseID == c.LeaseID && c.NodeID == nodeID {
		// The chunk's own lease: no need to look it up.
		switch c.Status {
		case ChunkRunning:
			return holds, nil
		case ChunkCompleted:
			return alreadyCompleted, nil
		}
		return 0, ErrLeaseLost
	}
	if leaseID == "" {
		if c.NodeID == nodeID {
			switch c.Status {
			case ChunkRunning:
				return holds, nil
			case ChunkCompleted:
				return alreadyCompleted, nil
			}
			return 0, ErrLeaseLost
		}
	} else {
		holder, chunkID, err := tx.LeaseHolder(ctx, leaseID)
		switch {
		case err == nil && chunkID == c.ID && holder == nodeID:
			if c.LeaseID == leaseID {
				switch c.Status {
				case ChunkRunning:
					return holds, nil
				case ChunkCompleted:
					return alreadyCompleted, nil
				}
			}
			return 0, ErrLeaseLost
		case err == nil && chunkID == c.ID:
			return 0, ErrNotOwner // someone else's lease
		case err != nil && !errors.Is(err, ErrNoRows):
			return 0, err
		}
	}
	held, err := tx.HeldBefore(ctx, c.ID, nodeID)
	if err != nil {
		return 0, err
	}
	if held {
		return 0, ErrLeaseLost
	}
	return 0, ErrNotOwner
}

// locked finds the node of key and locks the job and the chunk (lock
// order job, chunk). Node ids of keys are cached: a key's node never
// changes. On a store that serialises transactions the chunk read before
// the job lock is already the locked state.
func (s *Service) locked(ctx context.Context, tx Tx, key ed25519.PublicKey, chunkID string) (string, Job, Chunk, error) {
	nodeID, err := s.nodeIDOf(ctx, tx, key)
	if err != nil {
		return "", Job{}, Chunk{}, err
	}
	c, err := tx.Chunk(ctx, chunkID)
	if errors.Is(err, ErrNoRows) {
		return "", Job{}, Chunk{}, ErrChunkNotFound
	}
	if err != nil {
		return "", Job{}, Chunk{}, err
	}
	j, err := tx.JobForUpdate(ctx, c.JobID)
	if err != nil {
		return "", Job{}, Chunk{}, err
	}
	if !s.serialized {
		c, err = tx.ChunkForUpdate(ctx, chunkID)
	}
	return nodeID, j, c, err
}

// nodeIDOf returns the id of the node of key (ErrNodeNotFound).
func (s *Service) nodeIDOf(ctx context.Context, tx Tx, key ed25519.PublicKey) (string, error) {
	if id, ok := s.nodeIDs.Load(string(key)); ok {
		return id.(string), nil
	}
	n, err := tx.NodeByKey(ctx, key)
	if errors.Is(err, ErrNoRows) {
		return "", ErrNodeNotFound
	}
	if err != nil {
		return "", err
	}
	s.nodeIDs.Store(string(key), n.ID)
	return n.ID, nil
}

func (s *Service) chunkArgs(key ed25519.PublicKey, chunkID, leaseID string) error {
	if err := s.running(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if chunkID == "" {
		return invalid("chunkId", "required")
	}
	if len(chunkID) > MaxNameLength {
		return ErrChunkNotFound
	}
	if len(leaseID) > MaxNameLength {
		return invalid("leaseId", "too long")
	}
	return nil
}

// CompleteChunk records the result of a chunk leased to the node. leaseID
// may be empty (the origin's nodes send none): then the node's current
// lease counts. A repeat by the node that completed it answers
// AlreadyCompleted; a node that never held the chunk gets ErrNotOwner; a
// node whose lease expired, was replaced or whose job ended gets
// ErrLeaseLost. The job's aggregate is computed exactly once, by the
// completion of its last chunk (JobComplete true).
func (s *Service) CompleteChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage) (Completion, error) {
	if err := s.chunkArgs(key, chunkID, leaseID); err != nil {
		return Completion{}, err
	}
	if _, _, err := DecodeResult(result); err != nil {
		return Completion{}, invalid("result", err.Error())
	}
	var out Completion
	var j Job
	var nodeID string
	var err error
	if s.groupCommit {
		out, j, nodeID, err = s.completeBatched(ctx, key, chunkID, leaseID, result)
	} else {
		err = s.store.InTx(ctx, func(tx Tx) (err error) {
			out, j, nodeID, err = s.completeIn(ctx, tx, key, chunkID, leaseID, result, s.now())
			return err
		})
	}
	if err != nil {
		return Completion{}, storeErr(err, ErrChunkNotFound)
	}
	if out.AlreadyCompleted {
		return out, nil
	}
	s.metrics.completed.Inc()
	s.kickAssign()
	s.notifyStore()
	if out.JobComplete {
		s.jobEvent(EventCompleted, j, nil)
	} else {
		s.jobProgressed(j)
	}
	s.nodesChanged(nodeID)
	return out, nil
}

// completeIn is CompleteChunk's transaction body. Domain errors (an
// *errs.Error) come before any write, so a batch of completions in one
// transaction (completeBatched) can go on past them.
func (s *Service) completeIn(ctx context.Context, tx Tx, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage, now time.Time) (out Completion, j Job, nodeID string, err error) {
	out = Completion{Success: true}
	var c Chunk
	nodeID, j, c, err = s.locked(ctx, tx, key, chunkID)
	if err != nil {
		return out, j, nodeID, err
	}
	h, err := checkHolder(ctx, tx, c, nodeID, leaseID)
	if err != nil {
		return out, j, nodeID, err
	}
	if h == alreadyCompleted {
		out.AlreadyCompleted = true
		return out, j, nodeID, nil
	}
	c.Status = ChunkCompleted
	c.Result = append(json.RawMessage(nil), result...)
	c.Done = c.Iterations
	c.Deadline = time.Time{}
	c.UpdatedAt = now
	if err := tx.UpdateChunk(ctx, c); err != nil {
		return out, j, nodeID, err
	}
	if _, err := tx.AddRunning(ctx, nodeID, -1, 0); err != nil {
		return out, j, nodeID, err
	}
	j.Chunks.Running--
	j.Chunks.Completed++
	j.IterationsDone += c.Iterations
	j.UpdatedAt = now
	if j.Chunks.Completed == j.Chunks.Total && !j.Status.Terminal() {
		// The last chunk: this transaction holds the job's lock, so the
		// aggregate is computed exactly once.
		agg, err := aggregateJob(ctx, tx, j.ID)
		if err != nil {
			return out, j, nodeID, err
		}
		j.Result, j.Status, j.FinishedAt = agg, JobCompleted, now
		out.JobComplete = true
	}
	return out, j, nodeID, tx.UpdateJob(ctx, &j)
}

// maxCompleteBatch bounds the completions of one group commit.
const maxCompleteBatch = 128

// completeReq is a completion waiting for the group commit.
type completeReq struct {
	key              ed25519.PublicKey
	chunkID, leaseID string
	result           json.RawMessage
	done             chan completeRes // buffered 1
}

type completeRes struct {
	out    Completion
	job    Job
	nodeID string
	err    error
}

// completeBatched hands a completion to the committer, which runs the
// completions waiting at that moment in one transaction (group commit):
// on a store that serialises transactions (SQLite) this divides the
// commits and the assignment passes they trigger; on PostgreSQL it divides
// the commits (one WAL flush per batch). A batch aborted by a deadlock is
// retried whole by the store.
func (s *Service) completeBatched(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage) (Completion, Job, string, error) {
	r := &completeReq{key: key, chunkID: chunkID, leaseID: leaseID, result: result, done: make(chan completeRes, 1)}
	select {
	case s.completeQ <- r:
	case <-ctx.Done():
		return Completion{}, Job{}, "", ctx.Err()
	case <-s.ctx.Done():
		return Completion{}, Job{}, "", ErrStopped
	}
	select {
	case res := <-r.done:
		return res.out, res.job, res.nodeID, res.err
	case <-ctx.Done():
		return Completion{}, Job{}, "", ctx.Err() // it may still commit; a retry answers alreadyCompleted
	case <-s.ctx.Done():
		return Completion{}, Job{}, "", ErrStopped
	}
}

// committer runs the group commits until Shutdown.
func (s *Service) committer() {
	defer s.wg.Done()
	batch := make([]*completeReq, 0, maxCompleteBatch)
	res := make([]completeRes, 0, maxCompleteBatch)
	for {
		batch = batch[:0]
		select {
		case <-s.ctx.Done():
			return
		case r := <-s.completeQ:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < maxCompleteBatch {
			select {
			case r := <-s.completeQ:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		now := s.now()
		err := s.store.InTx(s.ctx, func(tx Tx) error {
			res = res[:0]
			bt := newBatchTx(tx)
			for _, r := range batch {
				out, j, nodeID, err := s.completeIn(s.ctx, bt, r.key, r.chunkID, r.leaseID, r.result, now)
				if err != nil && errs.Find(err) == nil {
					return err // a store failure: the whole batch fails
				}
				res = append(res, completeRes{out: out, job: j, nodeID: nodeID, err: err})
			}
			return bt.flush(s.ctx)
		})
		for i, r := range batch {
			if err != nil {
				r.done <- completeRes{err: err}
			} else {
				r.done <- res[i]
			}
		}
	}
}

// FailChunk records that the node could not run a chunk. A retryable
// failure puts it back to pending after a backoff unless MaxAttempts is
// reached; otherwise the chunk and its job fail with f.Message. A
// hand-back (retryable, CodeShuttingDown) is pending again at once without
// the attempt counting, and, when the chunk was leased since the node
// last registered, marks the node draining in the same transaction, so
// the chunk goes to another node (or waits for one).
// Errors as CompleteChunk; failing a chunk the node completed is
// ErrLeaseLost.
func (s *Service) FailChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, f Failure) error {
	if err := s.chunkArgs(key, chunkID, leaseID); err != nil {
		return err
	}
	if len(f.Message) > MaxErrorMessage {
		f.Message = f.Message[:MaxErrorMessage]
	}
	if len(f.Code) > MaxErrorCode {
		return invalid("error.code", fmt.Sprintf("longer than %d bytes", MaxErrorCode))
	}
	msg := f.Message
	if msg == "" {
		msg = "chunk failed"
	}
	if f.Code != "" {
		msg = f.Code + ": " + msg
	}
	now := s.now()
	var o endOutcome
	var nodeID string
	err := s.store.InTx(ctx, func(tx Tx) error {
		var j Job
		var c Chunk
		var err error
		nodeID, j, c, err = s.locked(ctx, tx, key, chunkID)
		if err != nil {
			return err
		}
		h, err := checkHolder(ctx, tx, c, nodeID, leaseID)
		if err != nil {
			return err
		}
		if h == alreadyCompleted {
			return ErrLeaseLost.With("lease lost: the chunk is completed")
		}
		handBack := f.Retryable && f.Code == CodeShuttingDown
		if handBack {
			c.Attempts-- // handed back: the lease is not an attempt
		}
		if o, err = s.endLease(ctx, tx, j, c, msg, f.Retryable, handBack, now); err != nil || !handBack {
			return err
		}
		// The node process is shutting down: no more chunks for it (node
		// row last, after endLease's count update on the same row).
		leasedAt, err := tx.LeasedAt(ctx, c.LeaseID) // the lease it held (leaseID may be "")
		if err != nil {
			return err
		}
		return markDraining(ctx, tx, nodeID, leasedAt, now)
	})
	if err != nil {
		return storeErr(err, ErrChunkNotFound)
	}
	s.afterEnd(o)
	s.nodesChanged(nodeID)
	return nil
}

// markDraining marks node id draining (status StatusDraining) for the
// hand-back of a chunk leased at leasedAt, unless it is already or the
// lease predates the node's last registration (the hand-back of an
// older process, which a new one of the same key replaced); the caller's
// lock order allows locking the node row.
func markDraining(ctx context.Context, tx Tx, id string, leasedAt, now time.Time) error {
	n, err := tx.NodeForUpdate(ctx, id)
	if err != nil || n.Draining || leasedAt.Before(n.RegisteredAt) {
		return err
	}
	n.Draining, n.Status, n.UpdatedAt = true, StatusDraining, now
	return tx.UpdateNode(ctx, &n)
}

// endOutcome is what endLease decided, for the publications after commit.
type endOutcome struct {
	job      Job
	retryAt  time.Time           // the chunk is pending again from then (zero: failed)
	held     map[string][]string // chunks to cancel on other nodes (job failed)
	jobEnded bool
}

// endLease ends the running chunk c's lease without a result (failure or
// expiry): back to pending when retryable and attempts remain (after a
// backoff, or at once for a hand-back), otherwise the chunk fails and so
// does its job, whose other chunks are stopped. The caller holds the job's
// and chunk's locks.
func (s *Service) endLease(ctx context.Context, tx Tx, j Job, c Chunk, msg string, retryable, handBack bool, now time.Time) (endOutcome, error) {
	holder := c.NodeID
	j.Chunks.Running--
	j.UpdatedAt = now
	c.Error = msg
	c.Deadline = time.Time{}
	c.UpdatedAt = now
	var o endOutcome
	// Node counts last (lock order job, chunks, nodes by id).
	free := map[string]int{holder: 1}
	if retryable && c.Attempts < s.cfg.MaxAttempts {
		c.Status = ChunkPending
		c.NodeID, c.LeaseID, c.Done = "", "", 0
		c.AvailableAt = now
		if !handBack {
			c.AvailableAt = now.Add(s.backoff(c.Attempts))
		}
		j.Chunks.Pending++
		o.retryAt = c.AvailableAt
		if err := tx.UpdateChunk(ctx, c); err != nil {
			return endOutcome{}, err
		}
		if err := freeNodes(ctx, tx, free); err != nil {
			return endOutcome{}, err
		}
	} else {
		c.Status = ChunkFailed
		j.Chunks.Failed++
		if err := tx.UpdateChunk(ctx, c); err != nil {
			return endOutcome{}, err
		}
		held, err := s.stopChunks(ctx, tx, &j, now, free)
		if err != nil {
			return endOutcome{}, err
		}
		j.Status, j.FinishedAt = JobFailed, now
		j.Error = fmt.Sprintf("chunk %d failed after %d attempt(s): %s", c.Index, c.Attempts, msg)
		o.held, o.jobEnded = held, true
	}
	if err := tx.UpdateJob(ctx, &j); err != nil {
		return endOutcome{}, err
	}
	o.job = j
	return o, nil
}

// afterEnd publishes and wakes after a committed endLease.
func (s *Service) afterEnd(o endOutcome) {
	if o.jobEnded {
		s.metrics.failed.Inc()
		s.sendCancels(o.job.ID, o.held)
		s.jobEvent(EventFailed, o.job, nil)
		s.kickAssign()
		s.notifyStore()
		return
	}
	s.metrics.retried.Inc()
	s.armAvail(o.retryAt)
	s.kickAssign() // the node's slot is free for other chunks
	s.jobProgressed(o.job)
}

// ProgressChunk records done iterations of a running chunk and extends its
// lease; it returns the new deadline. Errors as CompleteChunk.
func (s *Service) ProgressChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, done int64) (time.Time, error) {
	if err := s.chunkArgs(key, chunkID, leaseID); err != nil {
		return time.Time{}, err
	}
	if done < 0 {
		return time.Time{}, invalid("done", "must not be negative")
	}
	now := s.now()
	var j Job
	var c Chunk
	err := s.store.InTx(ctx, func(tx Tx) error {
		var nodeID string
		var err error
		nodeID, j, c, err = s.locked(ctx, tx, key, chunkID)
		if err != nil {
			return err
		}
		h, err := checkHolder(ctx, tx, c, nodeID, leaseID)
		if err != nil {
			return err
		}
		if h == alreadyCompleted {
			return ErrLeaseLost.With("lease lost: the chunk is completed")
		}
		c.Done = min(done, c.Iterations)
		if d := now.Add(s.cfg.Lease); d.After(c.Deadline) {
			c.Deadline = d
		}
		c.UpdatedAt = now
		return tx.UpdateChunk(ctx, c)
	})
	if err != nil {
		return time.Time{}, storeErr(err, ErrChunkNotFound)
	}
	s.jobEvent(EventProgress, j, &ChunkProgress{ID: c.ID, Done: c.Done, Iterations: c.Iterations})
	return c.Deadline, nil
}

// expirePass puts back chunks whose lease expired (one transaction per
// chunk, re-checked under its locks) and re-arms the lease timer for the
// next deadline.
func (s *Service) expirePass() {
	ctx := s.ctx
	for {
		now := s.now()
		var due []Chunk
		err := s.store.InTx(ctx, func(tx Tx) (err error) {
			due, err = tx.ExpiredChunks(ctx, now, s.cfg.AssignBatch)
			return err
		})
		if err != nil {
			s.loopError("read expired leases", err)
			return
		}
		for _, d := range due {
			var o endOutcome
			var expired bool
			var nodeID string
			err := s.store.InTx(ctx, func(tx Tx) error {
				expired = false
				j, err := tx.JobForUpdate(ctx, d.JobID)
				if err != nil {
					return err
				}
				c, err := tx.ChunkForUpdate(ctx, d.ID)
				if err != nil {
					return err
				}
				if c.Status != ChunkRunning || c.Deadline.After(now) {
					return nil // completed, extended or expired by another process
				}
				expired, nodeID = true, c.NodeID
				o, err = s.endLease(ctx, tx, j, c, "lease expired", true, false, now)
				return err
			})
			if err != nil {
				s.loopError("expire lease", err)
				return
			}
			if expired {
				s.metrics.expired.Inc()
				// The node may still run it: tell it to stop; its late
				// completion would be refused (lease lost) anyway.
				s.sendCancels(d.JobID, map[string][]string{nodeID: {d.ID}})
				s.afterEnd(o)
				s.nodesChanged(nodeID)
			}
		}
		if len(due) < s.cfg.AssignBatch {
			break
		}
	}
	var lease, avail time.Time
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		lease, avail, err = tx.NextDeadline(ctx, s.now())
		return err
	})
	if err != nil {
		s.loopError("read next deadline", err)
		return
	}
	s.armLease(lease)
	s.armAvail(avail)
}

// loopError logs a failed background step unless the Service is stopping;
// the safety sweep retries it.
func (s *Service) loopError(what string, err error) {
	if s.ctx.Err() != nil {
		return
	}
	s.log.Error(what+" failed", "error", err)
}
