package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Sessions across processes (the Redis engine). A cluster resume token
// starts with the issuing process's origin. A HELLO whose token is not
// parked here asks that process, on its own topic, to hand the session
// over (busAsk, op "resume"):
//
//   - The issuer takes the session out of its parked ones (so its grace
//     timer, a second claim and Shutdown all find it gone), turns its
//     local member of each room into a remote member marked handed, drops
//     its hub presence without a leave publication, frees the NodeId and
//     answers with the session (NodeId, session id, user, connection
//     info, metadata, rooms).
//   - The claimer registers the session under the same NodeId and session
//     id, writes its hub presence (same client id, this process), joins
//     each room replacing any remote member of that session id silently,
//     and publishes joins that every process already knows (no news).
//     The client gets WELCOME Resumed and a JOINED per room.
//
// Nobody sees a leave or a join. When the answer comes after the claimer
// stopped waiting (claimWait passed, its client went, or its process is
// closing), or the claimer cannot take it (NodeId taken here, a room
// refused), or the issuer cannot send it, the process holding the
// session ends it: its rooms see one leave (abandon). If that is lost
// too, the sync of each process drops the member within sync_interval
// (the issuer's after goneHorizon), since no process holds its presence.

// claimWait bounds the wait for another process's answer.
const claimWait = 2 * time.Second

// Requests between processes (busRequest.Op) and refusals (busReply.Err).
const (
	opResume      = "resume"
	opEndNode     = "end_node"
	refuseUnknown = "unknown"
	refuseUser    = "user"
)

// Events of switchboard_relay_cross_process_sessions_total.
const (
	sessionHandedOver   = "handed_over"
	sessionTakenOver    = "taken_over"
	sessionEndedForNode = "ended_for_node"
)

// processTopic is the engine topic of the process origin.
func processTopic(origin string) string { return "relay-process:" + origin }

// busRequest asks another process for a session.
type busRequest struct {
	ID    string `json:"i"`
	Op    string `json:"o"`
	Token string `json:"k,omitempty"` // opResume
	User  string `json:"u,omitempty"`
	Node  uint64 `json:"n,omitempty"` // opEndNode
	SID   string `json:"s,omitempty"` // opEndNode
}

// busReply answers a busRequest: Err empty means done.
type busReply struct {
	ID      string         `json:"i"`
	Err     string         `json:"e,omitempty"`
	Session *handedSession `json:"s,omitempty"` // opResume
}

// handedSession is a parked session handed over to another process.
type handedSession struct {
	Node  uint64   `json:"n"`
	SID   string   `json:"s"`
	User  string   `json:"u,omitempty"`
	Info  []byte   `json:"c,omitempty"`
	Meta  []byte   `json:"m,omitempty"`
	Rooms []string `json:"r"`
}

var (
	errNoAnswer      = errors.New("relay: no answer from the other process")
	errBusDownResume = fmt.Errorf("relay: resume on another process: %w", hub.ErrRetryLater)
)

// subscribeProcess subscribes the process's own topic; false on failure.
func (cl *cluster) subscribeProcess() bool {
	ctx, cancel := context.WithTimeout(cl.syncCtx, opTimeout)
	err := cl.bus.Subscribe(ctx, cl.procTopic)
	cancel()
	if err != nil {
		cl.s.log.Warn("relay process topic subscribe failed", "topic", cl.procTopic, "error", err)
		return false
	}
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	if cl.closed {
		_ = cl.bus.Unsubscribe(cl.procTopic)
		return true
	}
	cl.procReady = true
	return true
}

// retrySubscribeProcess subscribes the process topic every second until
// it works or close.
func (cl *cluster) retrySubscribeProcess() {
	tick := make(chan struct{}, 1)
	for {
		t := cl.s.cfg.Clock.AfterFunc(time.Second, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-cl.stop:
			t.Stop()
			return
		case <-tick:
		}
		if cl.subscribeProcess() {
			return
		}
	}
}

// ask sends req to process to and waits for its answer, at most claimWait
// or until ctx ends. errNoAnswer when none came; an error wrapping
// hub.ErrRetryLater when the engine did not take the request.
func (cl *cluster) ask(ctx context.Context, to string, req *busRequest) (*busReply, error) {
	cl.procMu.Lock()
	if !cl.procReady {
		cl.procMu.Unlock()
		return nil, fmt.Errorf("relay: process topic not subscribed: %w", hub.ErrRetryLater)
	}
	req.ID = uuid.NewString()
	ch := make(chan *busReply, 1)
	cl.pending[req.ID] = ch
	cl.procMu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	err := cl.bus.Publish(pctx, []hub.TopicMessage{{Topic: processTopic(to), Data: busJSONFrame(busAsk, cl.origin, req)}})
	cancel()
	if err != nil {
		if cl.forget(req.ID) {
			if !errors.Is(err, hub.ErrRetryLater) {
				err = fmt.Errorf("%w: %w", hub.ErrRetryLater, err)
			}
			return nil, fmt.Errorf("relay: ask process %s: %w", to, err)
		}
		return <-ch, nil // answered although the publish reported an error
	}
	t := time.NewTimer(claimWait)
	defer t.Stop()
	select {
	case a := <-ch:
		return a, nil
	case <-t.C:
	case <-ctx.Done():
	}
	if cl.forget(req.ID) {
		return nil, errNoAnswer
	}
	return <-ch, nil // the answer came as the wait ended
}

// forget drops a pending request; false when its answer was delivered.
func (cl *cluster) forget(id string) bool {
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	_, ok := cl.pending[id]
	delete(cl.pending, id)
	return ok
}

// handleProcess handles a message on the process topic (on the engine's
// reader goroutine: requests are served in goroutines of their own).
func (cl *cluster) handleProcess(m *busMessage) {
	switch m.kind {
	case busAsk:
		var req busRequest
		if json.Unmarshal(m.body, &req) != nil || req.ID == "" {
			cl.dropBad.Inc()
			return
		}
		from := m.origin
		cl.goRun(func() { cl.serve(from, &req) })
	case busAnswer:
		var a busReply
		if json.Unmarshal(m.body, &a) != nil {
			cl.dropBad.Inc()
			return
		}
		cl.procMu.Lock()
		ch := cl.pending[a.ID]
		delete(cl.pending, a.ID)
		cl.procMu.Unlock()
		if ch != nil {
			ch <- &a
			return
		}
		if h := a.Session; h != nil {
			// The claimer stopped waiting: the session is ours to end.
			if !cl.goRun(func() { cl.abandon(h) }) {
				cl.s.log.Warn("relay session handed over while closing: left to the syncs", "node_id", h.Node)
			}
		}
	default:
		cl.dropBad.Inc()
	}
}

// serve answers a request of process from.
func (cl *cluster) serve(from string, req *busRequest) {
	s := cl.s
	a := &busReply{ID: req.ID}
	switch req.Op {
	case opResume:
		h, err := s.handOver(req.Token, req.User)
		switch {
		case errors.Is(err, ErrResumeUser):
			a.Err = refuseUser
		case err != nil:
			a.Err = refuseUnknown
		default:
			a.Session = h
		}
	case opEndNode:
		if req.SID == "" || !s.endParkedNode(wire.NodeID(req.Node), req.SID, req.User) {
			a.Err = refuseUnknown
		} else {
			cl.sessions.WithLabelValues(sessionEndedForNode).Inc()
		}
	default:
		a.Err = refuseUnknown
	}
	ctx, cancel := s.opCtx()
	err := cl.bus.Publish(ctx, []hub.TopicMessage{{Topic: processTopic(from), Data: busJSONFrame(busAnswer, cl.origin, a)}})
	cancel()
	if err != nil {
		s.log.Warn("relay answer to another process failed", "op", req.Op, "error", err)
		if a.Session != nil {
			cl.abandon(a.Session)
		}
		return
	}
	if a.Session != nil {
		cl.sessions.WithLabelValues(sessionHandedOver).Inc()
		s.log.Debug("relay session handed over to another process", "node_id", a.Session.Node, "process", from)
	}
}

// handOver takes the parked session of token out for another process
// (see the top of this file); user is who the claimer's token names.
func (s *Server) handOver(token, user string) (*handedSession, error) {
	s.mu.Lock()
	p := s.parked[token]
	if p == nil || s.closing.Load() {
		s.mu.Unlock()
		return nil, ErrResumeUnknown
	}
	old := p.c
	if old.user != "" && old.user != user {
		s.mu.Unlock()
		return nil, ErrResumeUser
	}
	p.timer.Stop()
	delete(s.parked, token)
	s.metrics.parked.Dec()
	s.expiring.Add(1) // Shutdown (stopParked) waits for the handover
	s.mu.Unlock()
	defer s.expiring.Done()
	old.mu.Lock()
	meta := old.meta
	old.mu.Unlock()
	h := &handedSession{Node: uint64(old.id), SID: old.sid, User: old.user, Info: old.connInfo(), Meta: meta}
	for _, r := range old.roomList() {
		h.Rooms = append(h.Rooms, r.name)
		s.handOff(old, r, meta)
	}
	s.unregister(old)
	return h, nil
}

// handOff turns old's membership of r into a remote member's (handed),
// without news, and drops its hub presence without a leave publication.
func (s *Server) handOff(old *conn, r *room, meta []byte) {
	br := r.bus
	if br != nil {
		rm := remoteMember{node: old.id, sid: old.sid, user: old.user, transport: r.transport, meta: meta,
			added: s.cfg.Clock.Now(), handed: true}
		br.news.Lock()
		br.mu.Lock()
		br.putRemoteLocked(rm)
		delete(br.gone, rm.sid)
		br.mu.Unlock()
		br.news.Unlock()
	}
	s.mu.Lock()
	delete(r.members, old)
	r.snapshotLocked()
	if len(r.members) == 0 && s.rooms[r.name] == r {
		delete(s.rooms, r.name)
		s.metrics.rooms.Dec()
	}
	s.mu.Unlock()
	old.rmu.Lock()
	delete(old.rooms, r.name)
	old.rmu.Unlock()
	if p := s.cfg.Presence; p != nil {
		ctx, cancel := s.opCtx()
		if err := p.RemovePresence(ctx, r.channel, old.sid, old.user); err != nil {
			s.log.Warn("relay presence remove failed", "channel", r.channel, "error", err)
		}
		cancel()
	}
	if br != nil {
		s.cluster.release(br)
	}
}

// abandon ends a handed-over session no process took: every process's
// members of its rooms see it leave, and its hub presence goes.
func (cl *cluster) abandon(h *handedSession) {
	s := cl.s
	s.log.Info("relay session handed over between processes was not taken: it leaves", "node_id", h.Node)
	rm := remoteMember{node: wire.NodeID(h.Node), sid: h.SID, user: h.User, transport: transportNative, meta: h.Meta}
	for _, name := range h.Rooms {
		cl.dropRemote(name, rm)
		topic := ChannelPrefix + name
		if p := s.cfg.Presence; p != nil {
			ctx, cancel := s.opCtx()
			if err := p.RemovePresence(ctx, topic, h.SID, h.User); err != nil {
				s.log.Warn("relay presence remove failed", "channel", topic, "error", err)
			}
			_ = p.PublishLeave(ctx, topic, &hub.ClientInfo{ClientID: h.SID, UserID: h.User, ConnInfo: h.Info})
			cancel()
		}
		cl.enqueueWait(topic, busMemberFrame(busLeave, transportNative, cl.origin,
			&busMember{Node: h.Node, SID: h.SID, User: h.User, Meta: h.Meta}))
	}
}

// dropRemote forgets the remote member rm.sid of room name (as a leave
// would: a sync in flight does not bring it back) and tells the local
// members it left, when it was known.
func (cl *cluster) dropRemote(name string, rm remoteMember) {
	br := cl.room(name)
	if br == nil {
		return
	}
	br.news.Lock()
	defer br.news.Unlock()
	br.mu.Lock()
	_, known := br.dropRemoteLocked(rm.sid)
	now := cl.s.cfg.Clock.Now()
	br.gone[rm.sid] = now
	br.pruneGoneLocked(now)
	br.mu.Unlock()
	if known {
		cl.tell(name, nil, []remoteMember{rm})
	}
}

// forgetSilently drops the remote member sid of br without news: the
// session is now a local member here (a resume taken over).
func (br *busRoom) forgetSilently(sid string, now time.Time) {
	br.news.Lock()
	defer br.news.Unlock()
	br.mu.Lock()
	defer br.mu.Unlock()
	br.dropRemoteLocked(sid)
	br.gone[sid] = now // a sync whose read began before must not add it back
	br.pruneGoneLocked(now)
}

// resumeRemote resumes on c the session of a token another process
// issued (see the top of this file); user is who c's token names.
func (cl *cluster) resumeRemote(c *conn, token, user string) ([]*room, error) {
	s := cl.s
	from, ok := tokenOrigin(token)
	if !ok || from == cl.origin || s.closing.Load() {
		return nil, ErrResumeUnknown
	}
	a, err := cl.ask(c.ctx, from, &busRequest{Op: opResume, Token: token, User: user})
	if errors.Is(err, errNoAnswer) {
		return nil, ErrResumeUnknown
	}
	if err != nil {
		return nil, err
	}
	if a.Err == refuseUser {
		return nil, ErrResumeUser
	}
	h := a.Session
	if a.Err != "" || h == nil {
		return nil, ErrResumeUnknown
	}
	c.id, c.sid, c.user, c.info = wire.NodeID(h.Node), h.SID, h.User, h.Info
	c.tokenAccepted.Store(h.User != "")
	c.setMemberMeta(h.Meta)
	if err := s.register(c); err != nil {
		cl.abandon(h)
		return nil, err
	}
	// The presence first: the issuer removed it, and the sooner it is
	// back the smaller the window in which a sync misses it.
	if p := s.cfg.Presence; p != nil {
		info := c.presenceInfo()
		for _, name := range h.Rooms {
			ctx, cancel := s.opCtx()
			if err := p.AddPresence(ctx, ChannelPrefix+name, info); err != nil {
				s.log.Warn("relay presence add failed", "channel", ChannelPrefix+name, "error", err)
			}
			cancel()
		}
	}
	rooms := make([]*room, 0, len(h.Rooms))
	for i, name := range h.Rooms {
		r, _, err := s.joinRoom(c, name, 0, true)
		if err != nil {
			for _, r := range rooms {
				c.nativeLeave(r)
			}
			rest := *h
			rest.Rooms = h.Rooms[i:]
			cl.abandon(&rest)
			s.unregister(c)
			return nil, fmt.Errorf("relay: resume: room %q: %w", name, err)
		}
		rooms = append(rooms, r)
	}
	cl.sessions.WithLabelValues(sessionTakenOver).Inc()
	s.log.Debug("relay session resumed from another process", "node_id", h.Node, "process", from)
	return rooms, nil
}

// freeNode clears the way for c to join br's room with its NodeId, which
// a remote member has: when that member is a parked session of c's user,
// its process ends it (its rooms see it leave) and this process forgets
// it at once; otherwise errNodeInRoom (or the engine's error).
func (cl *cluster) freeNode(br *busRoom, c *conn) error {
	var rm remoteMember
	found := false
	br.mu.Lock()
	for _, m := range br.remote {
		if m.node == c.id {
			rm, found = m, true
			break
		}
	}
	br.mu.Unlock()
	if !found {
		return nil // gone meanwhile
	}
	if rm.user != c.user || rm.process == "" || rm.handed {
		return errNodeInRoom
	}
	a, err := cl.ask(c.ctx, rm.process, &busRequest{Op: opEndNode, Node: uint64(c.id), SID: rm.sid, User: c.user})
	if err != nil && errors.Is(err, hub.ErrRetryLater) {
		return err
	}
	if err != nil || a.Err != "" {
		return errNodeInRoom // live, another user's, or its process is gone
	}
	cl.dropRemote(br.name, rm)
	return nil
}

// endParkedNode ends the parked session of NodeId id when it is user's
// (and has session id sid, unless sid is empty): its rooms see it leave
// before this returns. It reports whether it ended one.
func (s *Server) endParkedNode(id wire.NodeID, sid, user string) bool {
	s.mu.Lock()
	c := s.nodes[id]
	if c == nil || s.closing.Load() || c.user != user || (sid != "" && c.sid != sid) {
		s.mu.Unlock()
		return false
	}
	p := s.parked[c.resume]
	if p == nil || p.c != c {
		s.mu.Unlock()
		return false
	}
	p.timer.Stop()
	delete(s.parked, c.resume)
	s.metrics.parked.Dec()
	s.expiring.Add(1) // awaited by Shutdown (stopParked)
	s.mu.Unlock()
	defer s.expiring.Done()
	s.endParked(c)
	return true
}
