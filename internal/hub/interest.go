package hub

import "sync"

// channelInterest serialises one channel's first-subscriber and
// last-subscriber transitions, which call the broker. Each channel has its
// own, so a slow broker Subscribe of one channel never holds up another.
type channelInterest struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by interestShard.mu
}

// interestShard maps channels to their channelInterest while anyone holds
// or waits for one. mu is a leaf lock held only to find the entry.
type interestShard struct {
	mu       sync.Mutex
	channels map[string]*channelInterest
}

// lockInterest locks channel's interest transitions and returns the
// unlock function.
func (h *Hub) lockInterest(idx int, channel string) (unlock func()) {
	s := &h.interest[idx]
	s.mu.Lock()
	e := s.channels[channel]
	if e == nil {
		e = &channelInterest{}
		s.channels[channel] = e
	}
	e.refs++
	s.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		s.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(s.channels, channel)
		}
		s.mu.Unlock()
	}
}
