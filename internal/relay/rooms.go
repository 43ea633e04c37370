package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/switchboard-rt/switchboard/internal/errs"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// room is a set of connections of one transport; the lobby is the room
// of ISSUN connections in no room. Members are guarded by Server.mu; snap
// is an immutable copy read by fan-out without locks.
type room struct {
	srv        *Server
	name       string // "" for the lobby
	channel    string // hub channel "relay:" + name
	id         uint32 // the room's handle on every native connection
	transport  string
	maxMembers int
	members    map[*conn]struct{}
	// pending counts the JOINs whose claim is in flight (claims.go): they
	// hold a slot, and the room stays while any does. Guarded by Server.mu.
	pending int
	// claiming counts those JOINs by session id (opHolds).
	claiming map[string]int
	snap     atomic.Pointer[[]*conn]
	// notify serialises a joiner's member list (JOINED) with the PRESENCE
	// news sent to members: news of a change made after the list was
	// taken reaches the joiner after its JOINED, never before (when it
	// could not apply it).
	notify sync.Mutex
	// bus is the room's cluster state (cluster.go); nil on one process.
	bus *busRoom
	// mirror is the room's spectator mirror (mirror.go); nil when off.
	mirror *roomMirror
}

func (r *room) snapshotLocked() {
	list := make([]*conn, 0, len(r.members))
	for m := range r.members {
		list = append(list, m)
	}
	r.snap.Store(&list)
}

// memberIDs lists the NodeIds of r's members, on every process (a
// session moving between processes once: see localSIDs).
func (s *Server) memberIDs(r *room) []wire.NodeID {
	list := *r.snap.Load()
	ids := make([]wire.NodeID, len(list))
	for i, m := range list {
		ids[i] = m.id
	}
	if r.bus == nil {
		return ids
	}
	local := localSIDs(list)
	for _, m := range r.bus.remoteMembers() {
		if _, dup := local[m.sid]; !dup {
			ids = append(ids, m.node)
		}
	}
	return ids
}

// localSIDs are the session ids of list. A session handed over between
// processes is briefly both a local member and a remote record (the
// issuer adds the record before dropping the member, the claimer drops
// the record after adding the member): the local member counts.
func localSIDs(list []*conn) map[string]struct{} {
	out := make(map[string]struct{}, len(list))
	for _, m := range list {
		out[m.sid] = struct{}{}
	}
	return out
}

var errRoomTransport = errs.New(errs.Conflict, "the room is used by clients of another protocol")

// join adds c to room name (created when missing, with a member cap of
// maxMembers, 0 or above the server's: the server's) and records its hub
// presence. It returns the room and the members before c joined.
func (s *Server) join(c *conn, name string, maxMembers int) (*room, []*conn, error) {
	return s.joinRoom(c, name, maxMembers, false)
}

// joinRoom is join; resumed joins a session taken over from another
// process (resume_cluster.go): its hub presence is already written, the
// remote member of its session id becomes the local member without news,
// no hub join is published, and the member cap is not checked (it was
// counted already).
func (s *Server) joinRoom(c *conn, name string, maxMembers int, resumed bool) (*room, []*conn, error) {
	return s.joinRoomFrom(c, name, maxMembers, resumed, false)
}

// joinRoomFrom is joinRoom; fromLobby (an ISSUN join) moves c out of the
// lobby in the critical section that adds it to the room, so no lobby
// broadcast reaches it once it gets the room's, and it gets one or the
// other throughout; its lobby leave goes out afterwards.
//
// Across processes with a PresenceClaimer, a new member's cap and NodeId
// check are decided by the engine (claimMember): c holds a slot of the
// room here (r.pending) while its presence is claimed, then becomes a
// member or gives the slot back. When the engine does not answer, the
// join is decided by what this process knows of the others, as without
// a claimer, and its presence is repaired later.
func (s *Server) joinRoomFrom(c *conn, name string, maxMembers int, resumed, fromLobby bool) (*room, []*conn, error) {
	if len(c.roomList()) >= s.cfg.MaxRooms {
		return nil, nil, ErrTooManyRooms
	}
	if maxMembers <= 0 || maxMembers > s.cfg.MaxMembers {
		maxMembers = s.cfg.MaxMembers
	}
	var br *busRoom
	claim := !resumed && s.cluster != nil && s.cluster.claimer != nil && s.cfg.Presence != nil
	if s.cluster != nil {
		var err error
		if br, err = s.cluster.acquire(name); err != nil {
			return nil, nil, err
		}
		if !resumed && !claim && br.hasRemote(c.id) {
			// Held on another process by a parked session of this user:
			// that process ends it (nodeFreed); anything else conflicts.
			if err := s.cluster.freeNode(br, c, false); err != nil {
				s.cluster.release(br)
				return nil, nil, err
			}
		}
	}
	var r *room
	refuse := func(err error) (*room, []*conn, error) {
		if len(r.members) == 0 && r.pending == 0 && s.rooms[name] == r { // created for this join
			delete(s.rooms, name)
			s.metrics.rooms.Dec()
		}
		s.mu.Unlock()
		if br != nil {
			s.cluster.release(br)
		}
		return nil, nil, err
	}
	s.mu.Lock()
	r = s.rooms[name]
	if r == nil {
		s.roomID++
		r = &room{srv: s, name: name, channel: ChannelPrefix + name, id: s.roomID, transport: c.transport,
			maxMembers: maxMembers, members: map[*conn]struct{}{}, bus: br, mirror: s.mirror.forRoom(name)}
		r.snap.Store(&[]*conn{})
		s.rooms[name] = r
		s.metrics.rooms.Inc()
	}
	if r.transport != c.transport || br.otherTransport(c.transport) {
		return refuse(errRoomTransport)
	}
	// The local members and the JOINs in flight here are certain; the
	// remote members this process knows count only without a claim.
	remote := br.remoteCount()
	if claim {
		remote = 0
	}
	if !resumed && len(r.members)+r.pending+remote >= r.maxMembers {
		return refuse(ErrRoomFull)
	}
	if (!resumed && !claim && br.hasRemote(c.id)) || (resumed && br.hasOtherRemote(c.id, c.sid)) {
		return refuse(errNodeInRoom)
	}
	written := false
	if claim {
		r.pending++
		if r.claiming == nil {
			r.claiming = map[string]int{}
		}
		r.claiming[c.sid]++
		s.mu.Unlock()
		var err error
		written, err = s.cluster.claimMember(br, r, c)
		s.mu.Lock()
		r.pending--
		if r.claiming[c.sid]--; r.claiming[c.sid] == 0 {
			delete(r.claiming, c.sid)
		}
		if err != nil {
			return refuse(err)
		}
		if !written && len(r.members)+r.pending+br.remoteCount() >= r.maxMembers {
			// The engine did not answer: what this process knows refuses;
			// the claim may have run all the same.
			room, before, err := refuse(ErrRoomFull)
			s.cluster.dropEntry(r.channel, c)
			return room, before, err
		}
	}
	before := *r.snap.Load()
	r.members[c] = struct{}{}
	r.snapshotLocked()
	c.rmu.Lock()
	c.rooms[name] = r
	c.rmu.Unlock()
	leftLobby := fromLobby && s.lobbyRemoveLocked(c)
	s.mu.Unlock()
	// After adding the local member: a JOINED taken meanwhile lists the
	// session once (members skips the remote record), never not. Members
	// here that did not know it as a remote one (never learnt, or a sync
	// dropped it while it moved) are told it joined.
	if resumed && !br.forgetSilently(c.sid, s.cfg.Clock.Now()) && len(before) > 0 {
		frame := wire.AppendMessage(nil, &wire.Presence{Handle: r.id, Joins: []wire.Member{c.member()}})
		r.notifying(func() {
			for _, o := range before {
				_ = o.native.ctlQ.Enqueue(frame)
			}
		})
	}
	if leftLobby {
		// After the room's presence and join (deferred): other processes
		// see it in the room before it leaves their lobby.
		defer s.lobbyChanged(c)
	}
	if p := s.cfg.Presence; p != nil && !resumed {
		ctx, cancel := s.opCtx()
		defer cancel()
		info := c.presenceInfo()
		ok := written // by the claim; a failed one was logged there
		if !claim {
			if err := p.AddPresence(ctx, r.channel, info); err != nil {
				s.log.Warn("relay presence add failed", "channel", r.channel, "error", err)
			} else {
				ok = true
			}
		}
		if !ok {
			if s.cluster != nil && c.roomNamed(name) == r {
				s.cluster.markRepair(c) // the engine refreshes only written entries
			}
		} else if err := p.PublishJoin(ctx, r.channel, info); err != nil {
			s.log.Warn("relay join publication failed", "channel", r.channel, "error", err)
		}
	}
	if br != nil {
		s.cluster.announce(busJoin, r, c)
	}
	return r, before, nil
}

// leave removes c from r (deleting r when empty) and its hub presence.
func (s *Server) leave(c *conn, r *room) {
	s.leaveRoom(c, r, false)
}

// dropMemberLocked takes c out of r's members, and r out of the rooms
// when c was the last (s.mu held).
func (s *Server) dropMemberLocked(r *room, c *conn) {
	delete(r.members, c)
	r.snapshotLocked()
	if len(r.members) == 0 && r.pending == 0 && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
		s.metrics.rooms.Dec()
	}
}

// leaveRoom is leave; toLobby (an ISSUN leave) puts c in the lobby in the
// critical section that takes it out of r, so it gets the lobby's
// broadcasts from when it stops getting r's; its lobby join goes out
// after its leave of r.
func (s *Server) leaveRoom(c *conn, r *room, toLobby bool) {
	s.mu.Lock()
	if _, ok := r.members[c]; !ok {
		s.mu.Unlock()
		return
	}
	s.dropMemberLocked(r, c)
	c.rmu.Lock()
	delete(c.rooms, r.name)
	c.rmu.Unlock()
	enteredLobby := toLobby && s.lobbyAddLocked(c)
	s.mu.Unlock()
	if enteredLobby {
		defer s.lobbyChanged(c)
	}
	if p := s.cfg.Presence; p != nil {
		ctx, cancel := s.opCtx()
		defer cancel()
		if err := p.RemovePresence(ctx, r.channel, c.sid, c.user); err != nil {
			s.log.Warn("relay presence remove failed", "channel", r.channel, "error", err)
		}
		if err := p.PublishLeave(ctx, r.channel, c.presenceInfo()); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("relay leave publication failed", "channel", r.channel, "error", err)
		}
	}
	if r.bus != nil {
		s.cluster.announce(busLeave, r, c)
		s.cluster.release(r.bus)
	}
}

// The lobby across processes. A connection's local lobby membership
// (Server.lobby's members, under Server.mu) changes at once, with no
// engine call; its cluster side (the hub presence of LobbyChannel and the
// bus join or leave) follows in the background: lobbyBus runs the steps
// of one connection in order, one at a time, each making the cluster
// side match the local membership as it is then, so a connection's
// joins and leaves are announced in order and the handshake or the read
// loop never waits for Redis. A presence write that fails (the engine is
// down) is done again by the next lobby sync (cluster.syncLobby).

// lobbyBus is a connection's lobby state across processes.
type lobbyBus struct {
	mu      sync.Mutex // guards running, dirty, rewrite, done
	running bool       // a worker is on it
	dirty   bool       // the local membership changed since the step began
	rewrite bool       // the user changed: write the presence again
	done    chan struct{}

	// step is held by a step (engine calls included): one at a time.
	step sync.Mutex
	// in: the presence is written and the join announced; seq is
	// cluster.lobbySeq at the write. Guarded by step.
	in  bool
	seq uint64
}

// enterLobby puts c (ISSUN, authenticated, in no room) in the lobby.
// Called by c's read goroutine (or its handshake) only.
func (s *Server) enterLobby(c *conn) {
	s.mu.Lock()
	added := s.lobbyAddLocked(c)
	s.mu.Unlock()
	if added {
		s.lobbyChanged(c)
	}
}

// leaveLobby takes c out of the lobby (it is gone: its cluster side is
// undone before this returns).
func (s *Server) leaveLobby(c *conn) {
	s.mu.Lock()
	s.lobbyRemoveLocked(c)
	s.mu.Unlock()
	s.lobbySettle(c)
}

// lobbyUserChanged rewrites the lobby presence of c (without a token
// until now) under its new user, and announces it again so the other
// processes know the new user: an entry of the same session id replaces
// the old one, never missing meanwhile.
func (s *Server) lobbyUserChanged(c *conn, oldUser string) {
	if s.cluster == nil || oldUser == c.user {
		return
	}
	c.lobby.mu.Lock()
	c.lobby.rewrite = true
	c.lobby.mu.Unlock()
	s.lobbyChanged(c)
}

func (s *Server) lobbyAddLocked(c *conn) bool {
	if _, in := s.lobby.members[c]; in {
		return false
	}
	if s.lobby.members == nil {
		s.lobby.members = map[*conn]struct{}{}
	}
	s.lobby.members[c] = struct{}{}
	s.lobby.snapshotLocked()
	return true
}

func (s *Server) lobbyRemoveLocked(c *conn) bool {
	if _, in := s.lobby.members[c]; !in {
		return false
	}
	delete(s.lobby.members, c)
	s.lobby.snapshotLocked()
	return true
}

func (s *Server) inLobby(c *conn) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, in := s.lobby.members[c]
	return in
}

// lobbyChanged has c's cluster side follow its local lobby membership:
// a worker (owned by the cluster) runs the steps until nothing changed
// meanwhile. Nothing without a bus; it never blocks.
func (s *Server) lobbyChanged(c *conn) {
	cl := s.cluster
	if cl == nil {
		return
	}
	lb := &c.lobby
	lb.mu.Lock()
	if lb.running {
		lb.dirty = true
		lb.mu.Unlock()
		return
	}
	lb.running, lb.dirty = true, false
	done := make(chan struct{})
	lb.done = done
	lb.mu.Unlock()
	started := cl.goRun(func() {
		for {
			s.lobbyStep(c)
			lb.mu.Lock()
			if !lb.dirty {
				lb.running = false
				close(done)
				lb.mu.Unlock()
				return
			}
			lb.dirty = false
			lb.mu.Unlock()
		}
	})
	if !started { // closing: lobbySettle of c's finish does the step
		lb.mu.Lock()
		lb.running = false
		close(done)
		lb.mu.Unlock()
	}
}

// lobbySettle waits for c's lobby worker, then runs a step itself: when
// it returns, c's cluster side matches its local membership (as far as
// the engine answered).
func (s *Server) lobbySettle(c *conn) {
	if s.cluster == nil {
		return
	}
	lb := &c.lobby
	lb.mu.Lock()
	done := lb.done
	lb.mu.Unlock()
	if done != nil {
		<-done
	}
	s.lobbyStep(c)
}

// lobbyStep makes c's cluster side match its local lobby membership:
// it writes its lobby presence then announces its join, or removes the
// presence then announces its leave.
func (s *Server) lobbyStep(c *conn) {
	lb := &c.lobby
	lb.step.Lock()
	defer lb.step.Unlock()
	lb.mu.Lock()
	rewrite := lb.rewrite
	lb.rewrite = false
	lb.mu.Unlock()
	want := s.inLobby(c) && c.receiving.Load()
	switch {
	case want && (!lb.in || rewrite):
		s.lobbyWriteLocked(c)
	case !want && lb.in:
		lb.in = false
		ctx, cancel := s.cluster.opCtx() // Shutdown's deadline ends it
		err := s.cfg.Presence.RemovePresence(ctx, s.lobby.channel, c.sid, c.userName())
		cancel()
		if err != nil {
			s.log.Warn("relay presence remove failed", "channel", s.lobby.channel, "error", err)
		}
		s.cluster.announce(busLeave, s.lobby, c)
	}
}

// lobbyWriteLocked writes c's lobby presence and announces its join
// (c.lobby.step held); false when the presence write failed.
func (s *Server) lobbyWriteLocked(c *conn) bool {
	cl := s.cluster
	ctx, cancel := cl.opCtx()
	err := s.cfg.Presence.AddPresence(ctx, s.lobby.channel, c.presenceInfo())
	cancel()
	if err != nil {
		s.log.Warn("relay lobby presence add failed: the client is in this process's lobby only until the next lobby sync",
			"node_id", uint64(c.id), "error", err)
		return false
	}
	c.lobby.in = true
	c.lobby.seq = cl.lobbySeq.Add(1)
	cl.announce(busJoin, s.lobby, c)
	return true
}

// lobbyRepair writes again the lobby presence of c, a member of this
// process's lobby that a lobby sync whose read began at lobbySeq seq did
// not find; false when the write failed.
func (s *Server) lobbyRepair(c *conn, seq uint64) bool {
	lb := &c.lobby
	lb.step.Lock()
	defer lb.step.Unlock()
	if (lb.in && lb.seq > seq) || !s.inLobby(c) || !c.receiving.Load() {
		return true // written after the read began, or gone
	}
	return s.lobbyWriteLocked(c)
}

// localRoom is the room of bus name on this process: the lobby for
// lobbyName (nil when none).
func (s *Server) localRoom(name string) *room {
	if name == lobbyName {
		return s.lobby
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rooms[name]
}

// Rooms lists the rooms with members on this process, with their sizes.
func (s *Server) Rooms() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.rooms))
	for n, r := range s.rooms {
		if len(r.members) > 0 { // not one held only by JOINs in flight
			out[n] = len(r.members)
		}
	}
	return out
}

// notifying runs tell (which takes a member list or sends PRESENCE news
// of r) serialised with the others of r; see room.notify.
func (r *room) notifying(tell func()) {
	r.notify.Lock()
	defer r.notify.Unlock()
	tell()
}
