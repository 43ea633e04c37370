package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// formatSeq makes the presence format name unique per Service, so several
// Services may share one hub (tests; hub.MaxFormats bounds how many).
var formatSeq atomic.Int64

// presenceEncoder is the hub format of the scheduler's presence
// subscription: joins and leaves as 'j'|'l' clientID 0x00 userID; other
// pushes as an empty frame, which the subscriber ignores.
type presenceEncoder struct{}

func (presenceEncoder) EncodePublication(string, *hub.Publication) ([]byte, error) {
	return []byte{}, nil
}
func (presenceEncoder) EncodeJoin(_ string, info *hub.ClientInfo) ([]byte, error) {
	return presenceFrame('j', info), nil
}
func (presenceEncoder) EncodeLeave(_ string, info *hub.ClientInfo) ([]byte, error) {
	return presenceFrame('l', info), nil
}
func (presenceEncoder) EncodeMessage([]byte) ([]byte, error) { return []byte{}, nil }

func presenceFrame(kind byte, info *hub.ClientInfo) []byte {
	b := make([]byte, 0, 2+len(info.ClientID)+len(info.UserID))
	b = append(b, kind)
	b = append(b, info.ClientID...)
	b = append(b, 0)
	return append(b, info.UserID...)
}

// presenceEvent is a decoded join or leave.
type presenceEvent struct {
	join             bool
	client, userNode string
}

// presenceSub is the Service's hub subscriber on nodes:online. Deliver
// runs under hub locks, so it only queues the event and signals the
// Service loop, which applies the queue.
type presenceSub struct {
	format hub.FormatID
	signal chan struct{} // buffered 1

	mu        sync.Mutex
	queue     []presenceEvent
	reconcile bool // a full presence read was requested
}

func newPresenceSub(p PresenceSource) (*presenceSub, error) {
	name := fmt.Sprintf("scheduler-presence-%d", formatSeq.Add(1))
	f, err := p.RegisterFormat(name, presenceEncoder{})
	if err != nil {
		return nil, fmt.Errorf("scheduler: register presence format: %w", err)
	}
	return &presenceSub{format: f, signal: make(chan struct{}, 1)}, nil
}

// Format implements hub.Subscriber.
func (p *presenceSub) Format() hub.FormatID { return p.format }

// Deliver implements hub.Subscriber: it queues joins and leaves.
func (p *presenceSub) Deliver(_ string, _ uint64, frame []byte) {
	if len(frame) < 2 || (frame[0] != 'j' && frame[0] != 'l') {
		return
	}
	client, user, ok := bytes.Cut(frame[1:], []byte{0})
	if !ok || len(user) == 0 {
		return
	}
	p.mu.Lock()
	p.queue = append(p.queue, presenceEvent{join: frame[0] == 'j', client: string(client), userNode: string(user)})
	p.mu.Unlock()
	p.notify()
}

func (p *presenceSub) notify() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func (p *presenceSub) requestReconcile() {
	p.mu.Lock()
	p.reconcile = true
	p.mu.Unlock()
	p.notify()
}

func (p *presenceSub) take() ([]presenceEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, r := p.queue, p.reconcile
	p.queue, p.reconcile = nil, false
	return q, r
}

// applyPresence applies queued joins and leaves (and a requested full
// read), and reacts to nodes that came online (assignment pass) or went
// offline; both publish the node on the feeds.
func (s *Service) applyPresence() {
	events, reconcile := s.presence.take()
	if reconcile {
		// After the queued events, which are older than the read.
		defer func() {
			if err := s.reconcilePresence(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Warn("presence read failed", "channel", ChannelOnline, "error", err)
			}
		}()
	}
	var changed []string
	came := false
	s.mu.Lock()
	for _, e := range events {
		set := s.online[e.userNode]
		was := len(set) > 0
		if e.join {
			if set == nil {
				set = map[string]struct{}{}
				s.online[e.userNode] = set
			}
			set[e.client] = struct{}{}
		} else if set != nil {
			delete(set, e.client)
			if len(set) == 0 {
				delete(s.online, e.userNode)
			}
		}
		if now := len(s.online[e.userNode]) > 0; now != was {
			changed = append(changed, e.userNode)
			came = came || now
		}
	}
	s.mu.Unlock()
	if came {
		s.kickAssign()
	}
	s.nodesChanged(changed...)
}

// reconcilePresence replaces the online set with a full presence read of
// nodes:online (at Run, and from the safety sweep to repair leaves a
// crashed process never published).
func (s *Service) reconcilePresence(ctx context.Context) error {
	m, err := s.pres.Presence(ctx, ChannelOnline)
	if err != nil {
		return fmt.Errorf("scheduler: presence of %s: %w", ChannelOnline, err)
	}
	fresh := map[string]map[string]struct{}{}
	for id, info := range m {
		if info == nil || info.UserID == "" {
			continue
		}
		client := info.ClientID
		if client == "" {
			client = id
		}
		set := fresh[info.UserID]
		if set == nil {
			set = map[string]struct{}{}
			fresh[info.UserID] = set
		}
		set[client] = struct{}{}
	}
	var changed []string
	came := false
	s.mu.Lock()
	for id := range fresh {
		if len(s.online[id]) == 0 {
			changed, came = append(changed, id), true
		}
	}
	for id := range s.online {
		if len(fresh[id]) == 0 {
			changed = append(changed, id)
		}
	}
	s.online = fresh
	s.mu.Unlock()
	if came {
		s.kickAssign()
	}
	s.nodesChanged(changed...)
	return nil
}

// isOnline reports whether node id has a connection in nodes:online.
func (s *Service) isOnline(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.online[id]) > 0
}

// onlineIDs returns the online node ids.
func (s *Service) onlineIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.online))
	for id := range s.online {
		if !strings.ContainsRune(id, 0) {
			ids = append(ids, id)
		}
	}
	return ids
}
