package scheduler

import (
	"context"
	"sort"
	"time"

	"github.com/google/uuid"
)

// maxRunnableJobs bounds the jobs one assignment pass considers.
const maxRunnableJobs = 1000

// planned is one chunk the pass means to lease to a node.
type planned struct {
	chunk Chunk
	node  Node
}

// maxReplans bounds the passes assignPass repeats in a row because a
// planned lease was refused.
const maxReplans = 3

// assignPass leases pending chunks to eligible online nodes and publishes
// them; it repeats while it fills a whole batch, and (up to maxReplans
// times in a row) when a planned lease was refused because the node
// filled or drained, or the chunk was taken, since the plan: a fresh plan
// gives the chunk to another free node now, not at the next sweep.
func (s *Service) assignPass() {
	replans := 0
	for s.ctx.Err() == nil {
		n, full, refused := s.assignOnce()
		switch {
		case refused && replans < maxReplans:
			replans++
		case full && n > 0:
			replans = 0
		default:
			return
		}
	}
}

// assignOnce plans one batch from a consistent read and leases it job by
// job (leaseIn: guarded, so a concurrent process or a cancel in between
// only makes some leases fail), then publishes what it leased
// (publishLeased). On a store that serialises transactions the plan and
// the leases share one transaction; elsewhere each job's leases get their
// own (one job lock per transaction keeps the lock order). It returns how
// many chunks it assigned, whether the batch was full and whether a
// planned lease was refused.
func (s *Service) assignOnce() (assigned int, full, refused bool) {
	ctx := s.ctx
	online := s.onlineIDs()
	if len(online) == 0 {
		return 0, false, false
	}
	now := s.now()
	var plan map[string][]planned
	var order []string
	var jobs map[string]Job
	var ls []leased
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		ls = ls[:0]
		if plan, order, jobs, full, err = s.plan(ctx, tx, online, now); err != nil || !s.serialized {
			return err
		}
		for _, id := range order {
			l, err := s.leaseIn(ctx, tx, jobs[id], plan[id], now)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		return nil
	})
	if err != nil {
		s.loopError("plan assignments", err)
		return 0, false, false
	}
	if !s.serialized {
		for _, id := range order {
			var l leased
			err := s.store.InTx(ctx, func(tx Tx) (err error) {
				l, err = s.leaseIn(ctx, tx, jobs[id], plan[id], s.now())
				return err
			})
			if err != nil {
				s.loopError("lease chunks", err)
				break
			}
			ls = append(ls, l)
		}
	}
	for _, l := range ls {
		assigned += s.publishLeased(l)
		refused = refused || l.refused > 0
	}
	return assigned, full, refused
}

// plan chooses, from one consistent read, which pending chunks go to which
// eligible online node that has free capacity and is not draining: jobs
// by priority then age, each chunk to the node with the most free
// capacity, at most AssignBatch chunks (full reports that the batch
// filled).
func (s *Service) plan(ctx context.Context, tx Tx, online []string, now time.Time) (plan map[string][]planned, order []string, jobs map[string]Job, full bool, err error) {
	plan, jobs = map[string][]planned{}, map[string]Job{}
	nodes, err := tx.FreeNodes(ctx, online)
	if err != nil {
		return nil, nil, nil, false, err
	}
	var live []*Node
	ids := make([]string, 0, len(nodes))
	for i := range nodes {
		if nodes[i].Claimed() && !nodes[i].Draining && nodes[i].Free() > 0 {
			live = append(live, &nodes[i])
			ids = append(ids, nodes[i].ID)
		}
	}
	if len(live) == 0 {
		return plan, order, jobs, full, nil
	}
	grants, err := tx.Grants(ctx, ids)
	if err != nil {
		return nil, nil, nil, false, err
	}
	granted := map[string]map[string]bool{}
	for node, users := range grants {
		m := map[string]bool{}
		for _, u := range users {
			m[u] = true
		}
		granted[node] = m
	}
	runnable, err := tx.RunnableJobs(ctx, maxRunnableJobs)
	if err != nil {
		return nil, nil, nil, false, err
	}
	budget := s.cfg.AssignBatch
	for _, j := range runnable {
		if budget == 0 {
			full = true
			break
		}
		var eligible []*Node
		free := 0
		for _, n := range live {
			if n.Free() > 0 && eligibleFor(j, n, granted[n.ID]) {
				eligible = append(eligible, n)
				free += n.Free()
			}
		}
		if free == 0 {
			continue
		}
		want := min(free, budget, j.Chunks.Pending)
		cs, err := tx.PendingChunks(ctx, j.ID, now, want)
		if err != nil {
			return nil, nil, nil, false, err
		}
		for _, c := range cs {
			best := mostFree(eligible)
			if best == nil {
				break
			}
			plan[j.ID] = append(plan[j.ID], planned{chunk: c, node: *best})
			best.Running++
			budget--
		}
		if len(plan[j.ID]) > 0 {
			order = append(order, j.ID)
			jobs[j.ID] = j
		}
	}
	return plan, order, jobs, full, nil
}

// eligibleFor reports whether node n may run job j's chunks: the owner's
// nodes always, any node for public jobs, nodes granted to the owner for
// user jobs.
func eligibleFor(j Job, n *Node, granted map[string]bool) bool {
	switch {
	case n.OwnerID == j.OwnerID:
		return true
	case j.AccessType == AccessPublic:
		return true
	case j.AccessType == AccessUser:
		return granted[j.OwnerID]
	}
	return false
}

// mostFree returns the node with the most free capacity (ties: fewer
// running, then smaller id), nil when none has any.
func mostFree(nodes []*Node) *Node {
	var best *Node
	for _, n := range nodes {
		f := n.Free()
		if f == 0 {
			continue
		}
		if best == nil || f > best.Free() || f == best.Free() && (n.Running < best.Running || n.Running == best.Running && n.ID < best.ID) {
			best = n
		}
	}
	return best
}

// leased is what one job's leasing transaction granted.
type leased struct {
	job   Job
	won   []Assignment
	nodes []string    // holder of won[i]
	since []time.Time // when won[i] became assignable
	// refused counts the planned chunks the guards refused (node full or
	// draining, chunk no longer pending).
	refused int
}

// leaseIn leases job j's planned chunks inside tx: job locked, nodes in id
// order, node capacity, draining and chunk state guarded (AddRunning with a
// limit, LeaseChunk), every lease recorded; it writes the job's counters.
func (s *Service) leaseIn(ctx context.Context, tx Tx, j Job, plan []planned, now time.Time) (leased, error) {
	sort.SliceStable(plan, func(a, b int) bool { return plan[a].node.ID < plan[b].node.ID }) // lock order
	deadline := now.Add(s.cfg.Lease)
	var l leased
	job, err := tx.JobForUpdate(ctx, j.ID)
	if err != nil {
		return l, err
	}
	if job.Status.Terminal() {
		l.refused = len(plan) // ended since the plan: its nodes may serve other jobs
		return l, nil
	}
	for _, p := range plan {
		ok, err := tx.AddRunning(ctx, p.node.ID, 1, p.node.Capacity())
		if err != nil {
			return l, err
		}
		if !ok {
			l.refused++ // full (another process leased to it) or draining since the plan
			continue
		}
		lease := uuid.NewString()
		ok, err = tx.LeaseChunk(ctx, p.chunk.ID, p.node.ID, lease, deadline, now)
		if err != nil {
			return l, err
		}
		if !ok {
			if _, err := tx.AddRunning(ctx, p.node.ID, -1, 0); err != nil {
				return l, err
			}
			l.refused++
			continue
		}
		if err := tx.InsertLease(ctx, lease, p.chunk.ID, p.node.ID, now); err != nil {
			return l, err
		}
		c := p.chunk
		c.LeaseID, c.Deadline, c.NodeID = lease, deadline, p.node.ID
		l.won = append(l.won, assignmentOf(job, c))
		l.nodes = append(l.nodes, p.node.ID)
		l.since = append(l.since, p.chunk.AvailableAt)
	}
	if len(l.won) == 0 {
		return l, nil
	}
	job.Chunks.Pending -= len(l.won)
	job.Chunks.Running += len(l.won)
	if job.Status == JobPending {
		job.Status = JobRunning
	}
	job.UpdatedAt = now
	l.job = job
	return l, tx.UpdateJob(ctx, &job)
}

// publishLeased publishes committed leases to chunks:{nodeId}. A lease
// whose publication fails is rolled back (guarded by its lease id) and the
// chunk is pending again after BackoffBase; if even that fails, the lease
// expires and the chunk is reassigned. Nothing is lost either way.
func (s *Service) publishLeased(l leased) int {
	if len(l.won) == 0 {
		return 0
	}
	s.armLease(l.won[0].Deadline)
	sent := 0
	for i, a := range l.won {
		if err := s.publish(s.ctx, ChunksChannel(l.nodes[i]), a); err != nil {
			s.metrics.publishFailures.Inc()
			s.log.Warn("publish assignment failed; rolling the lease back", "chunk", a.ID, "node", l.nodes[i], "error", err)
			s.unassign(a, l.nodes[i])
			continue
		}
		sent++
		s.metrics.assigned.Inc()
		s.metrics.latency.Observe(max(0, s.clock.Now().Sub(l.since[i]).Seconds()))
	}
	if sent > 0 {
		s.jobProgressed(l.job)
	}
	s.nodesChanged(uniq(l.nodes)...)
	return sent
}

// unassign rolls back a lease whose assignment could not be published:
// the chunk is pending again (attempt not counted) after BackoffBase.
func (s *Service) unassign(a Assignment, nodeID string) {
	ctx := s.ctx
	now := s.now()
	avail := now.Add(s.cfg.BackoffBase)
	err := s.store.InTx(ctx, func(tx Tx) error {
		j, err := tx.JobForUpdate(ctx, a.JobID)
		if err != nil {
			return err
		}
		c, err := tx.ChunkForUpdate(ctx, a.ID)
		if err != nil {
			return err
		}
		if c.Status != ChunkRunning || c.LeaseID != a.LeaseID {
			return nil
		}
		if _, err := tx.AddRunning(ctx, nodeID, -1, 0); err != nil {
			return err
		}
		c.Status, c.NodeID, c.LeaseID, c.Deadline = ChunkPending, "", "", time.Time{}
		c.Attempts--
		c.AvailableAt, c.UpdatedAt = avail, now
		c.Error = "assignment could not be published"
		if err := tx.UpdateChunk(ctx, c); err != nil {
			return err
		}
		j.Chunks.Running--
		j.Chunks.Pending++
		j.UpdatedAt = now
		return tx.UpdateJob(ctx, &j)
	})
	if err != nil {
		s.loopError("roll back unpublished lease (it will expire)", err)
		return
	}
	s.armAvail(avail)
}

func uniq(ids []string) []string {
	seen := map[string]bool{}
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
