package client_test

import (
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/client"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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
