package relay

import (
	"context"
	"sync"
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
//   - remote members (rooms and lobby) of a dead process are dropped by
//     the liveness goroutine, every livenessEvery, with the news a bus
//     leave brings (dropDead), and a sync adds none back;
//   - the NodeId directory skips a dead process's entries (a handshake
//     with its NodeIds is accepted, a targeted event finds nobody) and
//     removes them (dirRead);
//   - a resume token or redirect naming a dead process is unknown at once,
//     and a JOIN meeting one of its members drops it (freeNode);
//   - the hub presence of relay:R that a dead process wrote is removed by
//     one live process, which publishes a hub leave per member (the
//     cleaner, see sync and cleanDead), once the process has been seen
//     dead for deadSettle.

// NodeLister is the registry of the live processes sharing the engine
// (*hub.Hub, whose control plane links them). Safe for concurrent use.
type NodeLister interface {
	// NodeID is this process's id in the registry: at most 64 bytes.
	NodeID() string
	// Nodes lists the live nodes, this one included.
	Nodes() []hub.NodeInfo
	// NodeTTL is how long a node stays listed after its last
	// announcement.
	NodeTTL() time.Duration
}

const (
	// livenessEvery is the period of the liveness goroutine: every second
	// rather than at each sync, since a check reads memory only (the
	// registry and the rooms' remote members), where a sync reads Redis.
	livenessEvery = time.Second
	// deadSettle is how long a process must have been seen dead before its
	// hub presence is cleaned up by another one: longer than a process
	// that stops cleanly (which leaves the registry at once) takes to
	// remove its own entries and publish its leaves, each bounded by
	// opTimeout; so their leaves are not published twice.
	deadSettle = 2 * opTimeout
	// deadHorizon is how long a process seen dead is remembered.
	deadHorizon = 10 * time.Minute
)

// Event of switchboard_relay_cross_process_sessions_total: a remote room
// or lobby member dropped because its process died.
const sessionProcessDied = "process_died"

// liveState is the cluster's liveness bookkeeping; since and due are
// guarded by mu, taken after any room lock and held across no call.
type liveState struct {
	born time.Time     // the cluster's creation, on the injected clock
	ttl  time.Duration // the registry's NodeTTL
	mu   sync.Mutex
	// since: when each process was first seen dead (deadSettle).
	since map[string]time.Time
	// due: rooms to sync once a dead process's hub presence may be
	// cleaned up there.
	due  map[*busRoom]time.Time
	died prometheus.Counter
}

// liveView is one reading of the node registry (liveness).
type liveView struct {
	judging bool // the registry can tell a dead process
	self    string
	live    map[string]struct{}
}

// liveness reads the node registry. Without one, or while this process
// has been up (since its cluster was created, on the injected clock) for
// less than the registry's TTL, the view judges no process dead: a live
// process may not have been heard from yet.
func (cl *cluster) liveness() liveView {
	n := cl.s.cfg.Nodes
	if n == nil || cl.s.cfg.Clock.Now().Sub(cl.live.born) < cl.live.ttl {
		return liveView{}
	}
	nodes := n.Nodes()
	v := liveView{judging: true, self: cl.origin, live: make(map[string]struct{}, len(nodes))}
	for _, node := range nodes {
		v.live[node.ID] = struct{}{}
	}
	return v
}

// dead reports whether process p is dead, the one rule of this file: the
// registry no longer lists it and this process has been up for at least
// the registry's TTL (v.judging). Never this process, nor an unknown one
// (""), nor one whose id is a UUID: that is a relay without a registry
// (an earlier version, or no Config.Nodes), which no registry lists.
func (v liveView) dead(p string) bool {
	if !v.judging || p == "" || p == v.self {
		return false
	}
	if _, ok := v.live[p]; ok {
		return false
	}
	return !(len(p) == 36 && uuid.Validate(p) == nil)
}

// initLiveness sets up the liveness state; the origin is already set.
func (cl *cluster) initLiveness() {
	cl.live.born = cl.s.cfg.Clock.Now()
	if n := cl.s.cfg.Nodes; n != nil {
		cl.live.ttl = n.NodeTTL()
	}
	cl.live.since = map[string]time.Time{}
	cl.live.due = map[*busRoom]time.Time{}
	cl.live.died = cl.sessions.WithLabelValues(sessionProcessDied)
}

// livenessLoop checks the registry every livenessEvery (on the injected
// clock) until close.
func (cl *cluster) livenessLoop() {
	for cl.wait(livenessEvery) {
		cl.checkLiveness()
	}
}

// checkLiveness drops the remote members of dead processes from every
// room held here (the lobby too), schedules the sync that cleans up their
// hub presence deadSettle later, and runs the syncs now due.
func (cl *cluster) checkLiveness() {
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
		if cl.dropDead(br, v) > 0 {
			cl.live.mu.Lock()
			if _, ok := cl.live.due[br]; !ok {
				cl.live.due[br] = now.Add(deadSettle)
			}
			cl.live.mu.Unlock()
		}
	}
	cl.live.mu.Lock()
	var due []*busRoom
	for br, at := range cl.live.due {
		if !now.Before(at) {
			due = append(due, br)
			delete(cl.live.due, br)
		}
	}
	for p, at := range cl.live.since {
		if _, back := v.live[p]; back || now.Sub(at) > deadHorizon {
			delete(cl.live.since, p)
		}
	}
	cl.live.mu.Unlock()
	for _, br := range due {
		if cl.syncCtx.Err() != nil {
			return
		}
		if br == cl.lobby {
			cl.syncLobby()
		} else {
			cl.sync(br) // nothing when released meanwhile
		}
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

// dropDead removes br's remote members whose process v takes for dead
// and tells the local members they left, as their bus leaves would; it
// returns how many it dropped.
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
	now := cl.s.cfg.Clock.Now()
	for _, m := range left {
		cl.seenDead(m.process, now)
	}
	cl.live.died.Add(float64(len(left)))
	cl.s.log.Info("relay members of a dead process dropped", "channel", br.topic, "members", len(left))
	cl.tell(br.name, nil, left)
	return len(left)
}

// cleaner reports whether this process cleans up the hub presence that
// dead processes left in a room, from a sync's read of the room's
// presence: own are this process's entries, fresh the live processes'.
// It does when it has entries and its id is the smallest of the processes
// having some. Every live process holding the room reads the same
// presence, so one of them cleans (two, briefly, when one has not read a
// newcomer's entries yet). When the cleaner dies too, the next smallest
// finds both processes' entries at its next sync.
func (cl *cluster) cleaner(own map[string]struct{}, fresh map[string]remoteMember) bool {
	if len(own) == 0 {
		return false
	}
	for _, m := range fresh {
		if m.process != "" && m.process < cl.origin {
			return false
		}
	}
	return true
}

// cleanDead removes the hub presence entries of dead processes from br's
// channel and publishes a hub leave for each (the lobby publishes none):
// what the dead process would have done at their leave. An entry whose
// removal fails is left for the next sync, without a leave.
func (cl *cluster) cleanDead(br *busRoom, entries map[string]*hub.ClientInfo) {
	p := cl.s.cfg.Presence
	for sid, info := range entries {
		if cl.syncCtx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(cl.syncCtx, opTimeout)
		err := p.RemovePresence(ctx, br.topic, sid, info.UserID)
		if err != nil {
			cl.s.log.Warn("relay presence remove of a dead process's member failed", "channel", br.topic, "error", err)
		} else if br != cl.lobby {
			if err := p.PublishLeave(ctx, br.topic, info); err != nil {
				cl.s.log.Warn("relay leave publication of a dead process's member failed", "channel", br.topic, "error", err)
			}
		}
		cancel()
	}
	if len(entries) > 0 {
		cl.s.log.Info("relay hub presence of a dead process removed", "channel", br.topic, "members", len(entries))
	}
}

// deadToClean picks, from the entries of dead processes a sync of a
// room read (stale, by session id), those this process removes now: all
// of them seen dead for deadSettle when it is the room's cleaner (own,
// fresh: the read's entries of this process and of live ones), none
// otherwise.
func (cl *cluster) deadToClean(stale map[string]deadEntry, own map[string]struct{}, fresh map[string]remoteMember) map[string]*hub.ClientInfo {
	if len(stale) == 0 || !cl.cleaner(own, fresh) {
		return nil
	}
	now := cl.s.cfg.Clock.Now()
	out := map[string]*hub.ClientInfo{}
	for sid, e := range stale {
		if now.Sub(cl.seenDead(e.process, now)) >= deadSettle {
			out[sid] = e.info
		}
	}
	return out
}

// deadEntry is a presence entry of a dead process, read by a sync.
type deadEntry struct {
	process string
	info    *hub.ClientInfo
}
