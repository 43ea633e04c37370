package scheduler

import (
	"context"
	"sort"
)

// batchTx is the Tx of one group commit: the job rows the completions of
// the batch read and write stay in memory until flush writes each once,
// and node running-count decrements are summed per node. The deferred
// writes cannot race anyone: on a store that serialises transactions
// nothing else runs; on PostgreSQL each job row is locked (JobForUpdate)
// until the batch commits, and the node decrements are unguarded sums
// written in id order at the end.
type batchTx struct {
	Tx
	jobs    map[string]Job
	base    map[string]int64 // RowVersion of each job as read
	dirty   map[string]bool
	running map[string]int
}

func newBatchTx(tx Tx) *batchTx {
	return &batchTx{Tx: tx, jobs: map[string]Job{}, base: map[string]int64{}, dirty: map[string]bool{}, running: map[string]int{}}
}

func (b *batchTx) Job(ctx context.Context, id string) (Job, error) { return b.JobForUpdate(ctx, id) }

func (b *batchTx) JobForUpdate(ctx context.Context, id string) (Job, error) {
	if j, ok := b.jobs[id]; ok {
		return j, nil
	}
	j, err := b.Tx.JobForUpdate(ctx, id)
	if err == nil {
		b.jobs[id] = j
		b.base[id] = j.RowVersion
	}
	return j, err
}

// UpdateJob defers the write; the row is written once by flush, so its
// RowVersion will be the version read plus one.
func (b *batchTx) UpdateJob(_ context.Context, j *Job) error {
	j.RowVersion = b.base[j.ID] + 1
	b.jobs[j.ID] = *j
	b.dirty[j.ID] = true
	return nil
}

func (b *batchTx) AddRunning(ctx context.Context, nodeID string, delta, limit int) (bool, error) {
	if limit <= 0 && delta < 0 {
		b.running[nodeID] += delta
		return true, nil
	}
	return b.Tx.AddRunning(ctx, nodeID, delta, limit)
}

// flush writes the deferred job rows and node counts (nodes in id order).
func (b *batchTx) flush(ctx context.Context) error {
	for id := range b.dirty {
		j := b.jobs[id]
		if err := b.Tx.UpdateJob(ctx, &j); err != nil {
			return err
		}
	}
	nodes := make([]string, 0, len(b.running))
	for id := range b.running {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	for _, id := range nodes {
		if _, err := b.Tx.AddRunning(ctx, id, b.running[id], 0); err != nil {
			return err
		}
	}
	return nil
}
