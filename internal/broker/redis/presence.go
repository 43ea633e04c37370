package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// localPresence is what this process added and has not removed: the
// refresher re-adds it every PresenceRefresh, so entries live while their
// process does and vanish PresenceTTL after it dies.
//
// Every add or claim writes a token of its own with the entry (see
// scripts.go), which the refreshes of that entry keep. A refresh writes an
// entry only while it is absent or still this broker's write (refreshable
// in scripts.go), so it never replaces another's write (another
// process's after a handover, say). An entry
// removed after a refresh's snapshot may be written back by it when it is
// absent: while a refresh runs (tracking), removals are recorded
// (removed), and after it the refresher removes those still not held
// again, each only while it is the very write of the refresh
// (compare-and-delete), so that an entry written meanwhile, here or
// elsewhere, stays.
//
// The writes and removals of one (channel, client) by this process hold
// that key's lock (lockKey) over the Redis call and the local record, so
// the record follows Redis's order; no other lock is held over a Redis
// call, and the refresher takes none. A refresh finding the entry written
// by this broker with another token and the same info (a write the
// record missed, or one a Redis restore brought back) refreshes it and
// adopts its token while the record is still the snapshot's; one finding
// another process's write drops the record (again only while it is the
// snapshot's): the refresher lets that entry go for good, and does not
// write it back once that process removes it.
type localPresence struct {
	mu       sync.Mutex
	entries  map[presenceKey]localEntry
	tracking bool
	removed  map[presenceKey]struct{}
	// writing holds the per-key write locks in use, with their users.
	writing map[presenceKey]*keyLock
	// tokPrefix and tokSeq make the write tokens: unique to this broker,
	// then to the write.
	tokPrefix string
	tokSeq    atomic.Uint64
	// afterSnapshot, when set (tests only), runs between a refresh's
	// snapshot and its writes; afterWrite between an add's or claim's
	// Redis call and its local record.
	afterSnapshot func()
	afterWrite    func()
}

// localEntry is an entry to refresh: its encoded info, the token of its
// write and its claim key (ClaimPresence; "" for none), which each
// refresh takes again when no other live entry has it (after a Redis
// restart that lost it, say).
type localEntry struct {
	enc []byte
	tok string
	key string
}

type presenceKey struct{ channel, client string }

// keyLock serialises this process's writes of one key; n counts the
// goroutines holding or waiting for it (guarded by localPresence.mu).
type keyLock struct {
	mu sync.Mutex
	n  int
}

// lockKey takes k's write lock and returns its unlock; locks of other
// keys are independent, and a lock no one uses is dropped.
func (b *Broker) lockKey(k presenceKey) func() {
	l := &b.local
	l.mu.Lock()
	kl := l.writing[k]
	if kl == nil {
		kl = &keyLock{}
		if l.writing == nil {
			l.writing = map[presenceKey]*keyLock{}
		}
		l.writing[k] = kl
	}
	kl.n++
	l.mu.Unlock()
	kl.mu.Lock()
	return func() {
		kl.mu.Unlock()
		l.mu.Lock()
		if kl.n--; kl.n == 0 {
			delete(l.writing, k)
		}
		l.mu.Unlock()
	}
}

// newTokenPrefix returns a random prefix for a broker's write tokens.
func newTokenPrefix() string {
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand)
	return hex.EncodeToString(r[:]) + "."
}

// newToken returns the token of a new write.
func (b *Broker) newToken() string {
	return b.local.tokPrefix + strconv.FormatUint(b.local.tokSeq.Add(1), 36)
}

// presenceKeys are the keys of channel's presence: data hash, expiry
// zset, claim-key hash (scripts.go).
func (b *Broker) presenceKeys(channel string) []string {
	return []string{b.key("presence.data", channel), b.key("presence.expire", channel), b.key("presence.keys", channel)}
}

// claimExec is a claimPresenceScript call: addPresenceExec's first
// arguments, then the claim's; refresh makes it a refresh's (written only
// over the write of tok).
func (b *Broker) claimExec(channel, clientID string, info []byte, tok string, refresh bool, claim hub.PresenceClaim) rueidis.LuaExec {
	expire := b.cfg.Now().Add(b.cfg.PresenceTTL).UnixMilli()
	always := "0"
	if claim.Always {
		always = "1"
	}
	x := rueidis.LuaExec{
		Keys: b.presenceKeys(channel),
		Args: []string{clientID, rueidis.BinaryString(info), strconv.FormatInt(expire, 10), ms(b.cfg.PresenceTTL),
			strconv.FormatInt(b.cfg.Now().UnixMilli(), 10), strconv.Itoa(max(claim.Max, 0)), claim.Key, always,
			tok, flag(refresh), b.local.tokPrefix},
	}
	x.Args = append(x.Args, claim.Ignore...)
	return x
}

// addPresenceExec is an addPresenceScript call (refresh: see claimExec).
func (b *Broker) addPresenceExec(channel, clientID string, info []byte, tok string, refresh bool) rueidis.LuaExec {
	now := b.cfg.Now()
	return rueidis.LuaExec{
		Keys: b.presenceKeys(channel),
		Args: []string{clientID, rueidis.BinaryString(info), strconv.FormatInt(now.Add(b.cfg.PresenceTTL).UnixMilli(), 10),
			ms(b.cfg.PresenceTTL), tok, flag(refresh), strconv.FormatInt(now.UnixMilli(), 10), b.local.tokPrefix},
	}
}

func flag(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// AddPresence records info under clientID for PresenceTTL; calling it
// again refreshes the entry (and replaces info). Until RemovePresence the
// broker refreshes the entry itself every PresenceRefresh, while it is
// still this write (not replaced by another process's).
func (b *Broker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo) error {
	enc, tok := encodeInfo(info), b.newToken()
	defer b.lockKey(presenceKey{channel, clientID})()
	x := b.addPresenceExec(channel, clientID, enc, tok, false)
	if err := addPresenceScript.Exec(ctx, b.client, x.Keys, x.Args).Error(); err != nil {
		return opErr("add presence", channel, err)
	}
	b.keepRefreshing(channel, clientID, enc, tok, "")
	return nil
}

// keepRefreshing has the refresher re-add an entry just written with
// token tok, with claim key key ("": the key it had, if any: a plain add
// keeps it).
func (b *Broker) keepRefreshing(channel, clientID string, enc []byte, tok, key string) {
	if b.local.afterWrite != nil {
		b.local.afterWrite()
	}
	if b.cfg.PresenceRefresh > 0 {
		k := presenceKey{channel, clientID}
		b.local.mu.Lock()
		if key == "" {
			key = b.local.entries[k].key
		}
		b.local.entries[k] = localEntry{enc: enc, tok: tok, key: key}
		b.local.mu.Unlock()
	}
}

// ClaimPresence adds info under clientID like AddPresence when claim
// holds, in one script that first drops the channel's expired entries
// (hub.PresenceClaimer); a refused claim writes nothing. The claim key is
// kept by the refreshes and freed by RemovePresence or expiry.
func (b *Broker) ClaimPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, claim hub.PresenceClaim) (hub.ClaimResult, error) {
	enc, tok := encodeInfo(info), b.newToken()
	defer b.lockKey(presenceKey{channel, clientID})()
	x := b.claimExec(channel, clientID, enc, tok, false, claim)
	reply, err := claimPresenceScript.Exec(ctx, b.client, x.Keys, x.Args).AsStrSlice()
	if err != nil {
		return hub.ClaimResult{}, opErr("claim presence", channel, err)
	}
	res, err := parseClaim(reply)
	if err != nil {
		return hub.ClaimResult{}, opErr("claim presence", channel, err)
	}
	if res.Added {
		b.keepRefreshing(channel, clientID, enc, tok, claim.Key)
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

// refreshLocal re-adds every local entry once, each only while it is
// absent or still this broker's write, then removes again the entries
// removed meanwhile that the writes may have brought back (see
// localPresence).
func (b *Broker) refreshLocal() {
	b.local.mu.Lock()
	snap := make(map[presenceKey]localEntry, len(b.local.entries))
	var plain, keyed refreshSet
	for k, e := range b.local.entries {
		snap[k] = e
		if e.key == "" {
			plain.add(k, b.addPresenceExec(k.channel, k.client, e.enc, e.tok, true))
		} else {
			keyed.add(k, b.claimExec(k.channel, k.client, e.enc, e.tok, true, hub.PresenceClaim{Key: e.key, Always: true}))
		}
	}
	b.local.tracking, b.local.removed = true, nil
	hook := b.local.afterSnapshot
	b.local.mu.Unlock()
	if hook != nil {
		hook()
	}
	settle := func(i int, reply []string) { b.settleRefresh(snap, plain.keys[i], reply) }
	b.refreshBatches(addPresenceScript, plain.execs, settle)
	settle = func(i int, reply []string) { b.settleRefresh(snap, keyed.keys[i], reply) }
	b.refreshBatches(claimPresenceScript, keyed.execs, settle)

	b.local.mu.Lock()
	var undo []rueidis.LuaExec
	for k := range b.local.removed {
		e, inSnap := snap[k]
		if _, held := b.local.entries[k]; inSnap && !held {
			undo = append(undo, rueidis.LuaExec{Keys: b.presenceKeys(k.channel), Args: []string{k.client, rueidis.BinaryString(e.enc), e.tok}})
		}
	}
	b.local.tracking, b.local.removed = false, nil
	b.local.mu.Unlock()
	b.refreshBatches(remOwnPresenceScript, undo, nil)
}

// refreshSet is a refresh's calls with the key of each.
type refreshSet struct {
	keys  []presenceKey
	execs []rueidis.LuaExec
}

func (s *refreshSet) add(k presenceKey, x rueidis.LuaExec) {
	s.keys, s.execs = append(s.keys, k), append(s.execs, x)
}

// settleRefresh applies the reply of k's refresh to its local record
// while the record is still the snapshot's: {'w', token} adopts the token
// written (this broker's write that the record missed), {'o'} (another
// process's write) drops the record; {'s'} leaves it.
func (b *Broker) settleRefresh(snap map[presenceKey]localEntry, k presenceKey, reply []string) {
	was := snap[k]
	b.local.mu.Lock()
	defer b.local.mu.Unlock()
	e, ok := b.local.entries[k]
	if !ok || e.tok != was.tok {
		return
	}
	switch {
	case len(reply) == 2 && reply[0] == "w" && reply[1] != e.tok:
		e.tok = reply[1]
		b.local.entries[k] = e
	case len(reply) == 1 && reply[0] == "o":
		delete(b.local.entries, k)
		b.log.Debug("presence entry taken by another process", "channel", k.channel, "client", k.client)
	}
}

// refreshTimeoutMin is the least time a refresh batch is given, however
// short PresenceRefresh is.
const refreshTimeoutMin = time.Second

// refreshBatches runs script for execs, presenceBatch at a time, each
// batch within PresenceRefresh (refreshTimeoutMin at least), and passes
// settle (when not nil) the index and reply of each call that answered.
func (b *Broker) refreshBatches(script *rueidis.Lua, execs []rueidis.LuaExec, settle func(i int, reply []string)) {
	for i := 0; i < len(execs); i += presenceBatch {
		ctx, cancel := context.WithTimeout(b.ctx, max(b.cfg.PresenceRefresh, refreshTimeoutMin))
		for j, r := range script.ExecMulti(ctx, b.client, execs[i:min(i+presenceBatch, len(execs))]...) {
			if err := r.Error(); err != nil {
				b.log.Warn("presence refresh failed", "error", err)
				break
			}
			if settle != nil {
				if reply, err := r.AsStrSlice(); err == nil {
					settle(i+j, reply)
				}
			}
		}
		cancel()
	}
}

const presenceBatch = 512

// ReleasePresence stops refreshing clientID's entry in channel without
// removing it (hub.PresenceReleaser): it expires PresenceTTL after its
// last write unless another process writes it again. A refresh under way
// may still write it once, only while it is absent or this process's
// write, never over another's.
func (b *Broker) ReleasePresence(_ context.Context, channel, clientID string) error {
	b.local.mu.Lock()
	delete(b.local.entries, presenceKey{channel, clientID})
	b.local.mu.Unlock()
	return nil
}

// RemovePresence forgets clientID in channel; an absent client is not an
// error.
func (b *Broker) RemovePresence(ctx context.Context, channel, clientID, _ string) error {
	defer b.lockKey(presenceKey{channel, clientID})()
	b.forget(channel, clientID)
	err := remPresenceScript.Exec(ctx, b.client, b.presenceKeys(channel),
		[]string{clientID},
	).Error()
	if err != nil {
		return opErr("remove presence", channel, err)
	}
	return nil
}

// forget drops clientID's local entry in channel, as removed (see
// localPresence).
func (b *Broker) forget(channel, clientID string) {
	k := presenceKey{channel, clientID}
	b.local.mu.Lock()
	defer b.local.mu.Unlock()
	delete(b.local.entries, k)
	if b.local.tracking {
		if b.local.removed == nil {
			b.local.removed = map[presenceKey]struct{}{}
		}
		b.local.removed[k] = struct{}{}
	}
}

// RemovePresenceIf removes clientID's entry in channel only while it holds
// info (the same encoding), in one script (hub.PresenceConditionalRemover):
// an entry written meanwhile with other info, by any process, stays. It
// reports whether it removed one. This process stops refreshing its own
// entry only when that is the one removed.
func (b *Broker) RemovePresenceIf(ctx context.Context, channel, clientID string, info *hub.ClientInfo) (bool, error) {
	enc := encodeInfo(info)
	k := presenceKey{channel, clientID}
	defer b.lockKey(k)()
	b.local.mu.Lock()
	e, ok := b.local.entries[k]
	b.local.mu.Unlock()
	if ok && bytes.Equal(e.enc, enc) {
		b.forget(channel, clientID)
	}
	n, err := remOwnPresenceScript.Exec(ctx, b.client, b.presenceKeys(channel),
		[]string{clientID, rueidis.BinaryString(enc), ""},
	).AsInt64()
	if err != nil {
		return false, opErr("remove presence", channel, err)
	}
	return n == 1, nil
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
