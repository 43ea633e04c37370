package hub

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// Defaults of the stream position checks.
const (
	DefaultPositionCheckInterval = 40 * time.Second
	DefaultPositionSettle        = 2 * time.Second
)

// PositionCheck is what a positioned subscriber is compared with: its
// channel's stream top read at Now. Publications below the top may still be
// in flight; one the subscriber was shown at least Settle ago may not.
type PositionCheck struct {
	Top    StreamPosition
	Now    time.Time
	Settle time.Duration
}

// PositionSubscriber is a Subscriber that follows its channel's stream
// position, so lost publications (a PUB/SUB message that never arrived) are
// noticed even when no later publication reveals the gap. The hub calls
// CheckPosition for channels that keep history, every
// Config.PositionCheckInterval and right after the broker resubscribed the
// channel, without hub locks held. It must not block or call back into the
// Hub synchronously.
type PositionSubscriber interface {
	Subscriber
	CheckPosition(channel string, c PositionCheck)
}

// ResubscribeHandler is an optional interface of a BrokerEventHandler. A
// broker that replaced a PUB/SUB connection and subscribed its channels
// again calls HandleResubscribed with them (publications sent meanwhile may
// be lost). It does not block.
type ResubscribeHandler interface {
	HandleResubscribed(channels []string)
}

var _ ResubscribeHandler = (*Hub)(nil)

// positionChecker owns the check timers; mu guards all of it.
type positionChecker struct {
	mu      sync.Mutex
	stopped bool
	timer   clock.Timer
	ctx     context.Context // cancelled by Shutdown
	cancel  context.CancelFunc
}

func (h *Hub) positionInterval() time.Duration {
	if d := h.cfg.PositionCheckInterval; d != 0 {
		return d
	}
	return DefaultPositionCheckInterval
}

func (h *Hub) positionSettle() time.Duration {
	if d := h.cfg.PositionSettle; d > 0 {
		return d
	}
	return DefaultPositionSettle
}

func (h *Hub) startPositionChecks() {
	p := &h.positions
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if iv := h.positionInterval(); iv > 0 {
		p.mu.Lock()
		p.timer = h.clock.AfterFunc(iv, h.periodicPositionCheck)
		p.mu.Unlock()
	}
}

func (h *Hub) stopPositionChecks() {
	p := &h.positions
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.cancel()
}

func (h *Hub) periodicPositionCheck() {
	h.checkPositions(h.historyChannels())
	p := &h.positions
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.timer.Reset(h.positionInterval())
	}
}

// HandleResubscribed implements ResubscribeHandler: the channels are
// checked at once and again after the settle time, so a subscriber behind
// a top it was shown before the reconnect is caught within seconds.
func (h *Hub) HandleResubscribed(channels []string) {
	h.schedulePositionCheck(append([]string(nil), channels...), "broker resubscribe")
}

// schedulePositionCheck checks the channels at once and again the settle
// time after that first check, without blocking the caller (a broker's
// reader). The second check is timed from the end of the first because a
// subscriber is only found behind a top it was shown at least the settle
// time before: timed from the start, a first read slower than the second
// (Redis busy just after a reconnect) left the loss to the periodic check.
func (h *Hub) schedulePositionCheck(chs []string, why string) {
	p := &h.positions
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || len(chs) == 0 {
		return
	}
	h.log.Info("checking stream positions", "reason", why, "channels", len(chs))
	h.clock.AfterFunc(0, func() {
		h.checkPositions(chs)
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.stopped {
			h.clock.AfterFunc(h.positionSettle(), func() { h.checkPositions(chs) })
		}
	})
}

// historyChannels lists the local channels that keep history.
func (h *Hub) historyChannels() []string {
	var out []string
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for name := range s.channels {
			if o, err := h.cfg.Namespaces.Resolve(name); err == nil && o.HistoryEnabled() {
				out = append(out, name)
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// checkPositions reads each channel's stream top (no lock held) and shows
// it to the channel's PositionSubscribers.
func (h *Hub) checkPositions(channels []string) {
	p := &h.positions
	p.mu.Lock()
	stopped, ctx := p.stopped, p.ctx
	p.mu.Unlock()
	if stopped {
		return
	}
	timeout := h.positionInterval()
	if timeout <= 0 {
		timeout = DefaultPositionCheckInterval
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	failed := 0
	var firstErr error
	for _, ch := range channels {
		// A channel without history has no stream top to compare with.
		if o, err := h.cfg.Namespaces.Resolve(ch); err != nil || !o.HistoryEnabled() {
			continue
		}
		subs := h.positionSubscribers(ch)
		if len(subs) == 0 {
			continue
		}
		hr, err := h.History(ctx, ch, HistoryOptions{Limit: 0})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if failed++; firstErr == nil {
				firstErr = err
			}
			continue
		}
		c := PositionCheck{Top: hr.Position, Now: h.clock.Now(), Settle: h.positionSettle()}
		for _, sub := range subs {
			sub.CheckPosition(ch, c)
		}
	}
	if failed > 0 || ctx.Err() != nil {
		h.log.Warn("stream position check incomplete", "channels", len(channels), "failed", failed, "error", firstErr, "context", ctx.Err())
	}
}

func (h *Hub) positionSubscribers(channel string) []PositionSubscriber {
	s := &h.shards[h.shardIndex(channel)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.channels[channel]
	if c == nil {
		return nil
	}
	out := make([]PositionSubscriber, 0, len(c.subs))
	for _, e := range c.subs {
		if ps, ok := e.sub.(PositionSubscriber); ok {
			out = append(out, ps)
		}
	}
	return out
}
