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
	snap       atomic.Pointer[[]*conn]
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
	if len(c.roomList()) >= s.cfg.MaxRooms {
		return nil, nil, ErrTooManyRooms
	}
	if maxMembers <= 0 || maxMembers > s.cfg.MaxMembers {
		maxMembers = s.cfg.MaxMembers
	}
	var br *busRoom
	if s.cluster != nil {
		var err error
		if br, err = s.cluster.acquire(name); err != nil {
			return nil, nil, err
		}
		if !resumed && br.hasRemote(c.id) {
			// Held on another process by a parked session of this user:
			// that process ends it (nodeFreed); anything else conflicts.
			if err := s.cluster.freeNode(br, c); err != nil {
				s.cluster.release(br)
				return nil, nil, err
			}
		}
	}
	var r *room
	refuse := func(err error) (*room, []*conn, error) {
		if len(r.members) == 0 && s.rooms[name] == r { // created for this join
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
	if r.transport != c.transport || (br != nil && br.remoteTransport() != "" && br.remoteTransport() != c.transport) {
		return refuse(errRoomTransport)
	}
	if !resumed && len(r.members)+br.remoteCount() >= r.maxMembers {
		return refuse(ErrRoomFull)
	}
	if (!resumed && br.hasRemote(c.id)) || (resumed && br.hasOtherRemote(c.id, c.sid)) {
		return refuse(errNodeInRoom)
	}
	before := *r.snap.Load()
	r.members[c] = struct{}{}
	r.snapshotLocked()
	s.mu.Unlock()
	if resumed {
		// After adding the local member: a JOINED taken meanwhile lists
		// the session once (members skips the remote record), never not.
		br.forgetSilently(c.sid, s.cfg.Clock.Now())
	}
	c.rmu.Lock()
	c.rooms[name] = r
	c.rmu.Unlock()
	if p := s.cfg.Presence; p != nil && !resumed {
		ctx, cancel := s.opCtx()
		defer cancel()
		info := c.presenceInfo()
		if err := p.AddPresence(ctx, r.channel, info); err != nil {
			s.log.Warn("relay presence add failed", "channel", r.channel, "error", err)
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
	s.mu.Lock()
	if _, ok := r.members[c]; !ok {
		s.mu.Unlock()
		return
	}
	delete(r.members, c)
	r.snapshotLocked()
	if len(r.members) == 0 && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
		s.metrics.rooms.Dec()
	}
	s.mu.Unlock()
	c.rmu.Lock()
	delete(c.rooms, r.name)
	c.rmu.Unlock()
	if p := s.cfg.Presence; p != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
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

// enterLobby puts c (ISSUN, authenticated, in no room) in the lobby.
// With a bus the lobby spans the processes as a room does: the first
// member holds its topic (subscribe, then a sync from presence), and c's
// hub presence and join go out before c is reachable from elsewhere. When
// the bus is down, c is in this process's lobby only.
// Called by c's read goroutine (or its handshake) only.
func (s *Server) enterLobby(c *conn) {
	s.mu.RLock()
	_, in := s.lobby.members[c]
	s.mu.RUnlock()
	if in {
		return
	}
	cl := s.cluster
	held := false
	if cl != nil {
		if _, err := cl.acquire(lobbyName); err != nil {
			s.log.Warn("relay lobby across processes unavailable: the client is in this process's lobby only",
				"node_id", uint64(c.id), "error", err)
		} else {
			held = true
		}
	}
	s.mu.Lock()
	if s.lobby.members == nil {
		s.lobby.members = map[*conn]struct{}{}
	}
	s.lobby.members[c] = struct{}{}
	s.lobby.snapshotLocked()
	c.lobbyBus = held
	s.mu.Unlock()
	if !held {
		return
	}
	if p := s.cfg.Presence; p != nil {
		ctx, cancel := s.opCtx()
		err := p.AddPresence(ctx, s.lobby.channel, c.presenceInfo())
		cancel()
		if err != nil {
			s.log.Warn("relay presence add failed", "channel", s.lobby.channel, "error", err)
		}
	}
	cl.announce(busJoin, s.lobby, c)
}

// leaveLobby takes c out of the lobby (joining a room, or gone); with a
// bus, its hub presence and leave go out and the last member lets go of
// the lobby's topic.
func (s *Server) leaveLobby(c *conn) {
	s.mu.Lock()
	_, in := s.lobby.members[c]
	held := c.lobbyBus
	if in {
		delete(s.lobby.members, c)
		s.lobby.snapshotLocked()
		c.lobbyBus = false
	}
	s.mu.Unlock()
	if !in || !held {
		return
	}
	if p := s.cfg.Presence; p != nil {
		ctx, cancel := s.opCtx()
		err := p.RemovePresence(ctx, s.lobby.channel, c.sid, c.user)
		cancel()
		if err != nil {
			s.log.Warn("relay presence remove failed", "channel", s.lobby.channel, "error", err)
		}
	}
	s.cluster.announce(busLeave, s.lobby, c)
	s.cluster.release(s.cluster.lobby)
}

// lobbyUserChanged rewrites the lobby presence of c (in the lobby across
// processes, without a token until now) under its new user: an entry of
// the same session id replaces the old one, never missing meanwhile.
func (s *Server) lobbyUserChanged(c *conn, oldUser string) {
	s.mu.RLock()
	held := c.lobbyBus
	s.mu.RUnlock()
	p := s.cfg.Presence
	if !held || p == nil || oldUser == c.user {
		return
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := p.AddPresence(ctx, s.lobby.channel, c.presenceInfo()); err != nil {
		s.log.Warn("relay presence add failed", "channel", s.lobby.channel, "error", err)
	}
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
		out[n] = len(r.members)
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
