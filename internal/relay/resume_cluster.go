package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
//     local member of each room into a remote member marked handed, frees
//     the NodeId and answers with the session (NodeId, session id, user,
//     connection info, metadata, rooms), all in memory, unless the
//     request's deadline is too near. Then it drops its hub presence
//     without a leave publication and lets go of the rooms' topics, and
//     tells the claimer (opPresent) to write its presence again, which
//     that removal may have undone.
//   - The claimer registers the session under the same NodeId and session
//     id, writes its hub presence (same client id, this process), joins
//     each room replacing any remote member of that session id silently,
//     and publishes joins that every process already knows (no news).
//     The client gets WELCOME Resumed and a JOINED per room. The token
//     it resumed with stays an alias of the session here (c.alias), and
//     the issuer redirects a later claim with it here for ResumeGrace
//     (handedTo), for a client that lost that WELCOME.
//
// Nobody sees a leave or a join. When the answer comes after the claimer
// stopped waiting (claimWait passed, or its process is closing: not when
// its client went, the session is then parked here), or the claimer
// cannot take it (NodeId taken here, a room refused), or the issuer
// cannot send it, the process holding the session ends it: its rooms see
// one leave (abandon), provided the answer is to a request it gave up on.
// If that is lost too, the sync of each process drops the member within
// sync_interval (the issuer's after goneHorizon), since no process holds
// its presence. The server API's disconnect meanwhile is followed across
// (handingState, opDisconnect).

// claimWait bounds the wait for another process's answer.
const claimWait = 2 * time.Second

// maxClaimAsks bounds the processes one resume asks (the first and the
// redirects it follows).
const maxClaimAsks = 3

// maxHandedRecords bounds the tokens of sessions handed over that a
// process remembers (for ResumeGrace) to redirect a later claim.
const maxHandedRecords = 4096

// handedRecord: the session of a token went to process to at time at.
type handedRecord struct {
	to string
	at time.Time
}

// recordHanded remembers that the sessions of tokens went to process to.
func (cl *cluster) recordHanded(to string, tokens ...string) {
	now := cl.s.cfg.Clock.Now()
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	for t, r := range cl.handed {
		if len(cl.handed) < maxHandedRecords/2 {
			break
		}
		if now.Sub(r.at) >= cl.s.cfg.ResumeGrace {
			delete(cl.handed, t)
		}
	}
	for _, t := range tokens {
		if t == "" {
			continue
		}
		for k := range cl.handed { // full of fresh records: the oldest go first, roughly
			if len(cl.handed) < maxHandedRecords {
				break
			}
			delete(cl.handed, k)
		}
		cl.handed[t] = handedRecord{to: to, at: now}
	}
}

// handedTo returns the process the session of token was handed over to
// within ResumeGrace ("" for none).
func (cl *cluster) handedTo(token string) string {
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	r, ok := cl.handed[token]
	if !ok {
		return ""
	}
	if cl.s.cfg.Clock.Now().Sub(r.at) >= cl.s.cfg.ResumeGrace {
		delete(cl.handed, token)
		return ""
	}
	return r.to
}

// Requests between processes (busRequest.Op) and refusals (busReply.Err).
const (
	opResume  = "resume"
	opEndNode = "end_node"
	opPresent = "present" // no answer: write the session's presence again
	// opHolds: does the process hold the session in the room (a member,
	// a JOIN claiming, a session arriving or being handed over)? Empty
	// answer: yes; refuseAbsent: no.
	opHolds = "holds"
	// opDisconnect (no answer): the server API disconnected a session
	// handed over to the process asked.
	opDisconnect  = "disconnect"
	refuseUnknown = "unknown"
	refuseUser    = "user"
	refuseBusy    = "unavailable" // too many requests in progress: retry
	refuseAbsent  = "absent"      // opHolds: not held
)

// maxServing bounds the requests of other processes served at once; one
// more is refused (refuseBusy).
const maxServing = 64

// errBusyResume: the other process had too many requests to serve.
var errBusyResume = fmt.Errorf("relay: the other process is busy: %w", hub.ErrRetryLater)

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
	Node  uint64 `json:"n,omitempty"` // opEndNode, opPresent
	SID   string `json:"s,omitempty"` // opEndNode, opPresent, opHolds
	Room  string `json:"r,omitempty"` // opHolds
	// Deadline (opResume, unix milliseconds): when the claimer stops
	// waiting; an issuer that could not answer well before refuses.
	Deadline int64 `json:"t,omitempty"`
	// Code and Reason (opDisconnect): the disconnect.
	Code   uint32 `json:"c,omitempty"`
	Reason string `json:"w,omitempty"`
}

// handingState is a session of this process being handed over: its hub
// session stays registered until the answer is sent, so that the server
// API's disconnect meanwhile reaches it (disconnectSession).
type handingState struct {
	to       string
	node     wire.NodeID
	sid      string
	answered bool
	d        *hub.Disconnect // the disconnect that came before the answer
}

// handingDisconnect handles the server API's disconnect of hs when it is
// being handed over (s.mu held, released on true): before the answer the
// handover is refused (serve), after it the claimer is told.
func (s *Server) handingDisconnectLocked(hs *hubSession, d hub.Disconnect) bool {
	cl := s.cluster
	if cl == nil {
		return false
	}
	st := cl.handing[hs]
	if st == nil {
		return false
	}
	if !st.answered {
		st.d = &d
		s.mu.Unlock()
		return true
	}
	req := &busRequest{ID: uuid.NewString(), Op: opDisconnect, Node: uint64(st.node), SID: st.sid, Code: d.Code, Reason: d.Reason}
	to := st.to
	s.mu.Unlock()
	cl.enqueue(processTopic(to), busJSONFrame(busAsk, cl.origin, req))
	return true
}

// disconnectHanded disconnects with d the session sid of NodeId id that
// this process took over from process from (opDisconnect); when it is not
// registered yet, the claimer finds the record after registering
// (resumeRemote). A session not taken from that process lately is left.
func (s *Server) disconnectHanded(from string, id wire.NodeID, sid string, d hub.Disconnect) {
	cl := s.cluster
	now := time.Now()
	s.mu.Lock()
	c := s.nodes[id]
	if c != nil && c.sid == sid && c.hs != nil {
		t, ok := cl.taken[sid]
		if !ok || t.to != from || now.Sub(t.at) >= gaveUpHorizon {
			s.mu.Unlock()
			cl.dropBad.Inc()
			return
		}
		hs := c.hs
		s.mu.Unlock()
		s.disconnectSession(hs, d)
		return
	}
	recordLocked(cl.disconnected, sid, from, now)
	s.mu.Unlock()
}

// recordLocked records key → to at now in m, keeping m within maxGaveUp
// entries of the last gaveUpHorizon.
func recordLocked(m map[string]handedRecord, key, to string, now time.Time) {
	for k, r := range m {
		if len(m) < maxGaveUp && now.Sub(r.at) < gaveUpHorizon {
			break
		}
		delete(m, k)
	}
	m[key] = handedRecord{to: to, at: now}
}

// takeDisconnected reports whether process from disconnected the session
// id sid before it was registered here, and forgets it.
func (s *Server) takeDisconnected(sid, from string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.cluster.disconnected[sid]
	delete(s.cluster.disconnected, sid)
	return ok && r.to == from && time.Since(r.at) < gaveUpHorizon
}

// answerMargin is the time an answer needs to reach the claimer: an
// issuer later than Deadline minus this refuses rather than hand over.
const answerMargin = claimWait / 4

// late reports whether req's deadline (if any) is too near to answer.
func (req *busRequest) late(now time.Time) bool {
	return req.Deadline != 0 && now.UnixMilli() > req.Deadline-answerMargin.Milliseconds()
}

// busReply answers a busRequest: Err empty means done.
type busReply struct {
	ID      string         `json:"i"`
	Err     string         `json:"e,omitempty"`
	Session *handedSession `json:"s,omitempty"` // opResume
	// Redirect (opResume): the session of the token was handed over to
	// that process, which the claimer asks next.
	Redirect string `json:"d,omitempty"`
}

// handedSession is a parked session handed over to another process.
type handedSession struct {
	Node  uint64   `json:"n"`
	SID   string   `json:"s"`
	User  string   `json:"u,omitempty"`
	Info  []byte   `json:"c,omitempty"`
	Meta  []byte   `json:"m,omitempty"`
	Rooms []string `json:"r"`
	// tokens are the session's tokens on the issuer (not sent): a later
	// claim with one of them is redirected to the claimer.
	tokens []string
	// hs is its hub session on the issuer (not sent).
	hs *hubSession
}

// answering marks h as answered unless the server API disconnected it
// since it was taken out (false then).
func (s *Server) answering(h *handedSession) bool {
	s.mu.Lock()
	st := s.cluster.handing[h.hs]
	if st != nil && st.d != nil {
		s.mu.Unlock()
		return false
	}
	if st != nil {
		st.answered = true
	}
	s.mu.Unlock()
	s.cluster.hook("answering")
	return true
}

// hook runs the test hook of stage, if any (testHandOver).
func (cl *cluster) hook(stage string) {
	if f := cl.testHandOver.Load(); f != nil {
		(*f)(stage)
	}
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

// ask sends req to process to and waits for its answer, at most claimWait
// or until ctx ends or gone is closed (the client's connection ended).
// errNoAnswer when none came; an error wrapping hub.ErrRetryLater when the
// engine did not take the request.
func (cl *cluster) ask(ctx context.Context, gone <-chan struct{}, to string, req *busRequest) (*busReply, error) {
	cl.procMu.Lock()
	if !cl.procReady {
		cl.procMu.Unlock()
		return nil, fmt.Errorf("relay: process topic not subscribed: %w", hub.ErrRetryLater)
	}
	req.ID = uuid.NewString()
	ch := make(chan *busReply, 1)
	cl.pending[req.ID] = pendingAsk{ch: ch, to: to}
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
	case <-gone:
	}
	if cl.forget(req.ID) {
		return nil, errNoAnswer
	}
	return <-ch, nil // the answer came as the wait ended
}

// pendingAsk is a request waiting for the answer of process to.
type pendingAsk struct {
	ch chan *busReply
	to string
}

// maxGaveUp bounds the requests given up on that a process remembers, for
// gaveUpFor (an answer later than that is left to the syncs).
const maxGaveUp = 1024

// gaveUpHorizon is how long a request given up on is remembered: longer
// than an issuer takes to answer (its publish is bounded by opTimeout).
const gaveUpHorizon = claimWait + 2*opTimeout

// forget drops a pending request, remembering it as given up on; false
// when its answer was delivered.
func (cl *cluster) forget(id string) bool {
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	p, ok := cl.pending[id]
	delete(cl.pending, id)
	if ok {
		now := time.Now()
		for k, r := range cl.gaveUp {
			if len(cl.gaveUp) < maxGaveUp && now.Sub(r.at) < gaveUpHorizon {
				break
			}
			delete(cl.gaveUp, k)
		}
		cl.gaveUp[id] = handedRecord{to: p.to, at: now}
	}
	return ok
}

// gaveUpOn reports whether this process gave up on request id to process
// from (within gaveUpHorizon), and forgets it.
func (cl *cluster) gaveUpOn(id, from string) bool {
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	r, ok := cl.gaveUp[id]
	if !ok || r.to != from {
		return false
	}
	delete(cl.gaveUp, id)
	return time.Since(r.at) < gaveUpHorizon
}

// valid reports whether h is a session this process can take: a NodeId,
// a session id, and at most MaxRooms distinct non-empty room names.
func (h *handedSession) valid(maxRooms int) bool {
	if h.Node == 0 || h.SID == "" || len(h.Rooms) > maxRooms {
		return false
	}
	seen := make(map[string]struct{}, len(h.Rooms))
	for _, r := range h.Rooms {
		if _, dup := seen[r]; dup || r == "" {
			return false
		}
		seen[r] = struct{}{}
	}
	return true
}

// handleProcess handles a message on the process topic (on the engine's
// reader goroutine: requests are served in goroutines of their own).
func (cl *cluster) handleProcess(m *busMessage) {
	switch m.kind {
	case busTarget:
		cl.deliverTargeted(m)
	case busAsk:
		var req busRequest
		if json.Unmarshal(m.body, &req) != nil || req.ID == "" {
			cl.dropBad.Inc()
			return
		}
		from := m.origin
		if req.Op == opDisconnect { // does not block: served on the reader
			cl.s.disconnectHanded(from, wire.NodeID(req.Node), req.SID, hub.Disconnect{Code: req.Code, Reason: req.Reason})
			return
		}
		select {
		case cl.serving <- struct{}{}:
			if !cl.goRun(func() { defer func() { <-cl.serving }(); cl.serve(from, &req) }) {
				<-cl.serving
			}
		default:
			if req.Op == opPresent {
				// Not dropped: the repair goroutine writes it (the reader
				// never waits for the engine).
				cl.markRepairSession(wire.NodeID(req.Node), req.SID)
			} else { // queued for the publisher: the reader never blocks
				cl.enqueue(processTopic(from), busJSONFrame(busAnswer, cl.origin, &busReply{ID: req.ID, Err: refuseBusy}))
			}
		}
	case busAnswer:
		var a busReply
		if json.Unmarshal(m.body, &a) != nil || a.ID == "" {
			cl.dropBad.Inc()
			return
		}
		bad := a.Session != nil && !a.Session.valid(cl.s.cfg.MaxRooms)
		cl.procMu.Lock()
		p, ok := cl.pending[a.ID]
		if ok && p.to != m.origin {
			ok = false // not from the process asked: ignored
			bad = true
		} else if ok {
			delete(cl.pending, a.ID)
		}
		cl.procMu.Unlock()
		if bad {
			cl.dropBad.Inc()
			cl.s.log.Warn("relay answer from another process dropped", "process", m.origin)
			if ok {
				p.ch <- &busReply{ID: a.ID, Err: refuseUnknown}
			}
			return
		}
		if ok {
			p.ch <- &a
			return
		}
		h := a.Session
		if h == nil {
			return // a refusal that came late
		}
		if !cl.gaveUpOn(a.ID, m.origin) {
			cl.dropBad.Inc() // not an answer to a request of ours
			cl.s.log.Warn("relay answer from another process dropped: no such request", "process", m.origin)
			return
		}
		// The claimer stopped waiting: the session is ours to end.
		if !cl.goRun(func() { cl.abandonSession(h) }) {
			cl.s.log.Warn("relay session handed over while closing: left to the syncs", "node_id", h.Node)
		}
	default:
		cl.dropBad.Inc()
	}
}

// serve answers a request of process from.
func (cl *cluster) serve(from string, req *busRequest) {
	s := cl.s
	a := &busReply{ID: req.ID}
	var cleanup func()
	switch req.Op {
	case opPresent:
		s.writePresence(cl.ctx, wire.NodeID(req.Node), req.SID)
		cl.hook("present_served")
		return
	case opResume:
		var h *handedSession
		var err error = ErrResumeUnknown
		if !req.late(time.Now()) {
			h, cleanup, err = s.handOver(req.Token, req.User, from)
		}
		if h != nil && !s.answering(h) {
			// The server API disconnected it meanwhile: it ends here.
			cl.abandonSession(h)
			cleanup()
			h, err = nil, ErrResumeUnknown
		}
		switch {
		case errors.Is(err, ErrResumeUser):
			a.Err = refuseUser
		case err != nil:
			if to := cl.handedTo(req.Token); to != "" && to != from {
				a.Redirect = to // handed over already: the client lost its WELCOME there
			} else {
				a.Err = refuseUnknown
			}
		default:
			a.Session = h
		}
	case opHolds:
		if req.SID == "" || !s.holdsSession(req.Room, req.SID) {
			a.Err = refuseAbsent
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
	ctx, cancel := cl.opCtx()
	err := cl.bus.Publish(ctx, []hub.TopicMessage{{Topic: processTopic(from), Data: busJSONFrame(busAnswer, cl.origin, a)}})
	cancel()
	if err != nil {
		s.log.Warn("relay answer to another process failed", "op", req.Op, "error", err)
		if a.Session != nil {
			// The answer may have been delivered all the same (ask): only
			// this process's entries go, so that the claimer's, if
			// written, stay, and only their rooms see the session leave.
			cl.abandonOwn(a.Session)
			cleanup()
		}
		return
	}
	if a.Session == nil {
		return
	}
	cl.recordHanded(from, a.Session.tokens...)
	cl.sessions.WithLabelValues(sessionHandedOver).Inc()
	s.log.Debug("relay session handed over to another process", "node_id", a.Session.Node, "process", from)
	// The engine's part after the answer, which it must not delay. The
	// claimer may have written the presence already, which removing ours
	// removed: it writes it again when told (else its presence refresh
	// does, within a third of the presence TTL).
	cleanup()
	ctx, cancel = cl.opCtx()
	req2 := &busRequest{ID: uuid.NewString(), Op: opPresent, Node: a.Session.Node, SID: a.Session.SID}
	if err := cl.bus.Publish(ctx, []hub.TopicMessage{{Topic: processTopic(from), Data: busJSONFrame(busAsk, cl.origin, req2)}}); err != nil {
		s.log.Warn("relay presence notice to another process failed", "error", err)
	}
	cancel()
}

// writePresence writes the NodeId directory entry and the hub presence
// of the session id sid of NodeId id again in each of its rooms, when it
// is here (opPresent, and the presence repair); base bounds the engine's
// calls (each with opTimeout) but the removals of late entries (s.opBase:
// only Shutdown's deadline ends them). here reports whether the session is here,
// ok whether every write succeeded (true when not here: nothing to
// write); a failed one marks the session's connection for repair
// (markRepair). An entry whose write lands once the session is no longer
// in the room is removed; the session counts, not the connection, since
// a resume on this process moves it onto a new connection.
func (s *Server) writePresence(base context.Context, id wire.NodeID, sid string) (here, ok bool) {
	s.mu.RLock()
	c := s.nodes[id]
	arriving := s.cluster.arriving[sid] // rooms it is still joining
	s.mu.RUnlock()
	if c == nil || c.sid != sid {
		return false, true
	}
	if s.cfg.Presence == nil {
		return true, true
	}
	ok = s.cluster.dirAdd(base, c)
	s.mu.RLock()
	if n := s.nodes[id]; n != nil && n.sid == sid {
		c = n // a resume here took the session over meanwhile: its info counts
	}
	s.mu.RUnlock()
	info := c.presenceInfo()
	removed := false
	names := slices.Clone(arriving)
	for _, r := range c.roomList() {
		if !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(base, opTimeout)
		err := s.writeMember(ctx, ChannelPrefix+name, info, id)
		// Left the room (or went) while the write was in flight: its
		// leave's removal may have come first, and the entry must not stay.
		s.mu.RLock()
		n := s.nodes[id]
		still := n != nil && n.sid == sid && (n.roomNamed(name) != nil || slices.Contains(s.cluster.arriving[sid], name))
		s.mu.RUnlock()
		switch {
		case !still:
			// Not bound by base: a close cancelling it must not leave the
			// entry until the presence TTL (Shutdown's deadline ends it).
			uctx, ucancel := s.opCtx()
			if err := s.cfg.Presence.RemovePresence(uctx, ChannelPrefix+name, sid, info.UserID); err != nil {
				s.log.Warn("relay presence remove failed", "channel", ChannelPrefix+name, "error", err)
			}
			ucancel()
			removed = true
		case err != nil:
			s.log.Warn("relay presence add failed", "channel", ChannelPrefix+name, "error", err)
			ok = false
		}
		cancel()
	}
	if removed {
		s.cluster.presentAgainIfHanded(base, c)
	}
	if !ok {
		s.cluster.markRepairSession(id, sid) // the connection holding it now
	}
	return true, ok
}

// presentAgainIfHanded tells the process c's session was handed over to,
// if any, to write its presence again (opPresent): a removal of ours may
// have come after its rewrite. base bounds the publication (with
// opTimeout): the repair's ends at close, which waits for it.
func (cl *cluster) presentAgainIfHanded(base context.Context, c *conn) {
	to := ""
	for _, t := range []string{c.resume, c.alias} {
		if t != "" && to == "" {
			to = cl.handedTo(t)
		}
	}
	if to == "" {
		return
	}
	ctx, cancel := context.WithTimeout(base, opTimeout)
	defer cancel()
	req := &busRequest{ID: uuid.NewString(), Op: opPresent, Node: uint64(c.id), SID: c.sid}
	if err := cl.bus.Publish(ctx, []hub.TopicMessage{{Topic: processTopic(to), Data: busJSONFrame(busAsk, cl.origin, req)}}); err != nil {
		cl.s.log.Warn("relay presence notice to another process failed", "error", err)
	}
}

// handOver takes the parked session of token out for another process
// (see the top of this file); user is who the claimer's token names. It
// changes only this process's memory; cleanup, to be called once the
// answer is sent, drops the session's hub presence (without a leave
// publication) and lets go of its rooms' topics.
func (s *Server) handOver(token, user, to string) (h *handedSession, cleanup func(), err error) {
	hook := s.cluster.hook
	hook("claim")
	s.mu.Lock()
	p := s.parked[token]
	if p == nil || s.closing.Load() {
		s.mu.Unlock()
		return nil, nil, ErrResumeUnknown
	}
	old := p.c
	if old.final {
		s.mu.Unlock()
		return nil, nil, ErrResumeUnknown // disconnected by the server API
	}
	if old.user != "" && old.user != user {
		s.mu.Unlock()
		return nil, nil, ErrResumeUser
	}
	p.timer.Stop()
	s.unparkLocked(p)
	hs := old.hs
	if hs != nil {
		s.cluster.handing[hs] = &handingState{to: to, node: old.id, sid: old.sid}
	}
	s.expiring.Add(1) // Shutdown (stopParked) waits for the handover
	s.mu.Unlock()
	defer s.expiring.Done()
	hook("taken")
	old.mu.Lock()
	meta := old.meta
	old.mu.Unlock()
	h = &handedSession{Node: uint64(old.id), SID: old.sid, User: old.user, Info: old.connInfo(), Meta: meta,
		tokens: []string{old.resume, old.alias}, hs: hs}
	rooms := old.roomList()
	for _, r := range rooms {
		h.Rooms = append(h.Rooms, r.name)
		s.handOff(old, r, meta)
	}
	// Free the NodeId; the hub session stays until cleanup (handingState).
	s.mu.Lock()
	if s.nodes[old.id] == old {
		delete(s.nodes, old.id)
	}
	s.mu.Unlock()
	// back: the session came back here since (handed away and resumed
	// here again, same session id), whose entries this process refreshes
	// again under the same keys: a late release must not stop that.
	back := func() bool {
		n := s.node(old.id)
		return n != nil && n != old && n.sid == old.sid
	}
	return h, func() {
		defer func() {
			s.removeSession(old)
			hook("session_removed") // the session may come back here from now on
			if back() {
				old.mu.Lock()
				old.dirGone = true
				old.mu.Unlock()
			} else {
				s.cluster.dirRelease(old) // the claimer rewrites it (and again on opPresent)
			}
			s.mu.Lock()
			delete(s.cluster.handing, hs)
			s.mu.Unlock()
		}()
		for _, r := range rooms {
			if p := s.cfg.Presence; p != nil && !back() {
				// Released, not removed: the claimer's rewrite replaces
				// the entry under the same session id, so its slot and
				// NodeId stay held throughout.
				ctx, cancel := s.cluster.opCtx()
				if err := releasePresence(ctx, p, r.channel, old.sid, old.user); err != nil {
					s.log.Warn("relay presence release failed", "channel", r.channel, "error", err)
				}
				cancel()
			}
			if r.bus != nil {
				s.cluster.release(r.bus)
			}
		}
	}, nil
}

// handOff turns old's membership of r into a remote member's (handed),
// without news; handOver's cleanup does the rest.
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
	s.dropMemberLocked(r, old)
	s.mu.Unlock()
	old.rmu.Lock()
	delete(old.rooms, r.name)
	old.rmu.Unlock()
}

// abandonSession is abandon for the whole session: its NodeId directory
// entry, which the issuer released rather than removed (handOver), goes
// too.
func (cl *cluster) abandonSession(h *handedSession) {
	cl.abandon(h)
	if p := cl.s.cfg.Presence; p != nil {
		ctx, cancel := cl.opCtx()
		defer cancel()
		if err := p.RemovePresence(ctx, nodeChannel(wire.NodeID(h.Node)), h.SID, h.User); err != nil {
			cl.s.log.Warn("relay node directory remove failed", "node_id", h.Node, "error", err)
		}
	}
}

// abandon ends a handed-over session no process took in h.Rooms: every
// process's members of those rooms see it leave, and its hub presence
// there goes.
func (cl *cluster) abandon(h *handedSession) {
	s := cl.s
	s.log.Info("relay session handed over between processes was not taken: it leaves", "node_id", h.Node)
	rm := remoteMember{node: wire.NodeID(h.Node), sid: h.SID, user: h.User, transport: transportNative, meta: h.Meta}
	for _, name := range h.Rooms {
		cl.dropRemote(name, rm)
		topic := ChannelPrefix + name
		if p := s.cfg.Presence; p != nil {
			ctx, cancel := cl.opCtx()
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

// abandonOwn is abandon for a session whose answer may have reached the
// claimer: in each room of h, and in its NodeId directory, only an entry
// still this process's is removed (conditionally), and only the rooms
// where one was see the session leave; the claimer's entries stay.
func (cl *cluster) abandonOwn(h *handedSession) {
	s := cl.s
	p := s.cfg.Presence
	if p == nil {
		cl.abandon(h)
		return
	}
	s.log.Info("relay session handed over between processes may not have been taken: its entries here go", "node_id", h.Node)
	rm := remoteMember{node: wire.NodeID(h.Node), sid: h.SID, user: h.User, transport: transportNative, meta: h.Meta}
	for _, name := range h.Rooms {
		topic := ChannelPrefix + name
		if !cl.removeOwn(topic, h.SID) {
			continue
		}
		cl.dropRemote(name, rm)
		ctx, cancel := cl.opCtx()
		_ = p.PublishLeave(ctx, topic, &hub.ClientInfo{ClientID: h.SID, UserID: h.User, ConnInfo: h.Info})
		cancel()
		cl.enqueueWait(topic, busMemberFrame(busLeave, transportNative, cl.origin,
			&busMember{Node: h.Node, SID: h.SID, User: h.User, Meta: h.Meta}))
	}
	cl.removeOwn(nodeChannel(wire.NodeID(h.Node)), h.SID)
}

// removeOwn removes session sid's entry in channel when it is this
// process's (its Process is this one), only while it is the entry read
// when the engine can (as removeStale), and reports whether it did; a
// failure is logged and reported as not removed.
func (cl *cluster) removeOwn(channel, sid string) bool {
	ctx, cancel := cl.opCtx()
	defer cancel()
	pres, err := cl.lister.Presence(ctx, channel)
	if err != nil {
		cl.s.log.Warn("relay presence read failed", "channel", channel, "error", err)
		return false
	}
	info := pres[sid]
	var e presenceEntry
	if info == nil || json.Unmarshal(info.ChanInfo, &e) != nil || e.Process != cl.origin {
		return false
	}
	p := cl.s.cfg.Presence
	if r, ok := p.(presenceConditionalRemover); ok {
		removed, err := r.RemovePresenceIf(ctx, channel, info)
		if !errors.Is(err, hub.ErrNotAvailable) {
			if err != nil {
				cl.s.log.Warn("relay presence remove failed", "channel", channel, "error", err)
			}
			return removed && err == nil
		}
	}
	if err := p.RemovePresence(ctx, channel, sid, info.UserID); err != nil {
		cl.s.log.Warn("relay presence remove failed", "channel", channel, "error", err)
		return false
	}
	return true
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
func (br *busRoom) forgetSilently(sid string, now time.Time) bool {
	br.news.Lock()
	defer br.news.Unlock()
	br.mu.Lock()
	defer br.mu.Unlock()
	_, known := br.dropRemoteLocked(sid)
	br.gone[sid] = now // a sync whose read began before must not add it back
	br.pruneGoneLocked(now)
	return known
}

// hasOtherRemote reports whether a remote member other than session sid
// has NodeId id.
func (br *busRoom) hasOtherRemote(id wire.NodeID, sid string) bool {
	if br == nil {
		return false
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	n, _ := br.ids.Load(id)
	count, _ := n.(int)
	if m, ok := br.remote[sid]; ok && m.node == id {
		count-- // the session itself
	}
	return count > 0
}

// resumeRemote resumes on c the session of a token another process
// issued (see the top of this file); user is who c's token names.
func (cl *cluster) resumeRemote(c *conn, token, user string) ([]*room, error) {
	s := cl.s
	if s.closing.Load() {
		return nil, ErrResumeUnknown
	}
	// The token's issuer, or the process this one handed the session to
	// (the client lost the WELCOME of its resume there and came back).
	from := cl.handedTo(token)
	if from == "" {
		var ok bool
		if from, ok = tokenOrigin(token); !ok || from == cl.origin {
			return nil, ErrResumeUnknown
		}
	}
	if cl.liveness().dead(from) {
		return nil, ErrResumeUnknown // its parked sessions died with it (liveness.go)
	}
	var a *busReply
	for asks := 1; ; asks++ {
		var err error
		// Not cut short when the client's connection ends: the session is
		// better taken and parked here (under token too) than ended, so
		// that the client's retry with token resumes it.
		a, err = cl.ask(c.ctx, nil, from, &busRequest{Op: opResume, Token: token, User: user,
			Deadline: time.Now().Add(claimWait).UnixMilli()})
		if errors.Is(err, errNoAnswer) {
			return nil, ErrResumeUnknown
		}
		if err != nil {
			return nil, err
		}
		if a.Redirect == "" || a.Session != nil {
			break
		}
		if !validOrigin(a.Redirect) || asks >= maxClaimAsks || a.Redirect == cl.origin || a.Redirect == from ||
			cl.liveness().dead(a.Redirect) {
			return nil, ErrResumeUnknown
		}
		from = a.Redirect
	}
	if a.Err == refuseUser {
		return nil, ErrResumeUser
	}
	if a.Err == refuseBusy {
		return nil, errBusyResume
	}
	h := a.Session
	if a.Err != "" || h == nil {
		return nil, ErrResumeUnknown
	}
	// The client holds token until it reads the WELCOME with c.resume:
	// both resume the session here, and a claim elsewhere with token is
	// redirected here by the process just asked.
	c.alias = token
	c.id, c.sid, c.user, c.info = wire.NodeID(h.Node), h.SID, h.User, h.Info
	c.tokenAccepted.Store(h.User != "")
	c.setMemberMeta(h.Meta)
	s.mu.Lock()
	cl.arriving[h.SID] = h.Rooms // for writePresence until its rooms are joined
	recordLocked(cl.taken, h.SID, from, time.Now())
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(cl.arriving, h.SID)
		s.mu.Unlock()
	}()
	if err := s.register(c); err != nil {
		cl.abandonSession(h)
		return nil, err
	}
	if s.takeDisconnected(h.SID, from) {
		// The server API disconnected it while it moved: it ends.
		s.unregister(c)
		cl.abandonSession(h)
		return nil, ErrResumeUnknown
	}
	// The presence first: the issuer removed it, and the sooner it is
	// back the smaller the window in which a sync misses it.
	if p := s.cfg.Presence; p != nil {
		info := c.presenceInfo()
		failed := false
		for _, name := range h.Rooms {
			ctx, cancel := cl.opCtx()
			if err := s.writeMember(ctx, ChannelPrefix+name, info, c.id); err != nil {
				s.log.Warn("relay presence add failed", "channel", ChannelPrefix+name, "error", err)
				failed = true
			}
			cancel()
		}
		if failed {
			// The repair rewrites it once the rooms are joined (or
			// still arriving): writePresence.
			cl.markRepair(c)
		}
	}
	rooms := make([]*room, 0, len(h.Rooms))
	for i, name := range h.Rooms {
		r, _, err := s.joinRoom(c, name, 0, true)
		if err != nil {
			// No longer arriving first: a rewrite (writePresence) landing
			// after the leaves' or abandon's removal then removes its
			// entry again.
			s.mu.Lock()
			delete(cl.arriving, h.SID)
			s.mu.Unlock()
			for _, r := range rooms {
				c.nativeLeave(r)
			}
			rest := *h
			rest.Rooms = h.Rooms[i:]
			cl.abandon(&rest)
			cl.hook("abandoned")
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
// remote members have: each member that is a parked session of c's user
// is ended by its process (its rooms see it leave) and forgotten here at
// once; a member of a dead process (liveness.go) is dropped, its cleanup
// scheduled (dropDead); any other member makes it errNodeInRoom (or the
// engine's error). With asking (after a claim the engine added, so no
// live entry holds the NodeId), a member that refuses so is a record its
// process may have dropped (its leave not arrived yet): that process is
// asked (opHolds), and the record forgotten when it no longer holds it.
// It goes on until no remote member has the NodeId.
func (cl *cluster) freeNode(br *busRoom, c *conn, asking bool) error {
	for {
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
			return nil // none left, or gone meanwhile
		}
		if v := cl.liveness(); v.dead(rm.process) {
			if cl.dropDead(br, v) == 0 {
				return nil // released meanwhile
			}
			continue
		}
		unanswered, err := cl.endRemoteNode(br, c, rm)
		if err == errNodeInRoom && asking && rm.process != "" && !rm.handed && !unanswered {
			err = cl.dropIfAbsent(br, c, rm)
		}
		if err != nil {
			return err
		}
	}
}

// dropIfAbsent asks the process of rm, a remote member of br, whether it
// still holds rm's session there (opHolds): not, the record is stale and
// forgotten (nil); else errNodeInRoom, or errBusyResume when that process
// was too busy to tell.
func (cl *cluster) dropIfAbsent(br *busRoom, c *conn, rm remoteMember) error {
	a, err := cl.ask(c.ctx, c.gone(), rm.process, &busRequest{Op: opHolds, SID: rm.sid, Room: br.name})
	switch {
	case err == nil && a.Err == refuseBusy:
		return errBusyResume
	case err != nil || a.Err != refuseAbsent:
		return errNodeInRoom
	}
	cl.dropRemote(br.name, rm)
	return nil
}

// endRemoteNode has the process of rm, a remote member of br with c's
// NodeId, end it when it is a parked session of c's user, and forgets it
// here; otherwise errNodeInRoom (or the engine's error), with unanswered
// when rm's process was asked and did not answer (asking it again, about
// the same session, is no use then).
func (cl *cluster) endRemoteNode(br *busRoom, c *conn, rm remoteMember) (unanswered bool, err error) {
	if c.user == "" || !c.tokenAccepted.Load() || rm.user != c.user || rm.process == "" || rm.handed {
		return false, errNodeInRoom // an anonymous session is reachable only through its resume token
	}
	a, err := cl.ask(c.ctx, c.gone(), rm.process, &busRequest{Op: opEndNode, Node: uint64(c.id), SID: rm.sid, User: c.user})
	if err != nil && errors.Is(err, hub.ErrRetryLater) {
		return false, err
	}
	if err != nil {
		return true, errNodeInRoom // its process is gone or too slow
	}
	if a.Err == refuseBusy {
		return false, errBusyResume
	}
	if a.Err != "" {
		return false, errNodeInRoom // live or another user's
	}
	cl.dropRemote(br.name, rm)
	return false, nil
}

// endParkedNode ends the parked session of NodeId id when it is user's,
// a user named by a token (and has session id sid, unless sid is empty):
// its rooms see it leave before this returns. It reports whether it ended
// one. An anonymous session (user "") is never ended this way: only its
// resume token reaches it.
func (s *Server) endParkedNode(id wire.NodeID, sid, user string) bool {
	if user == "" {
		return false
	}
	s.mu.Lock()
	c := s.nodes[id]
	if c == nil || s.closing.Load() || c.user != user || !c.tokenAccepted.Load() || (sid != "" && c.sid != sid) {
		s.mu.Unlock()
		return false
	}
	p := s.parked[c.resume]
	if p == nil || p.c != c {
		s.mu.Unlock()
		return false
	}
	p.timer.Stop()
	s.unparkLocked(p)
	s.expiring.Add(1) // awaited by Shutdown (stopParked)
	s.mu.Unlock()
	defer s.expiring.Done()
	s.endParked(c)
	return true
}
