package clientproto

import (
	"context"
	"fmt"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// UnsubscribeCodeInsufficientState is the unsubscribe push code of a
// subscription that lost publications; the official clients subscribe
// again with recovery.
const UnsubscribeCodeInsufficientState = 2500

var _ hub.PositionSubscriber = (*subscription)(nil)

// advanceLocked moves a positioned subscription to offset and reports
// whether the publication is delivered: not when it was delivered before,
// nor after a gap, which ends the subscription (insufficient state).
// Publications without an offset always are. s.mu is held.
func (sub *subscription) advanceLocked(channel string, offset uint64) bool {
	if !sub.positioned || offset == 0 {
		return true
	}
	switch {
	case offset <= sub.offset:
		return false
	case offset == sub.offset+1:
		sub.offset = offset
		sub.mark = 0
		return true
	}
	sub.s.insufficientStateLocked(channel, sub, "gap", fmt.Sprintf("offset %d after %d", offset, sub.offset))
	return false
}

// CheckPosition implements hub.PositionSubscriber: a different epoch, or
// an offset still below a top shown at least c.Settle ago, means lost
// publications.
func (sub *subscription) CheckPosition(channel string, c hub.PositionCheck) {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.removed || s.state == stateClosed || !sub.positioned || sub.syncing {
		return
	}
	switch {
	case c.Top.Epoch != sub.epoch:
		s.insufficientStateLocked(channel, sub, "position_check", "epoch "+c.Top.Epoch+" instead of "+sub.epoch)
	case sub.offset >= c.Top.Offset:
		sub.mark = 0
	case sub.mark > 0 && sub.offset < sub.mark:
		if c.Now.Sub(sub.markTime) >= c.Settle {
			s.insufficientStateLocked(channel, sub, "position_check", fmt.Sprintf("offset %d, stream top was %d", sub.offset, sub.mark))
		}
	default:
		sub.mark, sub.markTime = c.Top.Offset, c.Now
	}
}

// insufficientStateLocked ends a subscription that lost publications: a
// server-side one disconnects the client (3010, it reconnects and
// recovers), a client-side one is unsubscribed with 2500 (the client
// subscribes again with recovery). The hub side is released by a goroutine
// (the caller may hold hub locks); a new subscribe to the channel waits for
// it. s.mu is held.
func (s *Session) insufficientStateLocked(channel string, sub *subscription, foundBy, detail string) {
	if sub.removed || s.closeSent || s.state == stateClosed {
		return
	}
	s.srv.metrics.insufficient.WithLabelValues(foundBy).Inc()
	s.srv.log.Info("subscription lost publications", "client", s.id, "channel", channel,
		"server_side", sub.serverSide, "found_by", foundBy, "detail", detail)
	if sub.serverSide {
		s.disconnectLocked(hub.DisconnectInsufficientState)
		return
	}
	sub.removed = true
	if s.subs[channel] == sub {
		delete(s.subs, channel)
	}
	if b := s.encode(&protocol.Reply{Push: &protocol.Push{Channel: channel,
		Unsubscribe: &protocol.Unsubscribe{Code: UnsubscribeCodeInsufficientState, Reason: "insufficient state"}}}); b != nil {
		s.enqueueLocked(b)
	}
	done := make(chan struct{})
	if s.releasing == nil {
		s.releasing = map[string]chan struct{}{}
	}
	s.releasing[channel] = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.releaseSubscription(channel, sub)
		s.mu.Lock()
		if s.releasing[channel] == done {
			delete(s.releasing, channel)
		}
		s.mu.Unlock()
		close(done)
	}()
}

// awaitRelease waits until a subscription of channel ended for
// insufficient state is released from the hub, so that its presence
// removal and leave cannot overtake a new subscription's.
func (s *Session) awaitRelease(ctx context.Context, channel string) error {
	s.mu.Lock()
	done := s.releasing[channel]
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clientproto: wait for the release of %q: %w", channel, ctx.Err())
	}
}
