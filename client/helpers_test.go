package client_test

import (
	"sync"

	"github.com/switchboard-rt/switchboard/client"
)

// statusRecorder collects status changes.
type statusRecorder struct {
	mu      sync.Mutex
	changes []client.StatusChange
}

func (r *statusRecorder) record(c client.StatusChange) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *statusRecorder) statuses() []client.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]client.Status, len(r.changes))
	for i, c := range r.changes {
		out[i] = c.To
	}
	return out
}

func (r *statusRecorder) count(s client.Status) int {
	n := 0
	for _, got := range r.statuses() {
		if got == s {
			n++
		}
	}
	return n
}

func (r *statusRecorder) firstErr(s client.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if c.To == s {
			return c.Err
		}
	}
	return nil
}
