package schedtest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// Simulator completes every assignment published on the FakeHub, as
// online nodes would, through one of several Services (round robin), on
// workers goroutines. It counts assignments and completions per chunk.
type Simulator struct {
	hub   *FakeHub
	svcs  []*scheduler.Service
	keys  map[string]SimNode // node id → node
	work  chan scheduler.Assignment
	wg    sync.WaitGroup
	mu    sync.Mutex
	seen  map[string]int // chunk id → assignments
	done  map[string]int // chunk id → successful completions
	fails []error
	jobs  map[string]int // job id → JobComplete answers
}

// NewSimulator starts workers goroutines completing assignments of nodes
// through svcs; Stop ends them.
func NewSimulator(hub *FakeHub, nodes []SimNode, workers int, svcs ...*scheduler.Service) *Simulator {
	s := &Simulator{hub: hub, svcs: svcs, keys: map[string]SimNode{}, work: make(chan scheduler.Assignment, 1<<16),
		seen: map[string]int{}, done: map[string]int{}, jobs: map[string]int{}}
	for _, n := range nodes {
		s.keys[n.ID] = n
	}
	hub.OnPublish(func(channel string, data []byte) {
		id, ok := strings.CutPrefix(channel, "chunks:")
		if !ok {
			return
		}
		var a scheduler.Assignment
		if json.Unmarshal(data, &a) != nil {
			return
		}
		s.mu.Lock()
		s.seen[a.ID]++
		s.mu.Unlock()
		a.Config = json.RawMessage(id) // carry the node id to the worker
		s.work <- a
	})
	for w := range workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			i := w
			for a := range s.work {
				node := s.keys[string(a.Config)]
				svc := s.svcs[i%len(s.svcs)]
				i++
				c, err := svc.CompleteChunk(context.Background(), node.Key, a.ID, a.LeaseID, Result(a))
				s.mu.Lock()
				if err != nil {
					s.fails = append(s.fails, err)
				} else if !c.AlreadyCompleted {
					s.done[a.ID]++
					if c.JobComplete {
						s.jobs[a.JobID]++
					}
				}
				s.mu.Unlock()
			}
		}()
	}
	return s
}

// Completed returns how many chunks were completed.
func (s *Simulator) Completed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done)
}

// Stop ends the workers (after the queued assignments).
func (s *Simulator) Stop() {
	s.hub.OnPublish(nil)
	close(s.work)
	s.wg.Wait()
}

// Check fails tb unless every chunk was assigned and completed exactly
// once, no completion failed, and each job completed exactly once.
func (s *Simulator) Check(tb testing.TB, chunks int, jobs []string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.fails {
		tb.Errorf("completion failed: %v", err)
	}
	if len(s.seen) != chunks || len(s.done) != chunks {
		tb.Errorf("assigned %d distinct chunks, completed %d; want %d", len(s.seen), len(s.done), chunks)
	}
	for id, n := range s.seen {
		if n != 1 {
			tb.Errorf("chunk %s assigned %d times", id, n)
		}
	}
	for id, n := range s.done {
		if n != 1 {
			tb.Errorf("chunk %s completed %d times", id, n)
		}
	}
	for _, j := range jobs {
		if s.jobs[j] != 1 {
			tb.Errorf("job %s: %d completions answered jobComplete", j, s.jobs[j])
		}
	}
}
