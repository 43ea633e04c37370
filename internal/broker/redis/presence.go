package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// localPresence is what this process added and has not removed: the
// refresher re-adds it every PresenceRefresh, so entries live while their
// process does and vanish PresenceTTL after it dies.
//
// A refresh writes a snapshot of the entries; one removed after the
// snapshot may be written back by it. While a refresh runs (tracking),
// removals are recorded (removed); after it, the refresher removes again
// those still absent, holding gate exclusively. Adds hold gate shared
// over their write and local record, so that second removal never takes
// an entry added again meanwhile. Lock order: gate, then mu.
type localPresence struct {
	gate     sync.RWMutex
	mu       sync.Mutex
	entries  map[presenceKey]localEntry
	tracking bool
	removed  map[presenceKey]struct{}
	// afterSnapshot, when set (tests only), runs between a refresh's
	// snapshot and its writes.
	afterSnapshot func()
}

// localEntry is an entry to refresh: its encoded info and its claim key
// (ClaimPresence; "" for none), which each refresh takes again when no
// other live entry has it (after a Redis restart that lost it, say).
type localEntry struct {
	enc []byte
	key string
}

type presenceKey struct{ channel, client string }

// presenceKeys are the keys of channel's presence: data hash, expiry
// zset, claim-key hash (scripts.go).
func (b *Broker) presenceKeys(channel string) []string {
	return []string{b.key("presence.data", channel), b.key("presence.expire", channel), b.key("presence.keys", channel)}
}

// claimExec is a claimPresenceScript call: addPresenceExec's arguments,
// then the claim's.
func (b *Broker) claimExec(channel, clientID string, info []byte, claim hub.PresenceClaim) rueidis.LuaExec {
	x := b.addPresenceExec(channel, clientID, info)
	always := "0"
	if claim.Always {
		always = "1"
	}
	x.Args = append(x.Args, strconv.FormatInt(b.cfg.Now().UnixMilli(), 10), strconv.Itoa(max(claim.Max, 0)), claim.Key, always)
	x.Args = append(x.Args, claim.Ignore...)
	return x
}

func (b *Broker) addPresenceExec(channel, clientID string, info []byte) rueidis.LuaExec {
	expire := b.cfg.Now().Add(b.cfg.PresenceTTL).UnixMilli()
	return rueidis.LuaExec{
		Keys: b.presenceKeys(channel),
		Args: []string{clientID, rueidis.BinaryString(info), strconv.FormatInt(expire, 10), ms(b.cfg.PresenceTTL)},
	}
}

// AddPresence records info under clientID for PresenceTTL; calling it
// again refreshes the entry (and replaces info). Until RemovePresence the
// broker refreshes the entry itself every PresenceRefresh.
func (b *Broker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo) error {
	enc := encodeInfo(info)
	x := b.addPresenceExec(channel, clientID, enc)
	b.local.gate.RLock()
	defer b.local.gate.RUnlock()
	if err := addPresenceScript.Exec(ctx, b.client, x.Keys, x.Args).Error(); err != nil {
		return opErr("add presence", channel, err)
	}
	b.keepRefreshing(channel, clientID, enc, "")
	return nil
}

// keepRefreshing has the refresher re-add an entry just written, with
// claim key key ("": the key it had, if any: a plain add keeps it).
func (b *Broker) keepRefreshing(channel, clientID string, enc []byte, key string) {
	if b.cfg.PresenceRefresh > 0 {
		k := presenceKey{channel, clientID}
		b.local.mu.Lock()
		if key == "" {
			key = b.local.entries[k].key
		}
		b.local.entries[k] = localEntry{enc: enc, key: key}
		b.local.mu.Unlock()
	}
}

// ClaimPresence adds info under clientID like AddPresence when claim
// holds, in one script that first drops the channel's expired entries
// (hub.PresenceClaimer); a refused claim writes nothing. The claim key is
// kept by the refreshes and freed by RemovePresence or expiry.
func (b *Broker) ClaimPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, claim hub.PresenceClaim) (hub.ClaimResult, error) {
	enc := encodeInfo(info)
	x := b.claimExec(channel, clientID, enc, claim)
	b.local.gate.RLock()
	defer b.local.gate.RUnlock()
	reply, err := claimPresenceScript.Exec(ctx, b.client, x.Keys, x.Args).AsStrSlice()
	if err != nil {
		return hub.ClaimResult{}, opErr("claim presence", channel, err)
	}
	res, err := parseClaim(reply)
	if err != nil {
		return hub.ClaimResult{}, opErr("claim presence", channel, err)
	}
	if res.Added {
		b.keepRefreshing(channel, clientID, enc, claim.Key)
	}
	return res, nil
}

// parseClaim decodes claimPresenceScript's reply.
func parseClaim(reply []string) (hub.ClaimResult, error) {
	switch {
	case len(reply) == 1 && reply[0] == "a":
		return hub.ClaimResult{Added: true}, nil
	case len(reply) == 2 && reply[0] == "a" && reply[1] != "":
		return hub.ClaimResult{Added: true, KeyTaken: true, Holder: reply[1]}, nil
	case len(reply) == 1 && reply[0] == "f":
		return hub.ClaimResult{Full: true}, nil
	case len(reply) == 3 && reply[0] == "k":
		info, err := decodeInfo([]byte(reply[2]))
		if err != nil {
			return hub.ClaimResult{}, fmt.Errorf("holder %q: %w", reply[1], err)
		}
		return hub.ClaimResult{Holder: reply[1], HolderInfo: info}, nil
	}
	return hub.ClaimResult{}, fmt.Errorf("unexpected claim reply of %d values", len(reply))
}

// refreshPresence re-adds every local entry, in batches, until Close.
func (b *Broker) refreshPresence() {
	t := time.NewTicker(b.cfg.PresenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.refreshLocal()
	}
}

// refreshLocal re-adds every local entry once, then removes again the
// entries removed meanwhile, which the writes may have brought back (see
// localPresence).
func (b *Broker) refreshLocal() {
	b.local.mu.Lock()
	var plain, keyed []rueidis.LuaExec
	for k, e := range b.local.entries {
		if e.key == "" {
			plain = append(plain, b.addPresenceExec(k.channel, k.client, e.enc))
		} else {
			keyed = append(keyed, b.claimExec(k.channel, k.client, e.enc, hub.PresenceClaim{Key: e.key, Always: true}))
		}
	}
	b.local.tracking, b.local.removed = true, nil
	hook := b.local.afterSnapshot
	b.local.mu.Unlock()
	if hook != nil {
		hook()
	}
	b.refreshBatches(addPresenceScript, plain)
	b.refreshBatches(claimPresenceScript, keyed)

	b.local.gate.Lock()
	defer b.local.gate.Unlock()
	b.local.mu.Lock()
	var undo []rueidis.LuaExec
	for k := range b.local.removed {
		if _, ok := b.local.entries[k]; !ok {
			undo = append(undo, rueidis.LuaExec{Keys: b.presenceKeys(k.channel), Args: []string{k.client}})
		}
	}
	b.local.tracking, b.local.removed = false, nil
	b.local.mu.Unlock()
	b.refreshBatches(remPresenceScript, undo)
}

// refreshTimeoutMin is the least time a refresh batch is given, however
// short PresenceRefresh is.
const refreshTimeoutMin = time.Second

// refreshBatches runs script for execs, presenceBatch at a time, each
// batch within PresenceRefresh (refreshTimeoutMin at least).
func (b *Broker) refreshBatches(script *rueidis.Lua, execs []rueidis.LuaExec) {
	for i := 0; i < len(execs); i += presenceBatch {
		ctx, cancel := context.WithTimeout(b.ctx, max(b.cfg.PresenceRefresh, refreshTimeoutMin))
		for _, r := range script.ExecMulti(ctx, b.client, execs[i:min(i+presenceBatch, len(execs))]...) {
			if err := r.Error(); err != nil {
				b.log.Warn("presence refresh failed", "error", err)
				break
			}
		}
		cancel()
	}
}

const presenceBatch = 512

// ReleasePresence stops refreshing clientID's entry in channel without
// removing it (hub.PresenceReleaser): it expires PresenceTTL after its
// last write unless another process writes it again. A refresh under way
// may still write it once.
func (b *Broker) ReleasePresence(_ context.Context, channel, clientID string) error {
	b.local.mu.Lock()
	delete(b.local.entries, presenceKey{channel, clientID})
	b.local.mu.Unlock()
	return nil
}

// RemovePresence forgets clientID in channel; an absent client is not an
// error.
func (b *Broker) RemovePresence(ctx context.Context, channel, clientID, _ string) error {
	k := presenceKey{channel, clientID}
	b.local.mu.Lock()
	delete(b.local.entries, k)
	if b.local.tracking {
		if b.local.removed == nil {
			b.local.removed = map[presenceKey]struct{}{}
		}
		b.local.removed[k] = struct{}{}
	}
	b.local.mu.Unlock()
	err := remPresenceScript.Exec(ctx, b.client, b.presenceKeys(channel),
		[]string{clientID},
	).Error()
	if err != nil {
		return opErr("remove presence", channel, err)
	}
	return nil
}

// Presence returns the channel's unexpired entries by client ID; expired
// ones are removed on the way.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	m, err := b.presence(ctx, channel)
	if err != nil {
		return nil, opErr("presence", channel, err)
	}
	return m, nil
}

// PresenceStats counts the channel's unexpired clients and distinct users.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	m, err := b.presence(ctx, channel)
	if err != nil {
		return hub.PresenceStats{}, opErr("presence stats", channel, err)
	}
	users := make(map[string]struct{}, len(m))
	for _, info := range m {
		if info != nil {
			users[info.UserID] = struct{}{}
		}
	}
	return hub.PresenceStats{NumClients: len(m), NumUsers: len(users)}, nil
}

func (b *Broker) presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	kv, err := presenceScript.Exec(ctx, b.client, b.presenceKeys(channel),
		[]string{strconv.FormatInt(b.cfg.Now().UnixMilli(), 10)},
	).AsStrSlice()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*hub.ClientInfo, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		info, err := decodeInfo([]byte(kv[i+1]))
		if err != nil {
			// An undecodable entry is dropped from the answer, not fatal
			// for the channel.
			b.log.Warn("bad presence entry", "channel", channel, "client", kv[i], "error", err)
			continue
		}
		out[kv[i]] = info
	}
	return out, nil
}
