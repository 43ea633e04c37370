//go:build !js

package relay

import (
	"context"
	"fmt"
	"slices"
	"sync"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Room is a room the client joined. Safe for concurrent use. With
// Options.Reconnect the same Room carries on over the next connection.
type Room struct {
	c    *Client
	name string

	// news orders PRESENCE: attach holds it until the news kept for the
	// room (session.early) is applied, so newer news waits behind it.
	news sync.Mutex

	mu      sync.Mutex
	opts    JoinOptions
	sess    *session // nil while reconnecting or after a lost rejoin
	handle  uint32
	err     error // why a rejoin failed
	members []wire.Member
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Members lists the room's members as last known (JOINED, then PRESENCE).
func (r *Room) Members() []wire.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.members)
}

// attach binds the room to s with j's handle and members (c.mu held).
func (r *Room) attach(s *session, j *wire.Joined) {
	r.news.Lock()
	defer r.news.Unlock()
	r.mu.Lock()
	r.sess, r.handle, r.err = s, j.Handle, nil
	r.members = slices.Clone(j.Members)
	r.mu.Unlock()
	s.mu.Lock()
	s.byHandle[j.Handle] = r
	early := s.early[j.Handle]
	delete(s.early, j.Handle)
	s.mu.Unlock()
	for _, p := range early {
		r.presenceLocked(p)
	}
}

// presence applies p to the member list and passes it to the application.
func (r *Room) presence(p *wire.Presence) {
	r.news.Lock()
	defer r.news.Unlock()
	r.presenceLocked(p)
}

func (r *Room) presenceLocked(p *wire.Presence) {
	r.applyPresence(p)
	r.c.deliverPresence(PresenceEvent{Room: r.name, Joins: p.Joins, Leaves: p.Leaves})
}

func (r *Room) detach(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sess == s {
		r.sess = nil
	}
}

func (r *Room) drop(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sess, r.err = nil, fmt.Errorf("relay: room %s lost at a rejoin: %w", r.name, err)
}

func (r *Room) on(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sess == s
}

func (r *Room) joinOptions() JoinOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts
}

// target is the session and handle to send on.
func (r *Room) target() (*session, uint32, error) {
	r.mu.Lock()
	s, h, err := r.sess, r.handle, r.err
	r.mu.Unlock()
	if s != nil {
		return s, h, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return nil, 0, r.c.endedErr()
}

func (r *Room) applyPresence(p *wire.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = slices.DeleteFunc(r.members, func(m wire.Member) bool { return slices.Contains(p.Leaves, m.NodeID) })
	// News may repeat a member the JOINED list already had (two joins at
	// once): a join replaces the member of its NodeId.
	for _, j := range p.Joins {
		if i := slices.IndexFunc(r.members, func(m wire.Member) bool { return m.NodeID == j.NodeID }); i >= 0 {
			r.members[i] = j
		} else {
			r.members = append(r.members, j)
		}
	}
}

// Send sends a reliable event to the other members (or only to targets),
// in order with this client's other reliable events. Between connections
// it returns ErrReconnecting (the event is not queued).
func (r *Room) Send(op uint32, payload []byte, targets ...wire.NodeID) error {
	s, h, err := r.target()
	if err != nil {
		return err
	}
	f := wire.AppendMessage(nil, &wire.NativeEvent{Handle: h, Sequence: r.c.seq.Add(1), OpCode: op, Targets: targets, Payload: payload})
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.evOut == nil {
		st, err := s.l.openUni(context.Background())
		if err != nil {
			return fmt.Errorf("relay: event stream: %w", err)
		}
		s.evOut = st
	}
	if _, err := s.evOut.Write(f); err != nil {
		return fmt.Errorf("relay: send: %w", err)
	}
	return nil
}

// SendUnreliable sends an event in a QUIC datagram: it may be lost, and
// it never waits for the network.
func (r *Room) SendUnreliable(op uint32, payload []byte, targets ...wire.NodeID) error {
	s, h, err := r.target()
	if err != nil {
		return err
	}
	f := wire.AppendMessage(nil, &wire.NativeEvent{Handle: h, Sequence: r.c.seq.Add(1), OpCode: op, Targets: targets, Payload: payload, Unreliable: true})
	if err := s.l.sendDatagram(f); err != nil {
		return fmt.Errorf("relay: send datagram: %w", err)
	}
	return nil
}

// Leave leaves the room (it is not rejoined after a reconnection).
func (r *Room) Leave(ctx context.Context) error {
	s, h, err := r.target()
	if err != nil {
		return err
	}
	m := &wire.Leave{Handle: h}
	if _, err := s.request(ctx, m, func(id uint32) { m.RequestID = id }); err != nil {
		return err
	}
	r.detach(s)
	r.c.forget(r)
	return nil
}
