package scheduler

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Defaults of Config (the scheduler.* config keys).
const (
	DefaultLease          = 30 * time.Second
	DefaultMaxAttempts    = 5
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultChunkSize      = 1000
	DefaultMaxConfigBytes = 64 << 10
	DefaultMaxIterations  = 1_000_000_000
	DefaultAssignBatch    = 500
	DefaultSweepInterval  = 15 * time.Second
	DefaultListLimit      = 100
	MaxListLimit          = 1000
	// MaxNameLength bounds node names, hostnames, platforms and versions.
	MaxNameLength = 200
)

// Config configures a Service. Zero values mean the defaults above.
type Config struct {
	Store     Store          // required
	Publisher Publisher      // required (the hub)
	Presence  PresenceSource // required (the hub)
	Clock     clock.Clock    // nil = wall clock
	Logger    *slog.Logger   // nil = discard
	// Registerer receives the switchboard_scheduler_* metrics; nil = none.
	Registerer prometheus.Registerer

	// Lease is how long a node holds a chunk without completing it,
	// reporting progress or heartbeating.
	Lease time.Duration
	// MaxAttempts is how many leases a chunk gets before it fails.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the delay before an expired or
	// failed chunk is assigned again: base * 2^(attempt-1), capped at max,
	// with equal jitter (half fixed, half random).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ChunkSize is the iterations per chunk (the last takes the rest).
	ChunkSize int
	// MaxConfigBytes bounds a job's config JSON.
	MaxConfigBytes int
	// MaxIterations bounds a job's iterations.
	MaxIterations int64
	// AssignBatch bounds the chunks one assignment pass leases.
	AssignBatch int
	// SweepInterval is the period of the safety sweep (expired leases,
	// missed wake-ups, presence reconciliation); negative = none.
	SweepInterval time.Duration
}

// Service is the scheduler. Create it with New, start it with Run, stop it
// with Shutdown. The node and user API methods are safe for concurrent
// use; they fail with ErrStopped before Run and after Shutdown.
type Service struct {
	cfg   Config
	clock clock.Clock
	log   *slog.Logger
}

// New validates cfg, fills in defaults and returns a Service (not
// running).
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Presence == nil {
		return nil, errors.New("scheduler: Store, Publisher and Presence are required")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, clock: clock.OrReal(cfg.Clock), log: cfg.Logger.With("component", "scheduler")}
	return s, nil
}

func (c *Config) fill() error {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Lease, DefaultLease)
	set(&c.BackoffBase, DefaultBackoffBase)
	set(&c.BackoffMax, DefaultBackoffMax)
	set(&c.SweepInterval, DefaultSweepInterval)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxConfigBytes == 0 {
		c.MaxConfigBytes = DefaultMaxConfigBytes
	}
	if c.MaxIterations == 0 {
		c.MaxIterations = DefaultMaxIterations
	}
	if c.AssignBatch == 0 {
		c.AssignBatch = DefaultAssignBatch
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Lease < time.Second:
		return fmt.Errorf("scheduler: lease %v: must be at least 1s", c.Lease)
	case c.MaxAttempts < 1:
		return fmt.Errorf("scheduler: max_attempts %d: must be at least 1", c.MaxAttempts)
	case c.BackoffBase < 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("scheduler: backoff base %v / max %v: need 0 <= base <= max", c.BackoffBase, c.BackoffMax)
	case c.ChunkSize < 1:
		return fmt.Errorf("scheduler: chunk_size %d: must be at least 1", c.ChunkSize)
	case c.MaxConfigBytes < 2:
		return fmt.Errorf("scheduler: max_config_bytes %d: must be at least 2", c.MaxConfigBytes)
	case c.MaxIterations < 1:
		return fmt.Errorf("scheduler: max_iterations %d: must be at least 1", c.MaxIterations)
	case c.AssignBatch < 1:
		return fmt.Errorf("scheduler: assign_batch %d: must be at least 1", c.AssignBatch)
	}
	return nil
}

var errTODO = errs.New(errs.Unavailable, "scheduler: not implemented on this branch yet")

// Run subscribes to hub presence of nodes:online, reads the initial
// presence, and starts the assignment, lease and sweep loops; it returns
// once they run (it does not block). ctx bounds the start only. It fails
// when the channel namespaces lack the history or presence the scheduler
// needs.
func (s *Service) Run(ctx context.Context) error { return errTODO }

// Shutdown stops the loops and waits for them (or ctx). Held leases stay
// in the store: after a restart they are still valid until they expire.
// It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error { return nil }

// Node API. key is the node's Ed25519 public key, already verified by the
// signed-request check.

// RegisterNode records a node by key, or returns the known node of key
// (refreshing its reported info). Claimed nodes answer ClaimCode nil.
func (s *Service) RegisterNode(ctx context.Context, key ed25519.PublicKey, info NodeInfo) (Registration, error) {
	return Registration{}, errTODO
}

// Heartbeat records that the node is alive (status, if not empty, is what
// it reports), and extends the leases of the chunks it holds. Unclaimed
// or unknown nodes get ErrNodeNotClaimed.
func (s *Service) Heartbeat(ctx context.Context, key ed25519.PublicKey, status string) (NodeStatus, error) {
	return NodeStatus{}, errTODO
}

// Verify is Heartbeat without a status (the origin's node calls
// POST /nodes/verify).
func (s *Service) Verify(ctx context.Context, key ed25519.PublicKey) (NodeStatus, error) {
	return s.Heartbeat(ctx, key, "")
}

// NodeForToken returns the claimed node of key, for issuing its hub
// token; ErrNodeNotClaimed otherwise.
func (s *Service) NodeForToken(ctx context.Context, key ed25519.PublicKey) (Node, error) {
	return Node{}, errTODO
}

// CompleteChunk records the result of a chunk leased to the node. leaseID
// may be empty (the origin's nodes send none): then the node's current
// lease counts. A repeat by the node that completed it answers
// AlreadyCompleted; a node that never held the chunk gets ErrNotOwner; a
// node whose lease expired, was replaced or whose job ended gets
// ErrLeaseLost. The job's aggregate is computed exactly once, by the
// completion of its last chunk (JobComplete true).
func (s *Service) CompleteChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage) (Completion, error) {
	return Completion{}, errTODO
}

// FailChunk records that the node could not run a chunk. A retryable
// failure puts it back to pending after a backoff unless MaxAttempts is
// reached; otherwise the chunk and its job fail with f.Message. Errors as
// CompleteChunk.
func (s *Service) FailChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, f Failure) error {
	return errTODO
}

// ProgressChunk records done iterations of a running chunk and extends its
// lease; it returns the new deadline. Errors as CompleteChunk.
func (s *Service) ProgressChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, done int64) (time.Time, error) {
	return time.Time{}, errTODO
}

// AssignedChunks returns the chunks leased to the node now, as the
// messages of chunks:{nodeId}, so a node that (re)connects resumes them.
func (s *Service) AssignedChunks(ctx context.Context, key ed25519.PublicKey) ([]Assignment, error) {
	return nil, errTODO
}

// User API. Non-admin viewers act on their own jobs and nodes only.

// CreateJob validates spec, stores the job and its chunks and wakes the
// assigner. Errors are Invalid with the field named: "iterations",
// "config", "accessType", "priority".
func (s *Service) CreateJob(ctx context.Context, owner string, spec JobSpec) (Created, error) {
	return Created{}, errTODO
}

// Job returns a job the viewer may see (ErrJobNotFound otherwise).
func (s *Service) Job(ctx context.Context, v Viewer, id string) (Job, error) {
	return Job{}, errTODO
}

// Jobs lists the viewer's jobs (every job for admins), newest first.
func (s *Service) Jobs(ctx context.Context, v Viewer, q JobQuery) ([]Job, error) {
	return nil, errTODO
}

// CancelJob cancels a pending or running job: its pending and running
// chunks become cancelled and nodes holding chunks get a cancel message on
// nodes:{id}. A terminal job gets ErrNotCancellable.
func (s *Service) CancelJob(ctx context.Context, v Viewer, id string) (Job, error) {
	return Job{}, errTODO
}

// ClaimNode gives the unclaimed node with claim code (case-insensitive,
// '-' ignored) to user, with a name and maxParallel (0 = its enabled or
// total cores), and publishes its config on nodes:{id}.
// ErrUnknownClaimCode, ErrAlreadyClaimed, or Invalid naming "code",
// "name" or "maxParallel".
func (s *Service) ClaimNode(ctx context.Context, user, code, name string, maxParallel int) (Node, error) {
	return Node{}, errTODO
}

// Nodes lists the viewer's nodes (every node for admins) with their online
// state.
func (s *Service) Nodes(ctx context.Context, v Viewer) ([]Node, error) {
	return nil, errTODO
}

// GrantNode lets userID's "user" jobs run on nodeID, which the viewer must
// own (or be admin). ErrNodeNotFound, ErrNotYours, Invalid "userId".
func (s *Service) GrantNode(ctx context.Context, v Viewer, nodeID, userID string) error {
	return errTODO
}
