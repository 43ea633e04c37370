package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Process liveness (the Redis engine with a node registry, Config.Nodes).
// The relay's id on the bus (cluster.origin) is then its hub node id, so
// presence entries, directory entries, bus messages and the registry name
// a process the same way, and the registry tells which processes are gone
// (liveView.dead) long before the engine's presence TTL would:
//
//   - only a complete registry judges (NodeLister.RegistryComplete: this
//     process hears its own announcements), so a process whose control
//     plane is down, just started or closing takes nobody for dead;
//   - a process is dead once the complete registry has not listed it, at
//     every check, for NodeLister.EchoGap (liveState.missing): a complete
//     registry may have missed that much of a live node's announcements
//     (a receive outage RegistryComplete tolerates, a full control
//     queue), so a shorter absence judges nothing. One that left cleanly
//     (LeftIDs) is dead at once;
//   - remote members (rooms and lobby) of a dead process are dropped by
//     the liveness goroutine, every livenessEvery, with the news a bus
//     leave brings (dropDead); a sync adds none back, nor does a late
//     bus join;
//   - the NodeId directory skips a dead process's entries (a handshake
//     with its NodeIds is accepted, a targeted event finds nobody) and
//     removes them (dirRead);
//   - a resume token or redirect naming a dead process is unknown at once,
//     and a JOIN meeting one of its members drops it (freeNode);
//   - the hub presence of relay:R that a dead process wrote is removed by
//     one live process, which publishes a hub leave per member (the
//     cleaner, see sync and cleanDead), once the process has been seen
//     dead for deadSettle; never that of a process that left the
//     registry cleanly (liveView.cleanable): it cleans its own.

// NodeLister is the registry of the live processes sharing the engine
// (*hub.Hub, whose control plane links them). Safe for concurrent use.
//
// Contract: its clock is Config.Clock (the TTL and RegistryComplete are
// measured on it); NodeID is stable for the life of the process; a
// registry without a control plane lists only this node, and then
// RegistryComplete is always false, so no process is ever judged dead. A
// node listed as left (LeftIDs) is one whose relay is closing: it removes
// its own presence and directory entries and publishes its own hub
// leaves, so no other process cleans them.
type NodeLister interface {
	// NodeID is this process's id in the registry: 1 to 64 bytes of
	// lowercase hex digits and '-' (a hub's random id is), stable for the
	// process's life.
	NodeID() string
	// LiveIDs lists the ids of the live nodes, this one included. It is
	// cheap (no figures), though the relay reads it only once a check.
	LiveIDs() []string
	// LeftIDs lists the nodes that left cleanly (announced their
	// shutdown) within the last NodeTTL.
	LeftIDs() []string
	// RegistryComplete reports whether LiveIDs can be trusted to list
	// every live node: this node's own announcements have been coming
	// back through the control plane, without a gap, for at least
	// NodeTTL, and it is not shutting down.
	RegistryComplete() bool
	// NodeTTL is how long a node stays listed after its last
	// announcement.
	NodeTTL() time.Duration
	// EchoGap is the longest gap in this node's own echoes that
	// RegistryComplete tolerates: how long a live node may be missing
	// from a complete registry's LiveIDs.
	EchoGap() time.Duration
}

const (
	// livenessEvery is the period of the liveness goroutine: every second
	// rather than at each sync, since a check reads memory only (the
	// registry and the rooms' remote members), where a sync reads Redis.
	livenessEvery = time.Second
	// deadSettle is how long a process must have been seen dead before its
	// hub presence is cleaned up by another one: a margin for a process
	// taken for dead while its announcements were briefly lost (one that
	// stopped cleanly is never cleaned up by another: cleanable).
	deadSettle = 2 * opTimeout
	// deadHorizon is how long a process seen dead is remembered.
	deadHorizon = 10 * time.Minute
)

// Event of switchboard_relay_cross_process_sessions_total: a remote room
// or lobby member dropped because its process died.
const sessionProcessDied = "process_died"

// liveState is the cluster's liveness bookkeeping. view is the reading of
// the registry the last check stored (read without a lock by handshakes,
// syncs and bus messages); the other fields are guarded by mu, taken
// after any room lock and held across no call.
type liveState struct {
	view atomic.Pointer[liveView]
	mu   sync.Mutex
	// since: when each process was first seen dead (deadSettle).
	since map[string]time.Time
	// due: rooms to sync once a dead process's hub presence may be
	// cleaned up there.
	due map[*busRoom]time.Time
	// left: processes seen leaving the registry cleanly, and when; kept
	// for deadHorizon (the registry forgets them after its TTL).
	left map[string]time.Time
	// missing: when each process once listed was first found missing
	// from a complete registry at a check (deleted when listed again, or
	// after deadHorizon); complete: since when the registry has been
	// complete at every check (zero: it was not at the last one).
	missing  map[string]time.Time
	complete time.Time
	// seen: the processes a complete registry listed (forgotten with
	// their missing entry).
	seen map[string]struct{}
	// met: when each process never listed was first met (a presence
	// entry, a bus message, a token naming it) while a complete registry
	// did not list it; forgotten once listed or after deadHorizon.
	met map[string]time.Time
	// cleans: the cleanup bookkeeping of each channel with a cleanup or
	// a sync's read in progress (cleanPick), by channel: per channel,
	// not per busRoom, since a room released and held again (a new
	// busRoom) must not remove the same entries a second time.
	cleans map[string]*chanClean
	died   prometheus.Counter
}

// chanClean is the cleanup bookkeeping of one channel (liveState.cleans,
// guarded by liveState.mu).
type chanClean struct {
	// removing: the session ids of dead processes' entries a cleanup is
	// removing; a pick skips them.
	removing map[string]struct{}
	// ended counts the cleanups ended; readers the syncs between their
	// read's start and their pick. A channel with neither a cleanup nor
	// a reader is forgotten.
	ended   uint64
	readers int
}

// liveView is one reading of the node registry (refreshLiveness).
type liveView struct {
	judging bool // the registry can tell a dead process
	self    string
	live    map[string]struct{}
	left    map[string]struct{} // left cleanly: dead, but cleans its own entries
	// waiting: processes listed before and missing for less than the
	// confirmation time (EchoGap): not dead yet. confirmed: the registry
	// has been complete for that long, so any other process not listed
	// is dead.
	waiting   map[string]struct{}
	confirmed bool
	// seen: the processes a complete registry listed before; met and now
	// decide on any other (firstMet): a process that just started may
	// be heard from (its bus messages, its presence) before its first
	// announcement reaches this one.
	seen map[string]struct{}
	gap  time.Duration
	met  func(p string) time.Duration
}

// liveness returns the last reading of the node registry, stored by the
// liveness check every livenessEvery: no engine or hub call. It judges no
// process dead without a registry, while the registry is not complete
// (RegistryComplete: this process's control plane does not work, or has
// not worked for the TTL yet), nor once the relay is closing.
func (cl *cluster) liveness() liveView {
	if v := cl.live.view.Load(); v != nil && !cl.s.closing.Load() {
		return *v
	}
	return liveView{}
}

// refreshLiveness reads the node registry and stores the view liveness
// returns.
func (cl *cluster) refreshLiveness() {
	n := cl.s.cfg.Nodes
	if n == nil {
		return
	}
	now := cl.s.cfg.Clock.Now()
	leftIDs := n.LeftIDs()
	confirm := n.EchoGap()
	complete := n.RegistryComplete() && !cl.s.closing.Load()
	v := liveView{}
	if complete {
		ids := n.LiveIDs()
		v = liveView{judging: true, self: cl.origin, live: make(map[string]struct{}, len(ids))}
		for _, id := range ids {
			v.live[id] = struct{}{}
		}
	}
	cl.live.mu.Lock()
	if complete {
		if cl.live.complete.IsZero() {
			cl.live.complete = now
		}
		v.confirmed = now.Sub(cl.live.complete) >= confirm
		v.gap, v.met = confirm, cl.unlistedFor
		for id := range cl.live.missing {
			if _, back := v.live[id]; back {
				delete(cl.live.missing, id) // listed again: a new absence starts afresh
			}
		}
		for id := range cl.live.seen {
			if _, ok := v.live[id]; !ok {
				if _, ok := cl.live.missing[id]; !ok {
					cl.live.missing[id] = now
				}
			}
		}
		for id, first := range cl.live.missing {
			if now.Sub(first) > deadHorizon {
				delete(cl.live.missing, id)
				delete(cl.live.seen, id)
				continue
			}
			// Missing since the registry became complete at the latest:
			// an absence while it was not does not count.
			at := first
			if at.Before(cl.live.complete) {
				at = cl.live.complete
			}
			if now.Sub(at) < confirm {
				if v.waiting == nil {
					v.waiting = map[string]struct{}{}
				}
				v.waiting[id] = struct{}{}
			}
		}
		for id := range v.live {
			cl.live.seen[id] = struct{}{}
		}
		v.seen = make(map[string]struct{}, len(cl.live.seen))
		for id := range cl.live.seen {
			v.seen[id] = struct{}{}
		}
		for id, at := range cl.live.met {
			if _, listed := v.live[id]; listed || now.Sub(at) > deadHorizon {
				delete(cl.live.met, id)
			}
		}
	} else {
		cl.live.complete = time.Time{}
	}
	for _, id := range leftIDs {
		if _, ok := cl.live.left[id]; !ok {
			cl.live.left[id] = now
		}
	}
	for id, at := range cl.live.left {
		if _, back := v.live[id]; back || now.Sub(at) > deadHorizon {
			delete(cl.live.left, id)
		}
	}
	if complete && len(cl.live.left) > 0 {
		v.left = make(map[string]struct{}, len(cl.live.left))
		for id := range cl.live.left {
			v.left[id] = struct{}{}
		}
	}
	cl.live.mu.Unlock()
	cl.live.view.Store(&v)
}

// dead reports whether process p is dead, the one rule of this file: the
// registry, complete (v.judging), no longer lists it, and has not at
// every check for EchoGap (a process this one listed before: since it
// was first found missing; any other: since the registry is complete),
// or it left cleanly. Never this process, nor one that cannot be judged
// (judgeable).
func (v liveView) dead(p string) bool {
	if !v.judging || p == v.self || !judgeable(p) {
		return false
	}
	if _, ok := v.live[p]; ok {
		return false
	}
	if _, ok := v.left[p]; ok {
		return true
	}
	if _, ok := v.seen[p]; !ok && v.met != nil {
		return v.confirmed && v.met(p) >= v.gap
	}
	_, waiting := v.waiting[p]
	return v.confirmed && !waiting
}

// unlistedFor returns how long ago process p, never listed by a complete
// registry, was first met unlisted (0 when now): dead only after EchoGap
// of that too.
func (cl *cluster) unlistedFor(p string) time.Duration {
	now := cl.s.cfg.Clock.Now()
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	at, ok := cl.live.met[p]
	if !ok {
		cl.live.met[p] = now
		return 0
	}
	return now.Sub(at)
}

// cleanable reports whether another process may remove the hub presence
// entries of process p: it is dead and did not leave cleanly (a process
// that left cleanly removes its own, and publishes its own hub leaves,
// while it drains; if it dies meanwhile, they expire with the engine's
// presence TTL).
func (v liveView) cleanable(p string) bool {
	if !v.dead(p) {
		return false
	}
	_, left := v.left[p]
	return !left
}

// judgeable reports whether a registry can tell whether process p is
// live: not an unknown process (""), nor one whose id is a UUID (a relay
// without a registry, an earlier version or no Config.Nodes, which no
// registry lists).
func judgeable(p string) bool {
	return p != "" && !(len(p) == 36 && uuid.Validate(p) == nil)
}

// initLiveness sets up the liveness state; the origin is already set.
func (cl *cluster) initLiveness() {
	cl.live.view.Store(&liveView{})
	cl.live.since = map[string]time.Time{}
	cl.live.due = map[*busRoom]time.Time{}
	cl.live.left = map[string]time.Time{}
	cl.live.missing = map[string]time.Time{}
	cl.live.seen = map[string]struct{}{}
	cl.live.met = map[string]time.Time{}
	cl.live.cleans = map[string]*chanClean{}
	cl.live.died = cl.sessions.WithLabelValues(sessionProcessDied)
}

// livenessLoop checks the registry every livenessEvery (on the injected
// clock) until close.
func (cl *cluster) livenessLoop() {
	for cl.wait(livenessEvery) {
		cl.checkLiveness()
	}
}

// checkLiveness refreshes the view of the registry, drops the remote
// members of dead processes from every room held here (the lobby too),
// and hands the rooms whose cleanup is due to the sync loop. It makes no
// engine call: a slow engine does not delay it.
func (cl *cluster) checkLiveness() {
	cl.refreshLiveness()
	v := cl.liveness()
	if !v.judging {
		return
	}
	now := cl.s.cfg.Clock.Now()
	cl.mu.RLock()
	list := make([]*busRoom, 0, len(cl.rooms))
	for _, br := range cl.rooms {
		list = append(list, br)
	}
	cl.mu.RUnlock()
	for _, br := range list {
		cl.dropDead(br, v)
	}
	cl.live.mu.Lock()
	var due []string
	for br, at := range cl.live.due {
		if !now.Before(at) {
			due = append(due, br.name)
			delete(cl.live.due, br)
		}
	}
	for p, at := range cl.live.since {
		if _, back := v.live[p]; back || now.Sub(at) > deadHorizon {
			delete(cl.live.since, p)
		}
	}
	cl.live.mu.Unlock()
	for _, name := range due {
		cl.resyncSoon(name)
	}
}

// seenDead records that process p is dead at now (if not already) and
// returns since when it has been seen dead.
func (cl *cluster) seenDead(p string, now time.Time) time.Time {
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	at, ok := cl.live.since[p]
	if !ok {
		at = now
		cl.live.since[p] = at
	}
	return at
}

// cleanDue schedules a sync of br at the time the hub presence of process
// p, dead, may be cleaned up there (deadSettle after it was first seen
// dead), unless one is due already.
func (cl *cluster) cleanDue(br *busRoom, p string) {
	now := cl.s.cfg.Clock.Now()
	at := cl.seenDead(p, now).Add(deadSettle)
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	if old, ok := cl.live.due[br]; !ok || at.Before(old) {
		cl.live.due[br] = at
	}
}

// dropDead removes br's remote members whose process v takes for dead
// and tells the local members they left, as their bus leaves would (a
// later bus leave of such a member, from a process that left cleanly and
// drains, finds it unknown and tells nothing again); it schedules the
// cleanup of their hub presence (cleanDue) and returns how many it
// dropped.
func (cl *cluster) dropDead(br *busRoom, v liveView) int {
	br.news.Lock()
	defer br.news.Unlock()
	br.mu.Lock()
	if !br.live {
		br.mu.Unlock()
		return 0
	}
	var left []remoteMember
	for sid, m := range br.remote {
		if v.dead(m.process) {
			br.dropRemoteLocked(sid)
			left = append(left, m)
		}
	}
	br.mu.Unlock()
	if len(left) == 0 {
		return 0
	}
	for _, m := range left {
		if v.cleanable(m.process) {
			cl.cleanDue(br, m.process)
		}
	}
	cl.live.died.Add(float64(len(left)))
	cl.s.log.Info("relay members of a dead process dropped", "channel", br.topic, "members", len(left))
	cl.tell(br.name, nil, left)
	return len(left)
}

// cleaner reports whether this process cleans up the hub presence that
// dead processes left in a room, from a sync's read of the room's
// presence: own are this process's entries, fresh the live processes'.
// It does when it has entries and its id is the smallest of the
// judgeable processes having some (a relay without a registry, whose id
// is a UUID, takes no part). Every live process holding the room reads
// the same presence, so one of them cleans (two, briefly, when one has
// not read a newcomer's entries yet). When the cleaner dies too, the next
// smallest finds both processes' entries at its next sync.
func (cl *cluster) cleaner(own map[string]struct{}, fresh map[string]remoteMember) bool {
	if len(own) == 0 {
		return false
	}
	for _, m := range fresh {
		if judgeable(m.process) && m.process < cl.origin {
			return false
		}
	}
	return true
}

// cleanDead removes the hub presence entries of dead processes from br's
// channel and publishes a hub leave for each (the lobby publishes none):
// what the dead process would have done at their leave. It runs on a
// goroutine of its own (startClean), the whole batch within opTimeout; an
// entry whose removal fails is left for a later sync, without a leave;
// it reports whether the bound cut the batch short (entries not reached,
// which startClean has synced again soon).
func (cl *cluster) cleanDead(br *busRoom, entries map[string]*hub.ClientInfo) (cut bool) {
	ctx, cancel := context.WithTimeout(cl.syncCtx, opTimeout)
	defer cancel()
	removed := 0
	for sid, info := range entries {
		if ctx.Err() != nil {
			break
		}
		if cl.removeAndLeave(ctx, br.topic, sid, info, br != cl.lobby) {
			removed++
		}
	}
	// Cut short by the bound (its last removal included), not by close.
	cut = ctx.Err() != nil && cl.syncCtx.Err() == nil
	if removed > 0 {
		cl.s.log.Info("relay hub presence of a dead process removed", "channel", br.topic, "members", removed)
	}
	return cut
}

// removeAndLeave removes the hub presence entry sid of channel topic and,
// when it is gone and leave is set, publishes its hub leave, as a member
// leaving would; it reports whether the removal succeeded. Failures are
// logged; a leave whose publication fails after the removal succeeded is
// lost (no later sync finds the entry again), as a member's own leave
// would be: the hub's other processes learn of it by their presence
// reads only.
func (cl *cluster) removeAndLeave(ctx context.Context, topic, sid string, info *hub.ClientInfo, leave bool) bool {
	p := cl.s.cfg.Presence
	if err := p.RemovePresence(ctx, topic, sid, info.UserID); err != nil {
		cl.s.log.Warn("relay presence remove failed", "channel", topic, "error", err)
		return false
	}
	if leave {
		if err := p.PublishLeave(ctx, topic, info); err != nil {
			cl.s.log.Warn("relay leave publication failed", "channel", topic, "error", err)
		}
	}
	return true
}

// startClean runs cleanDead for the entries a sync of br picked, on a
// goroutine the cluster owns (not under the room's syncMu, nor on the
// goroutine that synced: a JOIN or the sync loop does not wait for it),
// and lets the channel's syncs pick them again once it is done
// (cleanDone). A batch cut short by its bound has the room synced again
// soon (resyncSoon), so the entries not reached are retried then.
func (cl *cluster) startClean(br *busRoom, entries map[string]*hub.ClientInfo) {
	if len(entries) == 0 {
		return
	}
	var cut bool
	done := func() {
		cl.cleanDone(br.topic, entries)
		if cut {
			cl.resyncSoon(br.name)
		}
	}
	if !cl.goRun(func() { defer done(); cut = cl.cleanDead(br, entries) }) {
		done()
	}
}

// cleanEnter records that a sync begins its read of channel topic and
// returns how many of its cleanups have ended so far; cleanPick or
// cleanLeave follows.
func (cl *cluster) cleanEnter(topic string) uint64 {
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	c := cl.live.cleans[topic]
	if c == nil {
		c = &chanClean{removing: map[string]struct{}{}}
		cl.live.cleans[topic] = c
	}
	c.readers++
	return c.ended
}

// cleanLeave ends a sync's read of channel topic without a pick.
func (cl *cluster) cleanLeave(topic string) {
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	c := cl.live.cleans[topic]
	c.readers--
	cl.cleanPruneLocked(topic, c)
}

// cleanPick ends a sync's read of channel topic (begun when ended
// cleanups had ended) with its pick: the entries to remove, minus those
// a cleanup is removing already (anywhere in this process: any room
// holding the channel), which it marks as being removed. It drops the
// whole pick, and reports again, when a cleanup ended during the read:
// the read may list entries that cleanup removed, whose hub leaves are
// published already; the room is to be synced again.
func (cl *cluster) cleanPick(topic string, ended uint64, pick map[string]*hub.ClientInfo) (map[string]*hub.ClientInfo, bool) {
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	c := cl.live.cleans[topic]
	c.readers--
	defer cl.cleanPruneLocked(topic, c)
	if len(pick) == 0 {
		return nil, false
	}
	if c.ended != ended {
		return nil, true
	}
	for sid := range pick {
		if _, busy := c.removing[sid]; busy {
			delete(pick, sid)
			continue
		}
		c.removing[sid] = struct{}{}
	}
	return pick, false
}

// cleanDone ends a cleanup of channel topic's entries.
func (cl *cluster) cleanDone(topic string, entries map[string]*hub.ClientInfo) {
	cl.live.mu.Lock()
	defer cl.live.mu.Unlock()
	c := cl.live.cleans[topic]
	for sid := range entries {
		delete(c.removing, sid)
	}
	c.ended++
	cl.cleanPruneLocked(topic, c)
}

// cleanPruneLocked forgets channel topic's bookkeeping once no cleanup
// and no read uses it.
func (cl *cluster) cleanPruneLocked(topic string, c *chanClean) {
	if c.readers == 0 && len(c.removing) == 0 {
		delete(cl.live.cleans, topic)
	}
}

// deadToClean picks, from the entries of dead processes a sync of a
// room read (stale, by session id), those this process removes now: all
// of them that may be cleaned (cleanable) and were seen dead for
// deadSettle, when it is the room's cleaner (own, fresh: the read's
// entries of this process and of live ones); none otherwise. Those not
// settled yet get a sync scheduled (cleanDue).
func (cl *cluster) deadToClean(br *busRoom, v liveView, stale map[string]deadEntry, own map[string]struct{}, fresh map[string]remoteMember) map[string]*hub.ClientInfo {
	if len(stale) == 0 || !cl.cleaner(own, fresh) {
		return nil
	}
	now := cl.s.cfg.Clock.Now()
	var out map[string]*hub.ClientInfo
	for sid, e := range stale {
		if !v.cleanable(e.process) {
			continue
		}
		if now.Sub(cl.seenDead(e.process, now)) < deadSettle {
			cl.cleanDue(br, e.process)
			continue
		}
		if out == nil {
			out = map[string]*hub.ClientInfo{}
		}
		out[sid] = e.info
	}
	return out
}

// deadEntry is a presence entry of a dead process, read by a sync.
type deadEntry struct {
	process string
	info    *hub.ClientInfo
}
