package hub

import (
	"context"
	"fmt"
	"sync"
)

// channelInterest serialises one channel's first-subscriber and
// last-subscriber transitions, which call the broker. Each channel has its
// own, so a slow broker Subscribe of one channel never holds up another.
type channelInterest struct {
	lock chan struct{} // a one-slot semaphore, so a waiter can give up
	refs int           // holders and waiters; guarded by interestShard.mu
}

// interestShard maps channels to their channelInterest while anyone holds
// or waits for one. mu is a leaf lock held only to find the entry.
type interestShard struct {
	mu       sync.Mutex
	channels map[string]*channelInterest
}

// lockInterest locks channel's interest transitions and returns the
// unlock function. It gives up when ctx ends first (a subscriber waiting
// behind another's broker Subscribe to a slow Redis).
func (h *Hub) lockInterest(ctx context.Context, idx int, channel string) (unlock func(), err error) {
	s := &h.interest[idx]
	s.mu.Lock()
	e := s.channels[channel]
	if e == nil {
		e = &channelInterest{lock: make(chan struct{}, 1)}
		s.channels[channel] = e
	}
	e.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(s.channels, channel)
		}
		s.mu.Unlock()
	}
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("hub: wait for the subscription of %q to the broker: %w", channel, ctx.Err())
	}
	return func() {
		<-e.lock
		release()
	}, nil
}
