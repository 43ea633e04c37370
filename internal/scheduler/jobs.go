package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// MaxPriority bounds |priority|.
const MaxPriority = 1_000_000

// SplitJob returns the chunks of a job of iterations: chunkSize each, the
// last one the remainder, chunk i starting at seed offset i*chunkSize.
func SplitJob(jobID string, iterations int64, chunkSize int, now time.Time) []Chunk {
	size := int64(chunkSize)
	n := (iterations + size - 1) / size
	cs := make([]Chunk, 0, n)
	for i := int64(0); i < n; i++ {
		it := size
		if rest := iterations - i*size; rest < size {
			it = rest
		}
		cs = append(cs, Chunk{
			ID: uuid.NewString(), JobID: jobID, Index: int(i), Iterations: it, SeedOffset: i * size,
			Status: ChunkPending, AvailableAt: now, CreatedAt: now, UpdatedAt: now,
		})
	}
	return cs
}

func (s *Service) validateSpec(owner string, spec *JobSpec) (canonical []byte, hash string, err error) {
	if owner == "" {
		return nil, "", errs.New(errs.Unauthorized, "no user")
	}
	if err := checkText("user", owner); err != nil {
		return nil, "", err
	}
	if spec.Iterations <= 0 {
		return nil, "", invalid("iterations", "must be a positive integer")
	}
	if spec.Iterations > s.cfg.MaxIterations {
		return nil, "", invalid("iterations", fmt.Sprintf("at most %d", s.cfg.MaxIterations))
	}
	if len(spec.Config) == 0 {
		return nil, "", invalid("config", "required")
	}
	if len(spec.Config) > s.cfg.MaxConfigBytes {
		return nil, "", &errs.Error{Code: errs.Invalid, Reason: ReasonConfigTooLarge, Message: fmt.Sprintf("config: larger than %d bytes", s.cfg.MaxConfigBytes)}
	}
	canonical, err = Canonicalize(spec.Config)
	if err != nil {
		return nil, "", invalid("config", err.Error())
	}
	if spec.AccessType == "" {
		spec.AccessType = AccessPrivate
	}
	if !spec.AccessType.Valid() {
		return nil, "", invalid("accessType", "must be private, public or user")
	}
	if spec.Priority < -MaxPriority || spec.Priority > MaxPriority {
		return nil, "", invalid("priority", fmt.Sprintf("must be between %d and %d", -MaxPriority, MaxPriority))
	}
	hash, _ = ConfigHash(canonical)
	return canonical, hash, nil
}

// CreateJob validates spec, stores the job and its chunks and wakes the
// assigner. Errors are Invalid with the field named: "iterations",
// "config", "accessType", "priority".
func (s *Service) CreateJob(ctx context.Context, owner string, spec JobSpec) (Created, error) {
	if err := s.running(); err != nil {
		return Created{}, err
	}
	config, hash, err := s.validateSpec(owner, &spec)
	if err != nil {
		return Created{}, err
	}
	now := s.now()
	j := Job{
		ID: uuid.NewString(), OwnerID: owner, Status: JobPending, AccessType: spec.AccessType,
		Priority: spec.Priority, Iterations: spec.Iterations, ConfigHash: hash, Config: json.RawMessage(config),
		CreatedAt: now, UpdatedAt: now,
	}
	chunks := SplitJob(j.ID, j.Iterations, s.cfg.ChunkSize, now)
	j.Chunks = ChunkCounts{Total: len(chunks), Pending: len(chunks)}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.InsertJob(ctx, j); err != nil {
			return err
		}
		return tx.InsertChunks(ctx, chunks)
	})
	if err != nil {
		return Created{}, storeErr(err, nil)
	}
	s.kickAssign()
	s.notifyStore()
	s.jobFeed(j)
	return Created{JobID: j.ID, Chunks: len(chunks), ConfigHash: hash}, nil
}

// notifyStore wakes other processes sharing the store.
func (s *Service) notifyStore() {
	if err := s.store.Notify(s.ctx); err != nil && s.ctx.Err() == nil {
		s.log.Warn("store notify failed", "error", err)
	}
}

// Job returns a job the viewer may see (ErrJobNotFound otherwise).
func (s *Service) Job(ctx context.Context, v Viewer, id string) (Job, error) {
	if err := s.running(); err != nil {
		return Job{}, err
	}
	var j Job
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		j, err = tx.Job(ctx, id)
		return err
	})
	if err != nil {
		return Job{}, storeErr(err, ErrJobNotFound)
	}
	if !v.may(j.OwnerID) {
		return Job{}, ErrJobNotFound
	}
	return j, nil
}

// Jobs lists the viewer's jobs (every job for admins), newest first.
func (s *Service) Jobs(ctx context.Context, v Viewer, q JobQuery) ([]Job, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	if !v.Admin && v.UserID == "" {
		return nil, errs.New(errs.Unauthorized, "no user")
	}
	switch q.Status {
	case "", JobPending, JobRunning, JobCompleted, JobFailed, JobCancelled:
	default:
		return nil, invalid("status", "must be pending, running, completed, failed or cancelled")
	}
	if q.Limit < 0 || q.Limit > MaxListLimit {
		return nil, invalid("limit", fmt.Sprintf("must be between 1 and %d", MaxListLimit))
	}
	if q.Limit == 0 {
		q.Limit = DefaultListLimit
	}
	owner := v.UserID
	if v.Admin {
		owner = ""
	}
	var jobs []Job
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		jobs, err = tx.Jobs(ctx, owner, q.Status, q.Limit)
		return err
	})
	if err != nil {
		return nil, storeErr(err, nil)
	}
	if jobs == nil {
		jobs = []Job{}
	}
	return jobs, nil
}

// CancelJob cancels a pending or running job: its pending and running
// chunks become cancelled and nodes holding chunks get a cancel message on
// nodes:{id}. A terminal job gets ErrNotCancellable.
func (s *Service) CancelJob(ctx context.Context, v Viewer, id string) (Job, error) {
	if err := s.running(); err != nil {
		return Job{}, err
	}
	now := s.now()
	var j Job
	var held map[string][]string
	err := s.store.InTx(ctx, func(tx Tx) error {
		var err error
		j, err = tx.JobForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if !v.may(j.OwnerID) {
			return ErrJobNotFound
		}
		if j.Status.Terminal() {
			return ErrNotCancellable.With(fmt.Sprintf("job not cancellable: it is %s", j.Status))
		}
		j.Status = JobCancelled
		j.FinishedAt = now
		held, err = s.stopChunks(ctx, tx, &j, now, map[string]int{})
		if err != nil {
			return err
		}
		return tx.UpdateJob(ctx, j)
	})
	if err != nil {
		return Job{}, storeErr(err, ErrJobNotFound)
	}
	s.sendCancels(j.ID, held)
	s.jobEvent(EventCancelled, j, nil)
	if len(held) > 0 {
		s.kickAssign()
		s.notifyStore()
	}
	return j, nil
}

// stopChunks cancels the pending and running chunks of a job that ends
// (cancelled or failed), frees the nodes holding them (plus the slots
// already in free) and returns which chunks each node held. j's counters
// are updated; the caller writes j.
func (s *Service) stopChunks(ctx context.Context, tx Tx, j *Job, now time.Time, free map[string]int) (map[string][]string, error) {
	running, err := tx.ChunksOfJob(ctx, j.ID, ChunkRunning)
	if err != nil {
		return nil, err
	}
	np, err := tx.CancelChunks(ctx, j.ID, ChunkPending, now)
	if err != nil {
		return nil, err
	}
	nr, err := tx.CancelChunks(ctx, j.ID, ChunkRunning, now)
	if err != nil {
		return nil, err
	}
	held := map[string][]string{}
	for _, c := range running {
		held[c.NodeID] = append(held[c.NodeID], c.ID)
		free[c.NodeID]++
	}
	if err := freeNodes(ctx, tx, free); err != nil {
		return nil, err
	}
	j.Chunks.Pending -= np
	j.Chunks.Running -= nr
	j.Chunks.Cancelled += np + nr
	j.UpdatedAt = now
	return held, nil
}

// freeNodes takes slots (node id → count) back from nodes, in id order
// (the lock order), after every chunk write of the transaction.
func freeNodes(ctx context.Context, tx Tx, free map[string]int) error {
	ids := make([]string, 0, len(free))
	for id := range free {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if free[id] == 0 || id == "" {
			continue
		}
		if _, err := tx.AddRunning(ctx, id, -free[id], 0); err != nil {
			return err
		}
	}
	return nil
}

// AggregateResults combines chunk results as the origin did (iteration-
// weighted mean of meanDps, min of minDps, max of maxDps, total
// iterations, chunks) plus the pooled standard deviation:
// sqrt((Σ (n_i−1)s_i² + n_i(μ_i−μ)²) / (N−1)). Results are combined in the
// order given (the stores give chunk index order), so the figures do not
// depend on completion order. It returns nil when rs is empty.
func AggregateResults(rs []ChunkResult) *Aggregate {
	if len(rs) == 0 {
		return nil
	}
	a := &Aggregate{MinDps: math.Inf(1), MaxDps: math.Inf(-1)}
	var weighted float64
	for _, r := range rs {
		a.TotalIterations += r.Iterations
		weighted += r.MeanDps * float64(r.Iterations)
		a.MinDps = math.Min(a.MinDps, r.MinDps)
		a.MaxDps = math.Max(a.MaxDps, r.MaxDps)
		a.ChunksCompleted++
	}
	n := float64(a.TotalIterations)
	a.MeanDps = weighted / n
	if a.TotalIterations > 1 {
		var ss float64
		for _, r := range rs {
			ni := float64(r.Iterations)
			d := r.MeanDps - a.MeanDps
			ss += (ni-1)*r.StdDps*r.StdDps + ni*d*d
		}
		a.StdDps = math.Sqrt(ss / (n - 1))
	}
	return a
}

// aggregateJob combines the results of a job's completed chunks that have
// the aggregatable shape.
func aggregateJob(ctx context.Context, tx Tx, jobID string) (*Aggregate, error) {
	cs, err := tx.ChunksOfJob(ctx, jobID, ChunkCompleted)
	if err != nil {
		return nil, err
	}
	rs := make([]ChunkResult, 0, len(cs))
	for _, c := range cs {
		if r, ok, err := DecodeResult(c.Result); err == nil && ok {
			rs = append(rs, r)
		}
	}
	return AggregateResults(rs), nil
}
