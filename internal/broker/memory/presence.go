package memory

import (
	"context"
	"hash/maphash"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

type presenceShard struct {
	mu       sync.RWMutex
	channels map[string]map[string]*hub.ClientInfo
}

// Presence is an in-memory hub.PresenceManager.
type Presence struct {
	seed   maphash.Seed
	shards [numShards]presenceShard
}

// NewPresence returns an empty presence manager.
func NewPresence() *Presence {
	p := &Presence{seed: maphash.MakeSeed()}
	for i := range p.shards {
		p.shards[i].channels = map[string]map[string]*hub.ClientInfo{}
	}
	return p
}

func (p *Presence) shard(ch string) *presenceShard {
	return &p.shards[maphash.String(p.seed, ch)%numShards]
}

// AddPresence records info under clientID in channel.
func (p *Presence) AddPresence(_ context.Context, channel, clientID string, info *hub.ClientInfo) error {
	s := p.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.channels[channel]
	if m == nil {
		m = map[string]*hub.ClientInfo{}
		s.channels[channel] = m
	}
	m[clientID] = info
	return nil
}

// RemovePresence forgets clientID in channel.
func (p *Presence) RemovePresence(_ context.Context, channel, clientID, _ string) error {
	s := p.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.channels[channel]; m != nil {
		delete(m, clientID)
		if len(m) == 0 {
			delete(s.channels, channel)
		}
	}
	return nil
}

// Presence returns a copy of channel's presence map.
func (p *Presence) Presence(_ context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	s := p.shard(channel)
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*hub.ClientInfo, len(s.channels[channel]))
	for k, v := range s.channels[channel] {
		out[k] = v
	}
	return out, nil
}

// PresenceStats counts clients and distinct users in channel.
func (p *Presence) PresenceStats(_ context.Context, channel string) (hub.PresenceStats, error) {
	s := p.shard(channel)
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.channels[channel]
	users := make(map[string]struct{}, len(m))
	for _, info := range m {
		users[info.UserID] = struct{}{}
	}
	return hub.PresenceStats{NumClients: len(m), NumUsers: len(users)}, nil
}
