package scheduler

import (
	"context"
	"errors"
	"time"
)

// Store keeps nodes, jobs, chunks and leases durably. Implementations:
// internal/store/sqlite (one process) and internal/store/postgres (several
// processes sharing the work). Package schedtest is the conformance suite
// both pass.
//
// All state changes of the Service run inside InTx, so the scheduling
// rules live once, in the Service; a Store only reads and writes rows.
type Store interface {
	// InTx runs fn in one transaction and commits when fn returns nil; any
	// error rolls back. Stores that may abort a transaction for a conflict
	// (PostgreSQL deadlock or serialisation failure) retry fn, so fn must
	// have no effects outside tx. Transactions of one Store may run
	// concurrently.
	InTx(ctx context.Context, fn func(Tx) error) error
	// Notify tells the other processes sharing the store that work may be
	// available (a new job, a freed chunk); a no-op for single-process
	// stores.
	Notify(ctx context.Context) error
	// Wakeups delivers a value (coalesced) whenever another process
	// called Notify; nil for single-process stores. The channel is owned by
	// the Store and closed by Close.
	Wakeups() <-chan struct{}
}

// ErrDuplicate is returned by Tx inserts that break a unique key (a node
// key registered concurrently).
var ErrDuplicate = errors.New("scheduler store: duplicate key")

// ErrNoRows is returned by Tx reads of one row that find none.
var ErrNoRows = errors.New("scheduler store: no rows")

// Tx is one store transaction. Lock order (PostgreSQL row locks): a job,
// then its chunks, then nodes in ascending id order; every Service
// operation follows it. Methods ending in ForUpdate lock the row until the
// transaction ends (SQLite serialises writers, so they are plain reads
// there). Reads of one row return ErrNoRows when there is none.
type Tx interface {
	// Nodes.

	InsertNode(ctx context.Context, n Node) error // ErrDuplicate on a known id or key
	NodeByKey(ctx context.Context, key []byte) (Node, error)
	NodeForUpdate(ctx context.Context, id string) (Node, error)
	NodeByClaimCodeForUpdate(ctx context.Context, code string) (Node, error)
	// UpdateNode writes every field of n except ID, PublicKey, CreatedAt
	// and Running (changed only by AddRunning), Draining, Instance and
	// RegisteredAt included.
	// It adds 1 to the row's RowVersion and sets n.RowVersion to the new
	// value.
	UpdateNode(ctx context.Context, n *Node) error
	// AddRunning adds delta to a node's running count; with limit > 0 it
	// changes nothing and reports false when the result would exceed
	// limit or the node is draining. The update is atomic (guarded), so
	// concurrent processes never lease a node beyond its capacity, nor
	// after a transaction marking it draining committed.
	AddRunning(ctx context.Context, nodeID string, delta, limit int) (bool, error)
	// Nodes lists claimed and unclaimed nodes: with ownerID set only that
	// owner's, with ids set only those; ordered by creation.
	Nodes(ctx context.Context, ownerID string, ids []string) ([]Node, error)
	// FreeNodes returns the claimed nodes among ids that are not draining
	// and have free capacity (running < Node.Capacity()), ordered by
	// creation.
	FreeNodes(ctx context.Context, ids []string) ([]Node, error)
	// CountDraining counts the draining nodes among ids (for the
	// draining gauge).
	CountDraining(ctx context.Context, ids []string) (int, error)
	// Grant records that the owner of nodeID lets userID's jobs run on it
	// (idempotent).
	Grant(ctx context.Context, nodeID, userID string, at time.Time) error
	// Grants returns, for each of nodeIDs with grants, the users granted.
	Grants(ctx context.Context, nodeIDs []string) (map[string][]string, error)

	// Jobs.

	InsertJob(ctx context.Context, j Job) error
	// InsertChunks adds a job's chunks (status pending).
	InsertChunks(ctx context.Context, cs []Chunk) error
	Job(ctx context.Context, id string) (Job, error)
	JobForUpdate(ctx context.Context, id string) (Job, error)
	// UpdateJob writes Status, Chunks, IterationsDone, Result, Error,
	// UpdatedAt and FinishedAt.
	// It adds 1 to the row's RowVersion and sets j.RowVersion to the new
	// value.
	UpdateJob(ctx context.Context, j *Job) error
	// Jobs lists jobs newest first: ownerID "" = everyone's, status "" =
	// any; at most limit.
	Jobs(ctx context.Context, ownerID string, status JobStatus, limit int) ([]Job, error)
	// CountJobs counts all jobs by status (for the jobs gauge).
	CountJobs(ctx context.Context) (map[JobStatus]int, error)
	// RunnableJobs lists jobs that are pending or running with pending
	// chunks, highest priority first, then oldest; at most limit.
	RunnableJobs(ctx context.Context, limit int) ([]Job, error)

	// Chunks.

	Chunk(ctx context.Context, id string) (Chunk, error)
	ChunkForUpdate(ctx context.Context, id string) (Chunk, error)
	// UpdateChunk writes every field of c except ID, JobID, Index,
	// Iterations, SeedOffset and CreatedAt.
	UpdateChunk(ctx context.Context, c Chunk) error
	// LeaseChunk assigns a pending chunk whose AvailableAt is not after
	// now: status running, NodeID, LeaseID, Deadline, Attempts+1. It is
	// guarded (and on PostgreSQL skips rows locked by others), reporting
	// false when the chunk is no longer pending or available.
	LeaseChunk(ctx context.Context, chunkID, nodeID, leaseID string, deadline, now time.Time) (bool, error)
	// PendingChunks returns up to limit pending chunks of job whose
	// AvailableAt is not after now, in index order.
	PendingChunks(ctx context.Context, jobID string, now time.Time, limit int) ([]Chunk, error)
	// ChunksOfJob returns the job's chunks in status (all when status is
	// ""), in index order.
	ChunksOfJob(ctx context.Context, jobID string, status ChunkStatus) ([]Chunk, error)
	// CancelChunks sets every chunk of jobID in status to cancelled (a bulk
	// update; the caller adjusts job and node counters) and returns how
	// many changed.
	CancelChunks(ctx context.Context, jobID string, status ChunkStatus, now time.Time) (int, error)
	// RunningChunks returns the chunks leased to nodeID, in assignment
	// order.
	RunningChunks(ctx context.Context, nodeID string) ([]Chunk, error)
	// ExtendLeases sets the deadline of every running chunk of nodeID to
	// deadline when that is later, and returns how many it touched.
	ExtendLeases(ctx context.Context, nodeID string, deadline time.Time) (int, error)
	// ExpiredChunks returns up to limit running chunks whose deadline is
	// not after now.
	ExpiredChunks(ctx context.Context, now time.Time, limit int) ([]Chunk, error)
	// NextDeadline returns the earliest running chunk's deadline and the
	// earliest future AvailableAt of a pending chunk (zero when none).
	NextDeadline(ctx context.Context, now time.Time) (lease, available time.Time, err error)

	// Leases: every lease ever granted, so a completion can tell "another
	// node" (not owner) from "your lease expired" (lease lost).

	InsertLease(ctx context.Context, leaseID, chunkID, nodeID string, at time.Time) error
	// LeaseHolder returns the node and chunk of a lease (ErrNoRows when
	// unknown).
	LeaseHolder(ctx context.Context, leaseID string) (nodeID, chunkID string, err error)
	// LeasedAt returns when a lease was granted (InsertLease's at;
	// ErrNoRows when unknown).
	LeasedAt(ctx context.Context, leaseID string) (time.Time, error)
	// HeldBefore reports whether nodeID ever held a lease on chunkID.
	HeldBefore(ctx context.Context, chunkID, nodeID string) (bool, error)
}
