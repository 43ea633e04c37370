package memory

import (
	"bytes"
	"context"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

type presenceShard struct {
	mu       sync.RWMutex
	channels map[string]map[string]*hub.ClientInfo
	// keys: the claim keys of each channel (ClaimPresence), key → client
	// ID and client ID → key; an entry's removal frees its key.
	keys map[string]*claimKeys
}

type claimKeys struct {
	holder map[string]string // key → client ID
	of     map[string]string // client ID → key
}

func (k *claimKeys) drop(clientID string) {
	if key, ok := k.of[clientID]; ok {
		delete(k.of, clientID)
		if k.holder[key] == clientID {
			delete(k.holder, key)
		}
	}
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
		p.shards[i].keys = map[string]*claimKeys{}
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
	s.removeLocked(channel, clientID)
	return nil
}

// removeLocked drops clientID's entry in channel and its claim key (s.mu
// held).
func (s *presenceShard) removeLocked(channel, clientID string) {
	if m := s.channels[channel]; m != nil {
		delete(m, clientID)
		if len(m) == 0 {
			delete(s.channels, channel)
		}
	}
	if k := s.keys[channel]; k != nil {
		k.drop(clientID)
		if len(k.of) == 0 {
			delete(s.keys, channel)
		}
	}
}

// RemovePresenceIf removes clientID's entry in channel only while it
// holds info (equal fields), under the channel's lock
// (hub.PresenceConditionalRemover).
func (p *Presence) RemovePresenceIf(_ context.Context, channel, clientID string, info *hub.ClientInfo) (bool, error) {
	s := p.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.channels[channel][clientID]; cur == nil || !sameInfo(cur, info) {
		return false, nil
	}
	s.removeLocked(channel, clientID)
	return true, nil
}

func sameInfo(a, b *hub.ClientInfo) bool {
	return a.ClientID == b.ClientID && a.UserID == b.UserID &&
		bytes.Equal(a.ConnInfo, b.ConnInfo) && bytes.Equal(a.ChanInfo, b.ChanInfo)
}

// ClaimPresence adds info under clientID when claim holds (see
// hub.PresenceClaim), atomically under the channel's lock. Entries never
// expire here.
func (p *Presence) ClaimPresence(_ context.Context, channel, clientID string, info *hub.ClientInfo, claim hub.PresenceClaim) (hub.ClaimResult, error) {
	s := p.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.channels[channel]
	ignored := func(id string) bool { return id == clientID || slices.Contains(claim.Ignore, id) }
	k := s.keys[channel]
	free, holder := true, ""
	if claim.Key != "" && k != nil {
		if h, ok := k.holder[claim.Key]; ok && !ignored(h) && m[h] != nil {
			if !claim.Always {
				return hub.ClaimResult{Holder: h, HolderInfo: cloneInfo(m[h])}, nil
			}
			free, holder = false, h
		}
	}
	if claim.Max > 0 && !claim.Always {
		n := 0
		for id := range m {
			if !ignored(id) {
				n++
			}
		}
		if n >= claim.Max {
			return hub.ClaimResult{Full: true}, nil
		}
	}
	if m == nil {
		m = map[string]*hub.ClientInfo{}
		s.channels[channel] = m
	}
	m[clientID] = info
	if claim.Key != "" && free {
		if k == nil {
			k = &claimKeys{holder: map[string]string{}, of: map[string]string{}}
			s.keys[channel] = k
		}
		k.drop(clientID)
		k.holder[claim.Key], k.of[clientID] = clientID, claim.Key
	}
	if !free {
		return hub.ClaimResult{Added: true, KeyTaken: true, Holder: holder}, nil
	}
	return hub.ClaimResult{Added: true}, nil
}

// cloneInfo copies info and its byte slices, so a caller cannot change
// what the presence holds.
func cloneInfo(info *hub.ClientInfo) *hub.ClientInfo {
	c := *info
	c.ConnInfo = bytes.Clone(info.ConnInfo)
	c.ChanInfo = bytes.Clone(info.ChanInfo)
	return &c
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
