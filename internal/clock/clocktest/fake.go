// Package clocktest provides a manually advanced clock.Clock for tests.
package clocktest

import (
	"sort"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// Fake is a clock that moves only when Advance is called. Callbacks
// scheduled with AfterFunc run synchronously inside Advance, in due order,
// on the caller's goroutine; they may schedule, stop or reset timers.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers map[*timer]struct{}
}

// New returns a fake clock reading start.
func New(start time.Time) *Fake {
	return &Fake{now: start, timers: map[*timer]struct{}{}}
}

// Now implements clock.Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// AfterFunc implements clock.Clock.
func (f *Fake) AfterFunc(d time.Duration, fn func()) clock.Timer {
	t := &timer{f: f, fn: fn}
	t.Reset(d)
	return t
}

// Pending returns how many timers are scheduled.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// Advance moves the clock forward by d, running every callback that falls
// due on the way at its due time.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		next := f.dueLocked(target)
		if next == nil {
			f.now = target
			f.mu.Unlock()
			return
		}
		delete(f.timers, next)
		if next.when.After(f.now) {
			f.now = next.when
		}
		fn := next.fn
		f.mu.Unlock()
		fn()
	}
}

func (f *Fake) dueLocked(target time.Time) *timer {
	var due []*timer
	for t := range f.timers {
		if !t.when.After(target) {
			due = append(due, t)
		}
	}
	if len(due) == 0 {
		return nil
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].when.Equal(due[j].when) {
			return due[i].when.Before(due[j].when)
		}
		return due[i].seq < due[j].seq
	})
	return due[0]
}

type timer struct {
	f    *Fake
	fn   func()
	when time.Time // guarded by f.mu
	seq  uint64
}

func (t *timer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, ok := t.f.timers[t]
	delete(t.f.timers, t)
	return ok
}

func (t *timer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, ok := t.f.timers[t]
	t.when = t.f.now.Add(d)
	t.f.seq++
	t.seq = t.f.seq
	t.f.timers[t] = struct{}{}
	return ok
}
