package relay

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Resuming native sessions. A native connection that ends without the
// server closing it (lost, idle, three heartbeats unanswered, or closed
// by the client with a non-zero QUIC error code; code 0 means leaving) and
// is in rooms is parked for ResumeGrace: it keeps its NodeId, its rooms and its
// hub presence, and the other members see nothing. A HELLO with its resume
// token within the window takes the session over (same NodeId, session
// id, rooms; WELCOME says Resumed, a JOINED per room follows). Events sent
// to the room meanwhile are not kept for it. When the window passes, the
// session leaves its rooms as a closed one does.
//
// With a cluster (the Redis engine) a token names the process that
// issued it, and a HELLO whose token is not parked here claims the
// session from that process (resume_cluster.go). A fresh HELLO (no token)
// with the NodeId of a parked session of the same user (non-empty, named
// by an accepted token) ends that session first (registerNative); a JOIN
// on another process does the same there (cluster.freeNode). An anonymous
// session is reachable only through its resume token.

// Resume errors.
var (
	ErrResumeUnknown = errs.Sentinel(errs.NotFound, "unknown or expired resume token")
	ErrResumeUser    = errs.Sentinel(errs.PermissionDenied, "resume token of another user")
)

// parkedSession is a native session waiting to be resumed.
type parkedSession struct {
	c     *conn
	timer clock.Timer
}

// newResumeToken returns a fresh resume token: 16 random bytes in hex
// on one process; with a cluster, followed by tokenSep and the process's
// origin, so another process knows whom to ask (resume_cluster.go).
// Clients treat it as opaque. Earlier versions issued 64 hex digits, the
// origin (a UUID's 16 bytes) first: tokenOrigin still reads those, and
// the separator keeps the two forms apart.
func (s *Server) newResumeToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	if s.cluster != nil {
		return hex.EncodeToString(b[:]) + tokenSep + s.cluster.origin
	}
	return hex.EncodeToString(b[:])
}

// tokenSep separates a cluster resume token's random part from the
// issuing process's origin; it is in no hex token.
const tokenSep = "."

// tokenOrigin returns the origin of the process that issued a cluster
// resume token: 32 hex digits, tokenSep, the origin; or, from an earlier
// version, 64 hex digits whose first 16 bytes are the origin's UUID.
// False for anything else.
func tokenOrigin(token string) (string, bool) {
	const random = 32 // hex digits
	if len(token) > random && strings.HasPrefix(token[random:], tokenSep) {
		if _, err := hex.DecodeString(token[:random]); err != nil {
			return "", false
		}
		origin := token[random+len(tokenSep):]
		return origin, validOrigin(origin)
	}
	if len(token) != 2*random {
		return "", false
	}
	b, err := hex.DecodeString(token)
	if err != nil {
		return "", false
	}
	u, err := uuid.FromBytes(b[:16])
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// validOrigin reports whether o can be a process's origin: 1 to
// maxOrigin bytes (what a bus message carries) of lowercase hex digits
// and '-', the characters of hub node ids and UUIDs, so that a crafted
// resume token or redirect cannot name any other topic.
func validOrigin(o string) bool {
	if o == "" || len(o) > maxOrigin {
		return false
	}
	for i := 0; i < len(o); i++ {
		if c := o[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}

// park keeps c's session for ResumeGrace when it may be resumed; it
// reports whether it did (the caller then skips leaving the rooms).
func (s *Server) park(c *conn) bool {
	d, byServer := c.reason()
	if byServer && d == closeWriteError {
		// A write that failed because the connection was already gone
		// (its client lost, e.g. right after a resume) is a loss too.
		select {
		case <-c.native.tr.done():
			byServer = false
		default:
		}
	}
	if byServer && d != closeNoPong {
		return false
	}
	if c.native.tr.peerLeft() {
		return false // the client closed normally: it leaves
	}
	if s.cfg.ResumeGrace <= 0 || len(c.roomList()) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() || s.nodes[c.id] != c || c.final {
		return false
	}
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.metrics.connections.WithLabelValues(c.label).Dec()
	}
	p := &parkedSession{c: c}
	s.parked[c.resume] = p
	if c.alias != "" {
		s.parked[c.alias] = p
	}
	s.metrics.parked.Inc()
	p.timer = s.cfg.Clock.AfterFunc(s.cfg.ResumeGrace, func() { s.expire(c.resume, p) })
	return true
}

// expire ends a parked session whose window passed.
func (s *Server) expire(token string, p *parkedSession) {
	s.mu.Lock()
	if s.parked[token] != p || s.closing.Load() {
		s.mu.Unlock()
		return
	}
	s.unparkLocked(p)
	s.expiring.Add(1)
	s.mu.Unlock()
	defer s.expiring.Done()
	s.endParked(p.c)
}

// unparkLocked takes p out of the parked sessions, under each of its
// tokens (s.mu held).
func (s *Server) unparkLocked(p *parkedSession) {
	for _, t := range []string{p.c.resume, p.c.alias} {
		if t != "" && s.parked[t] == p {
			delete(s.parked, t)
		}
	}
	s.metrics.parked.Dec()
}

// parkedConn reports whether c is parked (s.mu held).
func (s *Server) parkedConn(c *conn) (*parkedSession, bool) {
	p := s.parked[c.resume]
	return p, p != nil && p.c == c
}

// endParked leaves a parked session's rooms and frees its NodeId.
func (s *Server) endParked(c *conn) {
	for _, r := range c.roomList() {
		c.nativeLeave(r)
	}
	s.unregister(c)
}

// resume moves the parked session of token onto c (a fresh connection
// whose HELLO carried the token): c takes its NodeId, session id, rooms
// and presence. user is who c's token names ("" for none).
func (s *Server) resume(c *conn, token, user string) ([]*room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parked[token]
	if p == nil || s.closing.Load() {
		return nil, ErrResumeUnknown
	}
	old := p.c
	if old.user != "" && old.user != user {
		return nil, ErrResumeUser
	}
	p.timer.Stop()
	s.unparkLocked(p)
	c.id, c.sid, c.user, c.info, c.resume, c.alias, c.hs = old.id, old.sid, old.user, old.connInfo(), old.resume, old.alias, old.hs
	c.tokenAccepted.Store(old.user != "")
	c.meta = old.meta
	old.mu.Lock()
	c.dirUser = old.dirUser // the same directory entry (directory.go)
	old.mu.Unlock()
	rooms := old.roomList()
	c.rmu.Lock()
	for _, r := range rooms {
		c.rooms[r.name] = r
		delete(r.members, old)
		r.members[c] = struct{}{}
		r.snapshotLocked()
	}
	c.rmu.Unlock()
	s.nodes[c.id] = c
	s.conns[c] = struct{}{}
	if s.cluster != nil {
		s.cluster.moveRepairLocked(old, c) // old's rewrite pending is now c's
	}
	s.metrics.connections.WithLabelValues(c.label).Inc()
	return rooms, nil
}

// stopParked ends every parked session (Shutdown) and waits for expiries
// in progress.
func (s *Server) stopParked() {
	s.mu.Lock()
	list := make([]*parkedSession, 0, len(s.parked))
	for t, p := range s.parked {
		if t != p.c.resume {
			continue // an alias: the session is listed under its token
		}
		p.timer.Stop()
		list = append(list, p)
	}
	for _, p := range list {
		s.unparkLocked(p)
	}
	s.mu.Unlock()
	for _, p := range list {
		s.endParked(p.c)
	}
	s.expiring.Wait()
}

// Welcome for a resumed session, then a JOINED per room.
func (c *conn) welcomeResumed(rooms []*room) {
	c.ctlSend(&wire.Welcome{NodeID: c.id, SessionID: c.sid, ResumeToken: c.resume, Resumed: true, Limits: c.srv.limits})
	for _, r := range rooms {
		r.notifying(func() { c.ctlSend(&wire.Joined{Room: r.name, Handle: r.id, Members: c.srv.members(r)}) })
	}
}
