//go:build !js

package relay

import (
	"context"
	"fmt"
	"slices"
	"sync"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Room is a room the client joined. Safe for concurrent use.
type Room struct {
	c      *Client
	name   string
	handle uint32

	mu      sync.Mutex
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

func (r *Room) setMembers(ms []wire.Member) {
	r.mu.Lock()
	r.members = slices.Clone(ms)
	r.mu.Unlock()
}

func (r *Room) applyPresence(p *wire.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = slices.DeleteFunc(r.members, func(m wire.Member) bool { return slices.Contains(p.Leaves, m.NodeID) })
	r.members = append(r.members, p.Joins...)
}

// Send sends a reliable event to the other members (or only to targets),
// in order with this client's other reliable events.
func (r *Room) Send(op uint32, payload []byte, targets ...wire.NodeID) error {
	c := r.c
	f := wire.AppendMessage(nil, &wire.NativeEvent{Handle: r.handle, Sequence: c.seq.Add(1), OpCode: op, Targets: targets, Payload: payload})
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.evOut == nil {
		st, err := c.l.openUni(context.Background())
		if err != nil {
			return fmt.Errorf("relay: event stream: %w", err)
		}
		c.evOut = st
	}
	if _, err := c.evOut.Write(f); err != nil {
		return fmt.Errorf("relay: send: %w", err)
	}
	return nil
}

// SendUnreliable sends an event in a QUIC datagram: it may be lost, and
// it never waits for the network.
func (r *Room) SendUnreliable(op uint32, payload []byte, targets ...wire.NodeID) error {
	c := r.c
	f := wire.AppendMessage(nil, &wire.NativeEvent{Handle: r.handle, Sequence: c.seq.Add(1), OpCode: op, Targets: targets, Payload: payload, Unreliable: true})
	if err := c.l.sendDatagram(f); err != nil {
		return fmt.Errorf("relay: send datagram: %w", err)
	}
	return nil
}

// Leave leaves the room.
func (r *Room) Leave(ctx context.Context) error {
	m := &wire.Leave{Handle: r.handle}
	_, err := r.c.request(ctx, m, func(id uint32) { m.RequestID = id })
	return err
}
