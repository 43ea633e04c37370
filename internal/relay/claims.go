package relay

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Claims across processes (the Redis engine, a Presence that is a
// PresenceClaimer). Two decisions that a read of the others' presence
// followed by a write cannot make safely for several processes are made
// by one conditional add of the engine instead:
//
//   - A JOIN (not a resumed one, not the lobby) writes its member's hub
//     presence in relay:R only while the room holds fewer than its cap of
//     other entries and no other entry carries its NodeId (the claim key,
//     nodeKey). What refused it is then judged by the rules of a JOIN: an
//     entry of a dead process (liveness.go) counts for nothing, a parked
//     session of the same user is ended by its process (endRemoteNode),
//     anything else is ErrRoomFull or errNodeInRoom. A refused claim
//     writes no entry (it only drops expired ones); the next one ignores
//     what was judged harmless. An added claim is checked still against
//     the remote members this process knows with c's NodeId, whose
//     entries may hold no claim key (a process of a version without
//     claims, a key hash Redis lost, a handover's window): they are
//     judged as without a claimer (freeNode), and a refusal removes the
//     entry just written.
//   - A handshake with a NodeId the client chose writes its directory
//     entry (directory.go) only while the channel of that NodeId holds no
//     other entry; a refused claim reads the entries and ignores those
//     that do not hold the NodeId against it (this process's own, the
//     dead processes', the same user's parked sessions for a native
//     HELLO), then claims again.
//
// A claim the engine does not answer (Redis down, a timeout) is logged
// and the decision falls back to what this process knows, as without a
// claimer: a JOIN checks the remote members it knows and its presence is
// repaired later (repair.go), a handshake is accepted.

// claimRounds bounds the claims of one decision: each refused one judges
// one more entry harmless, or refuses.
const claimRounds = 8

// nodeKey is the claim key of NodeId id in a room's presence.
func nodeKey(id wire.NodeID) string { return strconv.FormatUint(uint64(id), 10) }

// claimMember writes c's presence in r's channel by a claim (see the
// top): written reports whether it did; err is the JOIN's refusal. A
// claim the engine failed refuses nothing (logged): the caller decides
// by what it knows, and a known remote member with c's NodeId has been
// dealt with (freeNode) when err is nil. As a failed claim (a timeout)
// may have run in the engine, a JOIN refused after it removes c's entry
// (dropEntry), here and in the caller.
func (cl *cluster) claimMember(br *busRoom, r *room, c *conn) (written bool, err error) {
	info := c.presenceInfo()
	claim := hub.PresenceClaim{Max: r.maxMembers, Key: nodeKey(c.id)}
	readFull := false
	refusal := error(ErrRoomFull)
	for range claimRounds {
		ctx, cancel := cl.s.opCtx()
		res, err := cl.claimer.ClaimPresence(ctx, r.channel, info, claim)
		cancel()
		switch {
		case err != nil:
			cl.s.log.Warn("relay room presence claim failed: the join is checked against the members this process knows",
				"channel", r.channel, "error", err)
			if br.hasRemote(c.id) {
				if err := cl.freeNode(br, c, false); err != nil {
					cl.dropEntry(r.channel, c) // the claim may have run all the same
					return false, err
				}
			}
			return false, nil
		case res.Added:
			if br.hasRemote(c.id) {
				// A member this process knows with c's NodeId holds no
				// claim key (a process without claims, a key Redis lost,
				// a handover's window): judged as without a claimer, and
				// the entry just written goes when that refuses.
				if err := cl.freeNode(br, c, true); err != nil {
					cl.dropEntry(r.channel, c)
					return false, err
				}
			}
			return true, nil
		case res.Full:
			refusal = ErrRoomFull
			if readFull {
				return false, ErrRoomFull
			}
			readFull = true
			dead := cl.deadEntries(r, claim.Ignore)
			if len(dead) == 0 {
				return false, ErrRoomFull
			}
			claim.Ignore = append(claim.Ignore, dead...)
		default:
			refusal = errNodeInRoom
			if err := cl.freeHolder(br, c, res.Holder, res.HolderInfo); err != nil {
				return false, err
			}
			claim.Ignore = append(claim.Ignore, res.Holder)
		}
	}
	return false, refusal
}

// dropEntry removes c's presence entry in channel, written by a claim
// whose JOIN is refused after all (best effort, logged): unrefreshed, it
// would hold a slot and c's NodeId until it expires.
func (cl *cluster) dropEntry(channel string, c *conn) {
	ctx, cancel := cl.s.opCtx()
	defer cancel()
	if err := cl.s.cfg.Presence.RemovePresence(ctx, channel, c.sid, c.userName()); err != nil {
		cl.s.log.Warn("relay presence removal of a refused join failed", "channel", channel, "error", err)
	}
}

// deadEntries lists the session ids of the entries of r's channel (not
// in skip) that hold nothing: those dead processes left, and this
// process's own whose session it does not hold in r (holdsSession: a
// removal that failed). None when the read fails.
func (cl *cluster) deadEntries(r *room, skip []string) []string {
	v := cl.liveness()
	ctx, cancel := cl.s.opCtx()
	pres, err := cl.lister.Presence(ctx, r.channel)
	cancel()
	if err != nil {
		return nil
	}
	var out []string
	for sid, info := range pres {
		var e presenceEntry
		if json.Unmarshal(info.ChanInfo, &e) != nil || e.Process == "" || slices.Contains(skip, sid) {
			continue
		}
		if e.Process == cl.origin {
			if !cl.s.holdsSession(r.name, sid) {
				out = append(out, sid)
			}
		} else if v.judging && v.dead(e.Process) {
			out = append(out, sid)
		}
	}
	return out
}

// freeHolder judges the entry of session sid (info) that holds c's
// NodeId in br's room, by the rules of freeNode: nil when it may be
// ignored (a dead process's, a stale one of this process, a parked
// session of c's user that its process has just ended, one whose live
// process, asked, no longer holds the session there: removed then),
// else errNodeInRoom (or the engine's error).
func (cl *cluster) freeHolder(br *busRoom, c *conn, sid string, info *hub.ClientInfo) error {
	var e presenceEntry
	if info == nil || json.Unmarshal(info.ChanInfo, &e) != nil {
		return errNodeInRoom
	}
	br.mu.Lock()
	rm, known := br.remote[sid]
	br.mu.Unlock()
	if e.Process == cl.origin {
		// c holds its NodeId here, so no other session here has it: the
		// entry is stale (its removal failed), unless its session was
		// handed over from here and its new process has not written it.
		if known {
			return errNodeInRoom
		}
		return nil
	}
	if cl.liveness().dead(e.Process) {
		return nil
	}
	if known {
		_, err := cl.endRemoteNode(br, c, rm)
		return err
	}
	rm = remoteMember{node: c.id, sid: sid, user: info.UserID, process: e.Process}
	if unanswered, err := cl.endRemoteNode(br, c, rm); err != errNodeInRoom || unanswered {
		return err
	}
	// Unknown here: a member this process has not heard of yet, or an
	// entry its live process failed to remove. That process tells.
	a, err := cl.ask(c.ctx, c.gone(), e.Process, &busRequest{Op: opHolds, SID: sid, Room: br.name})
	if err == nil && a.Err == refuseBusy {
		return errBusyResume
	}
	if err != nil || a.Err != refuseAbsent {
		return errNodeInRoom
	}
	ctx, cancel := cl.s.opCtx()
	defer cancel()
	if err := removeStale(ctx, cl.s.cfg.Presence, ChannelPrefix+br.name, info); err != nil {
		cl.s.log.Warn("relay presence removal of a stale entry failed", "channel", ChannelPrefix+br.name, "error", err)
	}
	return nil
}

// presenceConditionalRemover is a Presence that can remove an entry only
// while it holds what was read (*hub.Hub, by its engine's
// hub.PresenceConditionalRemover).
type presenceConditionalRemover interface {
	RemovePresenceIf(ctx context.Context, channel string, info *hub.ClientInfo) (bool, error)
}

// removeStale removes the entry info (of session info.ClientID) read in
// channel and judged stale, only while it is still that entry when p can
// (an entry of the session written meanwhile, by its new process say,
// stays); otherwise by its session id.
func removeStale(ctx context.Context, p Presence, channel string, info *hub.ClientInfo) error {
	if r, ok := p.(presenceConditionalRemover); ok {
		_, err := r.RemovePresenceIf(ctx, channel, info)
		if !errors.Is(err, hub.ErrNotAvailable) {
			return err
		}
	}
	return p.RemovePresence(ctx, channel, info.ClientID, info.UserID)
}

// holdsSession reports whether this process holds session sid in room
// name: a member, a JOIN claiming its presence, a session being taken
// over here with that room, or one handed over from here whose new
// process has not joined yet (opHolds, deadEntries).
func (s *Server) holdsSession(name, sid string) bool {
	cl := s.cluster
	s.mu.RLock()
	held := slices.Contains(cl.arriving[sid], name)
	if r := s.rooms[name]; r != nil && !held {
		held = r.claiming[sid] > 0
		for m := range r.members {
			if held {
				break
			}
			held = m.sid == sid
		}
	}
	s.mu.RUnlock()
	if held {
		return true
	}
	br := cl.room(name)
	if br == nil {
		return false
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	rm, ok := br.remote[sid]
	return ok && rm.handed
}

// dirClaim writes c's directory entry by a claim (see the top), for a
// handshake with a NodeId the client chose; sameUser, when not empty, is
// a user whose parked sessions elsewhere do not count (nodeElsewhere).
// It returns ErrNodeInUse when another process holds the NodeId, and
// whether the entry is written. A failed claim or read accepts (logged),
// as a failed directory read does: ctx (the handshake's) and the
// directory's handshake bound end them.
func (cl *cluster) dirClaim(ctx context.Context, c *conn, sameUser string) (written bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cl.dir.handshakeWait.Load()))
	defer cancel()
	info := c.presenceInfo()
	claim := hub.PresenceClaim{Max: 1}
	for range claimRounds {
		res, err := cl.claimer.ClaimPresence(ctx, nodeChannel(c.id), info, claim)
		if err != nil {
			cl.s.log.Warn("relay node directory claim failed: handshake accepted", "node_id", uint64(c.id), "error", err)
			return false, nil
		}
		if res.Added {
			c.mu.Lock()
			c.dirUser = info.UserID
			c.mu.Unlock()
			return true, nil
		}
		hs, skipped, err := cl.dirScan(ctx, c.id)
		if err != nil {
			cl.s.log.Warn("relay node directory read failed: handshake accepted", "node_id", uint64(c.id), "error", err)
			return false, nil
		}
		ignore := skipped
		for _, h := range hs {
			if sameUser == "" || h.user != sameUser || !h.parked {
				return false, ErrNodeInUse
			}
			ignore = append(ignore, h.sid)
		}
		claim.Ignore = ignore
	}
	return false, ErrNodeInUse
}

// registerChosen registers c under the NodeId its client chose: with a
// bus, a NodeId another process holds is refused (ErrNodeInUse) by the
// directory's rules, by a claim when the Presence is a PresenceClaimer
// (dirClaim), else by a read (nodeElsewhere). ctx bounds the handshake.
func (s *Server) registerChosen(ctx context.Context, c *conn, sameUser string) error {
	cl := s.cluster
	if cl == nil || s.node(c.id) != nil {
		return s.register(c) // refused here first: no engine call
	}
	if cl.claimer == nil || s.cfg.Presence == nil {
		if cl.nodeElsewhere(ctx, c.id, sameUser) {
			return ErrNodeInUse
		}
		return s.register(c)
	}
	written, err := cl.dirClaim(ctx, c, sameUser)
	if err != nil {
		return err
	}
	return s.registerWith(ctx, c, written) // a write after a failed claim ends with the handshake too
}

// writeMember writes info, the presence of a member of a room admitted
// before (a resume, a repair), in channel: by a claim that always adds,
// so its NodeId is its claim key again when no other entry has it; by a
// plain add without a claimer, or when the claimer says it has none
// (ErrNotAvailable). Another entry holding the NodeId (two members with
// it, admitted while Redis did not answer) is logged and counted
// (switchboard_relay_node_conflicts_total).
func (s *Server) writeMember(ctx context.Context, channel string, info *hub.ClientInfo, id wire.NodeID) error {
	if cl := s.cluster; cl != nil && cl.claimer != nil {
		res, err := cl.claimer.ClaimPresence(ctx, channel, info, hub.PresenceClaim{Key: nodeKey(id), Always: true})
		if res.KeyTaken {
			cl.nodeConflicts.Inc()
			s.log.Warn("relay room member rewritten while another session holds its node id", "channel", channel,
				"node_id", uint64(id), "holder", res.Holder)
		}
		if !errors.Is(err, hub.ErrNotAvailable) {
			return err
		}
	}
	return s.cfg.Presence.AddPresence(ctx, channel, info)
}
