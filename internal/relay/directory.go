package relay

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// The NodeId directory (the Redis engine). Every registered connection
// (ISSUN and native, once its handshake is accepted) has a hub presence
// entry in the channel of its NodeId (nodeChannel), under its session id,
// whose ChanInfo (presenceEntry) names its process. It is written at
// register, kept while the session is parked, and removed when the
// session ends (unregister) or is handed over to another process (whose
// register writes it again, and again on opPresent, since the issuer's
// removal may come after). The broker refreshes the entry while its
// process lives; a dead process's entries go with the presence TTL.
//
//   - Handshakes: an ISSUN NodeId present on another process is refused
//     as a duplicate, as is a native NodeId (asked for, not assigned)
//     held there by another user or an anonymous session (the same user's
//     parked session is ended at JOIN, cluster.freeNode). With a
//     PresenceClaimer the entry's first write is the check, one atomic
//     step for every process (dirClaim, claims.go); without one it is a
//     read before the write (nodeElsewhere), best-effort. A failed claim
//     or read lets the handshake through (logged): the local check still
//     holds, and rooms check NodeIds again at JOIN.
//   - ISSUN targeted events to a NodeId neither connected here nor a
//     known remote member (issunNodes) are sent to the process holding it
//     (busTarget on its processTopic), found through a small cache
//     (dirState) filled by lookups in the background: the connection's
//     read loop never waits for Redis.

// nodeChannel is the hub channel of NodeId id's directory entry. It is in
// the relay namespace (which has presence) but no room's: the byte 0xff
// never appears in a room name, which is UTF-8.
func nodeChannel(id wire.NodeID) string {
	return ChannelPrefix + "\xffnode:" + strconv.FormatUint(uint64(id), 10)
}

// Directory limits.
const (
	// dirTimeout bounds a directory read or write made in a handshake.
	dirTimeout = 2 * time.Second
	// dirTTL is how long a lookup's answer is trusted.
	dirTTL = 1500 * time.Millisecond
	// dirCacheSize bounds the cache entries (lookups in progress included).
	dirCacheSize = 4096
	// dirWaiting bounds the events waiting for one lookup.
	dirWaiting = 64
	// dirLookups bounds the lookups in progress at once (each a Redis
	// read): targets beyond are dropped, not queued.
	dirLookups = 16
)

// Drop reason of an event beyond dirWaiting, or with the cache full of
// lookups in progress.
const dropLookupFull = "node_lookup_full"

// Outcomes of directory lookups (switchboard_relay_node_lookups_total).
const (
	lookupFound   = "found"
	lookupMissing = "missing"
	lookupFailed  = "failed"
)

// dirEntry is a cached lookup: process "" for nobody (or a failed read).
type dirEntry struct {
	process string
	expires time.Time
	pending bool     // the lookup is in progress
	waiting [][]byte // frames to forward when it answers
}

// dirState is the cluster's directory cache and metrics; cache is
// guarded by cluster.dirMu.
type dirState struct {
	cache   map[wire.NodeID]*dirEntry
	lookups *prometheus.CounterVec
	full    prometheus.Counter
	// lookupWait bounds a lookup (dirTimeout; tests hold lookups longer).
	lookupWait atomic.Int64
	// handshakeWait bounds a handshake's read (nodeElsewhere) besides the
	// handshake's own deadline (dirTimeout; tests make it longer).
	handshakeWait atomic.Int64
	// writeWait bounds a directory write (dirAdd; dirTimeout, tests make
	// it longer).
	writeWait atomic.Int64
	// running holds a token per lookup in progress (dirLookups).
	running chan struct{}
	// forgetting: session ids of dead processes' entries being removed
	// (dirForget; guarded by cluster.dirMu).
	forgetting map[string]struct{}
}

func (cl *cluster) initDirectory() error {
	cl.dir.cache = map[wire.NodeID]*dirEntry{}
	cl.dir.forgetting = map[string]struct{}{}
	cl.dir.lookupWait.Store(int64(dirTimeout))
	cl.dir.handshakeWait.Store(int64(dirTimeout))
	cl.dir.writeWait.Store(int64(dirTimeout))
	cl.dir.running = make(chan struct{}, dirLookups)
	cl.dir.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_node_lookups_total",
		Help: "Cluster NodeId directory lookups for ISSUN targeted events, by outcome (found, missing, failed)."}, []string{"outcome"})
	for _, o := range []string{lookupFound, lookupMissing, lookupFailed} {
		cl.dir.lookups.WithLabelValues(o)
	}
	cl.dir.full = cl.s.metrics.drops.WithLabelValues(dropLookupFull)
	if reg := cl.s.cfg.Registerer; reg != nil {
		return reg.Register(cl.dir.lookups)
	}
	return nil
}

// dirAdd writes c's directory entry (c just registered, or its presence
// is written again); base bounds the write (with the directory's
// writeWait). One connection's writes never overlap: while one is in
// flight, a caller only records that the state changed (c.dirDirty) and
// returns true, and the writer in flight writes the latest state again
// before it returns. It reports whether the entry is written (or nothing
// is to be written: no presence, another writer's turn, or c's entry is
// removed for good); a failed write, this caller's or the one it left the
// turn to, marks the session's connection for repair (markRepair). An
// entry landing once c's session is no longer here (removed, ended, or
// handed over meanwhile) is deleted again, and a process the session was
// handed to is told to write its own again (presentAgainIfHanded: the
// deletion is under the session id). When another connection now holds
// the session (a resume on this process took it over), that one's entry
// is written again: the one written here may be stale.
func (cl *cluster) dirAdd(base context.Context, c *conn) bool {
	p := cl.s.cfg.Presence
	if p == nil {
		return true
	}
	c.mu.Lock()
	if c.dirGone {
		c.mu.Unlock()
		return true
	}
	c.dirDirty = true
	if c.dirWriting {
		c.mu.Unlock()
		return true // the writer in flight writes this state too
	}
	c.dirWriting = true
	c.mu.Unlock()
	for {
		c.mu.Lock()
		if c.dirGone || !c.dirDirty {
			gone := c.dirGone
			c.dirWriting = false
			c.mu.Unlock()
			if gone {
				return true // removed since the last write landed: dirRemove deleted it
			}
			break
		}
		c.dirDirty = false // a change from here on makes another round
		parked := c.dirParked
		c.mu.Unlock()
		info := c.presenceInfo()
		c.mu.Lock()
		c.dirUser = info.UserID
		c.mu.Unlock()
		if parked {
			var e presenceEntry
			_ = json.Unmarshal(info.ChanInfo, &e) // written by presenceInfo
			e.Parked = true
			info.ChanInfo, _ = json.Marshal(e)
		}
		ctx, cancel := context.WithTimeout(base, time.Duration(cl.dir.writeWait.Load()))
		err := p.AddPresence(ctx, nodeChannel(c.id), info)
		cancel()
		c.mu.Lock()
		gone := c.dirGone
		if gone || err != nil {
			c.dirWriting = false
		}
		c.mu.Unlock()
		if gone { // removed while the write was in flight: it must not stay
			cl.dirUndo(base, c)
			return true
		}
		if err != nil {
			cl.s.log.Warn("relay node directory add failed", "node_id", uint64(c.id), "error", err)
			cl.markRepairSession(c.id, c.sid) // the connection holding the session now
			return false
		}
	}
	switch n := cl.s.node(c.id); {
	case n == c:
		return true
	case n != nil && n.sid == c.sid:
		return cl.dirAdd(base, n)
	default: // the session is no longer here: its late entry must not stay
		c.mu.Lock()
		c.dirGone = true
		c.mu.Unlock()
		cl.dirUndo(base, c)
		return true
	}
}

// dirUndo deletes c's entry written after c's session left (dirAdd), and
// tells the process the session was handed to, if any, to write its own
// again: the deletion is under the session id, which that one shares.
func (cl *cluster) dirUndo(base context.Context, c *conn) {
	cl.dirDelete(c)
	cl.presentAgainIfHanded(base, c)
	// The session came back here meanwhile (handed away and resumed here
	// again, under the same session id): the deletion took its live entry.
	if n := cl.s.node(c.id); n != nil && n != c && n.sid == c.sid {
		cl.dirAdd(base, n)
	}
}

// dirMarkParked rewrites c's directory entry saying whether it is parked
// (a native session lost within its resume window), which the same user
// may take over from another process. It does not wait for a write of c
// in flight, which writes the new state once done (dirAdd).
func (cl *cluster) dirMarkParked(c *conn, parked bool) {
	c.mu.Lock()
	c.dirParked = parked
	c.mu.Unlock()
	cl.dirAdd(cl.ctx, c)
}

// dirRemove removes c's directory entry for good: a write of it still in
// flight (dirAdd) is undone.
func (cl *cluster) dirRemove(c *conn) {
	c.mu.Lock()
	c.dirGone = true
	c.mu.Unlock()
	cl.dirDelete(c)
}

// dirRelease is dirRemove for a session handed over to another process,
// which rewrites the entry under the same session id: this process only
// stops refreshing it (releasePresence), so the NodeId stays reserved
// throughout the move.
func (cl *cluster) dirRelease(c *conn) {
	c.mu.Lock()
	c.dirGone = true
	c.mu.Unlock()
	cl.dirDrop(c, releasePresence)
}

// dirDelete deletes c's directory entry from the engine.
func (cl *cluster) dirDelete(c *conn) {
	cl.dirDrop(c, func(ctx context.Context, p Presence, channel, sid, user string) error {
		return p.RemovePresence(ctx, channel, sid, user)
	})
}

// dirDrop deletes or releases (drop) c's directory entry.
func (cl *cluster) dirDrop(c *conn, drop func(ctx context.Context, p Presence, channel, sid, user string) error) {
	p := cl.s.cfg.Presence
	if p == nil {
		return
	}
	c.mu.Lock()
	id, sid, user := c.id, c.sid, c.dirUser
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(cl.s.opBase, dirTimeout) // Shutdown's deadline ends it
	defer cancel()
	if err := drop(ctx, p, nodeChannel(id), sid, user); err != nil {
		cl.s.log.Warn("relay node directory remove failed", "node_id", uint64(id), "error", err)
	}
}

// presenceReleaser is a Presence that can let go of an entry without
// removing it (*hub.Hub: hub.PresenceReleaser).
type presenceReleaser interface {
	ReleasePresence(ctx context.Context, channel, clientID, userID string) error
}

// releasePresence lets go of this process's entry of session sid in
// channel without removing it, when p can (presenceReleaser); else it
// removes it.
func releasePresence(ctx context.Context, p Presence, channel, sid, user string) error {
	if r, ok := p.(presenceReleaser); ok {
		return r.ReleasePresence(ctx, channel, sid, user)
	}
	return p.RemovePresence(ctx, channel, sid, user)
}

// dirHolder is a session holding a NodeId on another process.
type dirHolder struct {
	process, user, sid string
	parked             bool
}

// dirRead lists the sessions holding id on other processes that are not
// dead (liveness.go); the entries of dead ones that may be cleaned by
// others (liveView.cleanable: not one that left cleanly, which removes
// its own while it drains) are removed in the background (dirForget).
func (cl *cluster) dirRead(ctx context.Context, id wire.NodeID) ([]dirHolder, error) {
	hs, _, err := cl.dirScan(ctx, id)
	return hs, err
}

// dirScan is dirRead; it also returns the session ids of the entries of
// the channel that hold nothing (this process's, malformed ones, the dead
// processes'), which a claim ignores (dirClaim).
func (cl *cluster) dirScan(ctx context.Context, id wire.NodeID) (holders []dirHolder, skipped []string, err error) {
	pres, err := cl.lister.Presence(ctx, nodeChannel(id))
	if err != nil {
		return nil, nil, err
	}
	var dead []dirHolder
	var v *liveView
	for sid, info := range pres {
		var e presenceEntry
		if json.Unmarshal(info.ChanInfo, &e) != nil || e.Process == "" || e.Process == cl.origin {
			skipped = append(skipped, sid)
			continue
		}
		if n, err := strconv.ParseUint(e.NodeID, 10, 64); err != nil || wire.NodeID(n) != id {
			skipped = append(skipped, sid)
			continue
		}
		h := dirHolder{process: e.Process, user: info.UserID, sid: sid, parked: e.Parked}
		if v == nil {
			lv := cl.liveness()
			v = &lv
		}
		if v.dead(e.Process) {
			skipped = append(skipped, sid)
			if v.cleanable(e.Process) {
				dead = append(dead, h) // one that left cleanly removes its own
			}
			continue
		}
		holders = append(holders, h)
	}
	if len(dead) > 0 {
		cl.dirForget(id, dead)
	}
	return holders, skipped, nil
}

// dirForget removes the directory entries of id that dead processes left
// (their sessions died with them), in a goroutine the cluster owns: the
// handshake or lookup that found them does not wait. A failure is logged;
// the next read finds the entry again.
//
// An entry whose removal is under way already (another read found it) is
// skipped (dir.forgetting).
func (cl *cluster) dirForget(id wire.NodeID, dead []dirHolder) {
	cl.dirMu.Lock()
	todo := dead[:0:0]
	for _, h := range dead {
		if _, busy := cl.dir.forgetting[h.sid]; !busy {
			cl.dir.forgetting[h.sid] = struct{}{}
			todo = append(todo, h)
		}
	}
	cl.dirMu.Unlock()
	if len(todo) == 0 {
		return
	}
	done := func() {
		cl.dirMu.Lock()
		for _, h := range todo {
			delete(cl.dir.forgetting, h.sid)
		}
		cl.dirMu.Unlock()
	}
	if !cl.goRun(func() {
		defer done()
		ctx, cancel := cl.opCtx()
		defer cancel()
		for _, h := range todo {
			if err := cl.s.cfg.Presence.RemovePresence(ctx, nodeChannel(id), h.sid, h.user); err != nil {
				cl.s.log.Warn("relay node directory remove of a dead process's entry failed", "node_id", uint64(id), "error", err)
			}
		}
	}) {
		done()
	}
}

// nodeElsewhere reports whether another process holds id, for a
// handshake; sameUser, when not empty, is a user whose parked sessions
// there do not count (a JOIN ends them, freeNode; a live one does count).
// The read ends with ctx (the handshake's) or after dirTimeout. A failed
// read reports false (logged): see the top.
func (cl *cluster) nodeElsewhere(ctx context.Context, id wire.NodeID, sameUser string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cl.dir.handshakeWait.Load()))
	defer cancel()
	hs, err := cl.dirRead(ctx, id)
	if err != nil {
		cl.s.log.Warn("relay node directory read failed: handshake accepted", "node_id", uint64(id), "error", err)
		return false
	}
	for _, h := range hs {
		if sameUser == "" || h.user != sameUser || !h.parked {
			return true
		}
	}
	return false
}

// forwardByDirectory sends an ISSUN targeted event to the process holding
// target, by the cache or a lookup it starts; false when the cache knows
// nobody has it (the caller counts unknown_target). It never blocks on
// the engine.
func (cl *cluster) forwardByDirectory(target wire.NodeID, frame []byte) bool {
	now := cl.s.cfg.Clock.Now()
	cl.dirMu.Lock()
	e := cl.dir.cache[target]
	if e != nil && !e.pending && !now.Before(e.expires) {
		delete(cl.dir.cache, target)
		e = nil
	}
	switch {
	case e != nil && e.pending:
		if len(e.waiting) >= dirWaiting {
			cl.dirMu.Unlock()
			cl.dir.full.Inc()
			return true
		}
		e.waiting = append(e.waiting, append([]byte(nil), frame...))
		cl.dirMu.Unlock()
		return true
	case e != nil:
		process := e.process
		if process != "" && cl.liveness().dead(process) {
			// Found on a process that died since (liveness.go): nobody has
			// it now, as far as this process knows; the next event reads
			// the directory again.
			delete(cl.dir.cache, target)
			process = ""
		}
		cl.dirMu.Unlock()
		if process == "" {
			return false
		}
		cl.enqueue(processTopic(process), busFrame(busTarget, transportISSUN, cl.origin, frame))
		return true
	}
	if !cl.dirRoomLocked(now) {
		cl.dirMu.Unlock()
		cl.dir.full.Inc()
		return true
	}
	select {
	case cl.dir.running <- struct{}{}:
	default: // as many lookups as allowed run already
		cl.dirMu.Unlock()
		cl.dir.full.Inc()
		return true
	}
	e = &dirEntry{pending: true, waiting: [][]byte{append([]byte(nil), frame...)}}
	cl.dir.cache[target] = e
	cl.dirMu.Unlock()
	if !cl.goRun(func() { defer func() { <-cl.dir.running }(); cl.lookup(target, e) }) {
		<-cl.dir.running
		cl.dirMu.Lock()
		delete(cl.dir.cache, target)
		cl.dirMu.Unlock()
		cl.dropPub.Inc() // closing: nobody will publish it
	}
	return true
}

// dirRoomLocked makes room for one more cache entry (dirMu held): expired
// entries go, then any answered one; false when all are lookups in
// progress.
func (cl *cluster) dirRoomLocked(now time.Time) bool {
	if len(cl.dir.cache) < dirCacheSize {
		return true
	}
	for id, e := range cl.dir.cache {
		if !e.pending && !now.Before(e.expires) {
			delete(cl.dir.cache, id)
		}
	}
	if len(cl.dir.cache) < dirCacheSize {
		return true
	}
	for id, e := range cl.dir.cache {
		if !e.pending {
			delete(cl.dir.cache, id)
			return true
		}
	}
	return false
}

// lookup reads target's directory entry for e (in its own goroutine),
// then forwards e's waiting frames or counts them unknown.
func (cl *cluster) lookup(target wire.NodeID, e *dirEntry) {
	ctx, cancel := context.WithTimeout(cl.syncCtx, time.Duration(cl.dir.lookupWait.Load())) // close cancels it first
	hs, err := cl.dirRead(ctx, target)
	cancel()
	process := ""
	switch {
	case err != nil:
		cl.dir.lookups.WithLabelValues(lookupFailed).Inc()
		if cl.syncCtx.Err() == nil {
			cl.s.log.Warn("relay node directory lookup failed", "node_id", uint64(target), "error", err)
		}
	case len(hs) == 0:
		cl.dir.lookups.WithLabelValues(lookupMissing).Inc()
	default:
		cl.dir.lookups.WithLabelValues(lookupFound).Inc()
		process = hs[0].process
	}
	cl.dirMu.Lock()
	waiting := e.waiting
	e.waiting, e.pending, e.process = nil, false, process
	e.expires = cl.s.cfg.Clock.Now().Add(dirTTL)
	if err != nil && cl.dir.cache[target] == e {
		delete(cl.dir.cache, target) // a failed read is not remembered
	}
	cl.dirMu.Unlock()
	for _, f := range waiting {
		if process == "" {
			cl.s.metrics.drops.WithLabelValues(dropUnknownTarget).Inc()
			continue
		}
		cl.enqueue(processTopic(process), busFrame(busTarget, transportISSUN, cl.origin, f))
	}
}

// deliverTargeted delivers an ISSUN targeted event another process sent
// here by the directory to its target, by the local rules.
func (cl *cluster) deliverTargeted(m *busMessage) {
	s := cl.s
	frame := m.frame
	if m.transport != transportISSUN {
		cl.dropBad.Inc()
		return
	}
	h, err := wire.ParseHeader(frame, wire.VersionISSUN, s.cfg.MaxFrame)
	if err == nil && int(h.Length) != len(frame)-wire.HeaderSize {
		err = wire.ErrTruncated
	}
	if err != nil {
		cl.dropBad.Inc()
		return
	}
	v, err := wire.ParseEvent(frame[wire.HeaderSize:], s.cfg.MaxTypeName)
	if err != nil || v.Scope.Kind != wire.ScopeTargeted {
		cl.dropBad.Inc()
		return
	}
	if t := s.node(v.Scope.Target); t != nil && t.issunReceiver() {
		t.send(frame)
		return
	}
	s.metrics.drops.WithLabelValues(dropUnknownTarget).Inc()
}
