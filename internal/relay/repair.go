package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Presence repair (the Redis engine). The engine refreshes only the
// presence entries whose write succeeded, so an entry whose write failed
// (Redis down, a timeout) would be missing for the life of the session:
// other processes' syncs would drop the member from their rooms, and the
// NodeId directory would not know it. A connection with such a failed
// write (its directory entry, a JOIN's room presence, a resumed session's
// rooms, an opPresent rewrite, or an opPresent the serving pool had no
// room for) is marked; the cluster's repair goroutine rewrites the whole
// presence of each marked connection (writePresence: directory entry and
// every room) every repairEvery while any is marked, until a rewrite
// succeeds or the connection unregistered. A resume on this process
// moves a mark onto the new connection (moveRepairLocked). The engine
// calls end at close (cl.syncCtx). The ISSUN lobby has its own repair
// (syncLobby).
//
// The set holds registered connections only (at most one entry each), so
// it is bounded by the sessions of the process (max_clients and the
// parked ones). Lock order: Server.mu, then repairMu.

// repairEvery is how long a repair waits after a mark, and between two
// attempts while a connection's rewrite keeps failing.
const repairEvery = time.Second

// Outcomes of presence repairs (switchboard_relay_presence_repairs_total).
const (
	repairRepaired = "repaired" // a rewrite of every entry succeeded
	repairFailed   = "failed"   // a rewrite failed: retried
	repairGone     = "gone"     // the connection unregistered before a rewrite succeeded
)

// repairState is the cluster's set of connections whose presence needs a
// rewrite.
type repairState struct {
	// pending maps each marked connection to the mark's number (seq), so
	// a rewrite that began before a newer mark does not clear it. Guarded
	// by cluster.repairMu.
	pending map[*conn]uint64
	seq     uint64
	// wake is signalled (without blocking) by a mark.
	wake     chan struct{}
	outcomes *prometheus.CounterVec
}

func (cl *cluster) initRepair() error {
	cl.repair.pending = map[*conn]uint64{}
	cl.repair.wake = make(chan struct{}, 1)
	cl.repair.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_presence_repairs_total",
		Help: "Rewrites of a connection's hub presence (NodeId directory entry and rooms) after a write failed, by outcome (repaired, failed: retried, gone: unregistered first)."},
		[]string{"outcome"})
	for _, o := range []string{repairRepaired, repairFailed, repairGone} {
		cl.repair.outcomes.WithLabelValues(o)
	}
	if reg := cl.s.cfg.Registerer; reg != nil {
		return reg.Register(cl.repair.outcomes)
	}
	return nil
}

// markRepair marks c for a presence rewrite when it is still registered;
// it never blocks on the engine (safe on the engine's reader goroutine).
func (cl *cluster) markRepair(c *conn) {
	s := cl.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.nodes[c.id] != c {
		return
	}
	cl.repairMu.Lock()
	if _, marked := cl.repair.pending[c]; !marked && len(cl.repair.pending) >= len(s.nodes) {
		// Unregistered connections wait for the next round: drop them
		// now, so the set stays within the registered ones.
		for o := range cl.repair.pending {
			if s.nodes[o.id] != o {
				delete(cl.repair.pending, o)
				cl.repair.outcomes.WithLabelValues(repairGone).Inc()
			}
		}
	}
	cl.repair.seq++
	cl.repair.pending[c] = cl.repair.seq
	cl.repairMu.Unlock()
	cl.wakeRepair()
}

// wakeRepair wakes the repair goroutine without blocking.
func (cl *cluster) wakeRepair() {
	select {
	case cl.repair.wake <- struct{}{}:
	default:
	}
}

// moveRepairLocked moves a mark of old onto c, which takes over old's session
// (a resume on this process); s.mu held.
func (cl *cluster) moveRepairLocked(old, c *conn) {
	cl.repairMu.Lock()
	_, marked := cl.repair.pending[old]
	if marked {
		delete(cl.repair.pending, old)
		cl.repair.seq++
		cl.repair.pending[c] = cl.repair.seq
	}
	cl.repairMu.Unlock()
	if marked {
		cl.wakeRepair()
	}
}

// markRepairSession marks the connection of session sid with NodeId id,
// when it is here (an opPresent the serving pool had no room for).
func (cl *cluster) markRepairSession(id wire.NodeID, sid string) {
	if c := cl.s.node(id); c != nil && c.sid == sid {
		cl.markRepair(c)
	}
}

// repairPending reports whether a connection is marked.
func (cl *cluster) repairPending() bool {
	cl.repairMu.Lock()
	defer cl.repairMu.Unlock()
	return len(cl.repair.pending) > 0
}

// repairLoop rewrites the presence of the marked connections, repairEvery
// after a mark and then every repairEvery while any stays marked (on the
// injected clock), until close.
func (cl *cluster) repairLoop() {
	for {
		select {
		case <-cl.stop:
			return
		case <-cl.repair.wake:
		}
		for cl.repairPending() {
			if !cl.wait(repairEvery) {
				return
			}
			cl.repairRound()
		}
	}
}

// repairRound tries each marked connection once.
func (cl *cluster) repairRound() {
	cl.repairMu.Lock()
	list := make(map[*conn]uint64, len(cl.repair.pending))
	for c, seq := range cl.repair.pending {
		list[c] = seq
	}
	cl.repairMu.Unlock()
	cl.hook("repair_listed")
	s := cl.s
	for c, seq := range list {
		select {
		case <-cl.stop:
			return
		default:
		}
		outcome := repairGone
		if s.node(c.id) == c {
			here, ok := s.writePresence(cl.syncCtx, c.id, c.sid) // close cancels it
			switch {
			case !here:
				// unregistered meanwhile: gone
			case ok:
				outcome = repairRepaired
			default:
				outcome = repairFailed
			}
		}
		cl.repairMu.Lock()
		cur := cl.repair.pending[c]
		if outcome != repairFailed && cur == seq {
			delete(cl.repair.pending, c) // not marked again meanwhile
		}
		cl.repairMu.Unlock()
		if outcome == repairGone && cur != seq {
			// The mark moved onto a resumed connection (moveRepairLocked),
			// or markRepair dropped (and counted) it: not this round's.
			continue
		}
		cl.repair.outcomes.WithLabelValues(outcome).Inc()
	}
}
