// Package schedtest is the conformance suite of scheduler.Store
// implementations (Run) and the fakes it drives the Service with: a hub
// (FakeHub) that records publications and simulates node presence.
package schedtest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// FakeHub implements scheduler.Publisher and scheduler.PresenceSource in
// memory: every namespace keeps history and nodes:online has presence
// with join/leave. It is safe for concurrent use.
type FakeHub struct {
	mu       sync.Mutex
	formats  []hub.Encoder
	subs     map[string][]hub.Subscriber
	present  map[string]*hub.ClientInfo // client id → info, of nodes:online
	pubs     map[string][][]byte
	fail     map[string]bool // channel prefixes whose publishes fail
	onPub    func(channel string, data []byte)
	failures int
}

// NewFakeHub returns an empty FakeHub.
func NewFakeHub() *FakeHub {
	return &FakeHub{subs: map[string][]hub.Subscriber{}, present: map[string]*hub.ClientInfo{}, pubs: map[string][][]byte{}, fail: map[string]bool{}}
}

var errInjected = errors.New("fakehub: injected publish failure")

// Publish implements scheduler.Publisher: it records data (or fails for
// channels FailPublish names) and calls the OnPublish hook.
func (h *FakeHub) Publish(_ context.Context, channel string, data []byte, _ *hub.ClientInfo, _ map[string]string) (hub.StreamPosition, error) {
	h.mu.Lock()
	for p := range h.fail {
		if strings.HasPrefix(channel, p) {
			h.failures++
			h.mu.Unlock()
			return hub.StreamPosition{}, errInjected
		}
	}
	h.pubs[channel] = append(h.pubs[channel], append([]byte(nil), data...))
	off := uint64(len(h.pubs[channel]))
	fn := h.onPub
	h.mu.Unlock()
	if fn != nil {
		fn(channel, data)
	}
	return hub.StreamPosition{Offset: off, Epoch: "fake"}, nil
}

// ChannelOptions implements scheduler.Publisher.
func (h *FakeHub) ChannelOptions(channel string) (hub.ChannelOptions, error) {
	o := hub.ChannelOptions{HistorySize: 1000, HistoryTTL: 86400e9, ForceRecovery: true}
	if channel == scheduler.ChannelOnline {
		o.Presence, o.JoinLeave = true, true
	}
	return o, nil
}

// RegisterFormat implements scheduler.PresenceSource.
func (h *FakeHub) RegisterFormat(_ string, enc hub.Encoder) (hub.FormatID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.formats = append(h.formats, enc)
	return hub.FormatID(len(h.formats) - 1), nil
}

// AddSubscriber implements scheduler.PresenceSource.
func (h *FakeHub) AddSubscriber(channel string, sub hub.Subscriber, _ bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[channel] = append(h.subs[channel], sub)
	return nil
}

// RemoveSubscriber implements scheduler.PresenceSource.
func (h *FakeHub) RemoveSubscriber(channel string, sub hub.Subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, s := range h.subs[channel] {
		if s == sub {
			h.subs[channel] = append(h.subs[channel][:i], h.subs[channel][i+1:]...)
			return true
		}
	}
	return false
}

// Presence implements scheduler.PresenceSource.
func (h *FakeHub) Presence(_ context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]*hub.ClientInfo{}
	if channel == scheduler.ChannelOnline {
		for k, v := range h.present {
			c := *v
			out[k] = &c
		}
	}
	return out, nil
}

// Join puts client of node in nodes:online and pushes the join.
func (h *FakeHub) Join(nodeID, client string) { h.presence(nodeID, client, true) }

// Leave removes client of node from nodes:online and pushes the leave.
func (h *FakeHub) Leave(nodeID, client string) { h.presence(nodeID, client, false) }

// SetPresenceQuietly changes presence without a push (a crashed
// process's entries expiring), for the sweep's repair.
func (h *FakeHub) SetPresenceQuietly(nodeID, client string, present bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if present {
		h.present[client] = &hub.ClientInfo{ClientID: client, UserID: nodeID}
	} else {
		delete(h.present, client)
	}
}

func (h *FakeHub) presence(nodeID, client string, join bool) {
	info := &hub.ClientInfo{ClientID: client, UserID: nodeID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if join {
		h.present[client] = info
	} else {
		delete(h.present, client)
	}
	for _, s := range h.subs[scheduler.ChannelOnline] {
		enc := h.formats[s.Format()]
		var b []byte
		if join {
			b, _ = enc.EncodeJoin(scheduler.ChannelOnline, info)
		} else {
			b, _ = enc.EncodeLeave(scheduler.ChannelOnline, info)
		}
		s.Deliver(scheduler.ChannelOnline, 0, b) // under the hub lock, as the hub does
	}
}

// FailPublish makes publishes to channels starting with prefix fail (or
// succeed again when fail is false).
func (h *FakeHub) FailPublish(prefix string, fail bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fail {
		h.fail[prefix] = true
	} else {
		delete(h.fail, prefix)
	}
}

// OnPublish sets a hook called after each recorded publication (outside
// the hub's lock).
func (h *FakeHub) OnPublish(fn func(channel string, data []byte)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onPub = fn
}

// Published returns the publications recorded on channel.
func (h *FakeHub) Published(channel string) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.pubs[channel]...)
}

// Assignments decodes the assignments published to node's chunks channel.
func (h *FakeHub) Assignments(tb testing.TB, nodeID string) []scheduler.Assignment {
	tb.Helper()
	var out []scheduler.Assignment
	for _, b := range h.Published(scheduler.ChunksChannel(nodeID)) {
		var a scheduler.Assignment
		if err := json.Unmarshal(b, &a); err != nil {
			tb.Fatalf("assignment %s: %v", b, err)
		}
		out = append(out, a)
	}
	return out
}

// Events decodes the events of channel (jobs:{id}, feeds, nodes:{id}).
func (h *FakeHub) Events(tb testing.TB, channel string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, b := range h.Published(channel) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			tb.Fatalf("event %s: %v", b, err)
		}
		out = append(out, m)
	}
	return out
}

var (
	_ scheduler.Publisher      = (*FakeHub)(nil)
	_ scheduler.PresenceSource = (*FakeHub)(nil)
	_ scheduler.Publisher      = (*hub.Hub)(nil)
	_ scheduler.PresenceSource = (*hub.Hub)(nil)
)
