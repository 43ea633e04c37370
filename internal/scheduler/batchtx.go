package scheduler

import (
	"context"
	"sort"
)

// batchTx is the Tx of one group commit: the job rows the completions of
// the batch read and write stay in memory until flush writes each once,
// and node running-count decrements are summed per node. It is used only
// on stores that serialise transactions, where the deferred writes cannot
// race anyone.
type batchTx struct {
	Tx
	jobs    map[string]Job
	dirty   map[string]bool
	running map[string]int
}

func newBatchTx(tx Tx) *batchTx {
	return &batchTx{Tx: tx, jobs: map[string]Job{}, dirty: map[string]bool{}, running: map[string]int{}}
}

func (b *batchTx) Job(ctx context.Context, id string) (Job, error) { return b.JobForUpdate(ctx, id) }

func (b *batchTx) JobForUpdate(ctx context.Context, id string) (Job, error) {
	if j, ok := b.jobs[id]; ok {
		return j, nil
	}
	j, err := b.Tx.JobForUpdate(ctx, id)
	if err == nil {
		b.jobs[id] = j
	}
	return j, err
}

func (b *batchTx) UpdateJob(_ context.Context, j Job) error {
	b.jobs[j.ID] = j
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
		if err := b.Tx.UpdateJob(ctx, b.jobs[id]); err != nil {
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
