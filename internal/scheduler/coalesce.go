package scheduler

import "time"

// DefaultProgressInterval is how often coalesced progress events and node
// feed updates are published.
const DefaultProgressInterval = 100 * time.Millisecond

// Progress of a job (a chunk completed or retried, leases granted) and a
// node's running count change at the rate chunks complete: thousands per
// second. They are coalesced: the job or node is marked, and at most every
// ProgressInterval the marked ones are read from the store and published
// (a progress event on jobs:{id} plus the feeds, the node on the feeds).
// Terminal job events (completed, failed, cancelled), chunk progress
// reports and node registrations/claims publish at once. evMu orders a
// flush against terminal events: a flush reads and publishes under it, so
// no stale progress follows a job's terminal event.

// jobProgressed publishes j's progress now (ProgressInterval < 0) or
// marks it for the next flush.
func (s *Service) jobProgressed(j Job) {
	if s.cfg.ProgressInterval < 0 {
		s.jobEvent(EventProgress, j, nil)
		return
	}
	s.dirtyMu.Lock()
	s.dirtyJobs[j.ID] = struct{}{}
	s.dirtyMu.Unlock()
	s.armFlush()
}

// nodesChanged publishes the nodes on the feeds now (ProgressInterval < 0)
// or marks them for the next flush.
func (s *Service) nodesChanged(ids ...string) {
	if len(ids) == 0 {
		return
	}
	if s.cfg.ProgressInterval < 0 {
		s.publishNodes(ids)
		return
	}
	s.dirtyMu.Lock()
	for _, id := range ids {
		s.dirtyNodes[id] = struct{}{}
	}
	s.dirtyMu.Unlock()
	s.armFlush()
}

func (s *Service) armFlush() {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	if s.flushArmed || s.state.Load() != stateRunning {
		return
	}
	s.flushArmed = true
	s.flushT = s.clock.AfterFunc(s.cfg.ProgressInterval, func() {
		select {
		case s.wakeFlush <- struct{}{}:
		default:
		}
	})
}

// flush publishes the marked jobs and nodes (on the loop goroutine).
func (s *Service) flush() {
	s.dirtyMu.Lock()
	jobs, nodes := s.dirtyJobs, s.dirtyNodes
	s.dirtyJobs, s.dirtyNodes = map[string]struct{}{}, map[string]struct{}{}
	s.flushArmed = false
	s.dirtyMu.Unlock()
	if len(jobs) > 0 {
		s.evMu.Lock()
		var js []Job
		err := s.store.InTx(s.ctx, func(tx Tx) error {
			js = js[:0]
			for id := range jobs {
				j, err := tx.Job(s.ctx, id)
				if err != nil {
					return err
				}
				js = append(js, j)
			}
			return nil
		})
		if err != nil {
			s.loopError("read jobs for progress events", err)
		}
		for _, j := range js {
			if !j.Status.Terminal() { // the terminal event was published already
				s.publishJob(EventProgress, j, nil)
			}
		}
		s.evMu.Unlock()
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	s.publishNodes(ids)
}
