package relay

import (
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Sessions is the hub's index of connections by user and id (*hub.Hub).
// Every relay session is registered there under its session id (the hub
// presence client id) and its token's user, so that the server API's
// disconnect and refresh of that user reach it on whichever node it is
// connected.
type Sessions interface {
	AddSession(s hub.Session) error
	RemoveSession(s hub.Session)
}

// hubSession is a relay session as the hub sees it. It names the session
// (NodeId and session id), not a connection: a resumed session keeps it,
// and it finds the session's current connection, live or parked. A
// connection's user changes once at most (ISSUN SwitchboardAuth), which
// registers a new hubSession.
type hubSession struct {
	srv  *Server
	node wire.NodeID
	id   string
	user string
}

var _ hub.Session = (*hubSession)(nil)

// ID implements hub.Session: the session id.
func (h *hubSession) ID() string { return h.id }

// UserID implements hub.Session.
func (h *hubSession) UserID() string { return h.user }

// Disconnect implements hub.Session: a live connection closes with d
// (native clients get GOAWAY with d first; ISSUN ones the QUIC error code
// d.Code and reason d.Reason); a parked session ends at once. Either way
// the session cannot be resumed.
func (h *hubSession) Disconnect(d hub.Disconnect) { h.srv.disconnectSession(h, d) }

// Refresh implements hub.Session: expired closes the connection as a
// token expiry does (3005); otherwise the connection expires at expireAt
// (0: never) and info, when set, is its connection info from now on (the
// presence of rooms it joins later). A parked session is only ended by
// expired: its resuming HELLO carries a token of its own.
func (h *hubSession) Refresh(expireAt int64, expired bool, info []byte) {
	if expired {
		h.srv.disconnectSession(h, closeExpired)
		return
	}
	c, parked := h.srv.sessionConn(h)
	if c == nil || parked {
		return
	}
	if expireAt > 0 {
		c.expireAt(expireAt)
	} else {
		c.clearExpiry()
	}
	if info != nil {
		c.setInfo(info)
	}
}

// addSession registers c's session in the hub under user; it replaces
// the registration c had (an ISSUN connection's anonymous one). The error
// is the hub's (ErrNotAvailable while it shuts down).
func (s *Server) addSession(c *conn, user string) error {
	hs := &hubSession{srv: s, node: c.id, id: c.sid, user: user}
	s.mu.Lock()
	old := c.hs
	c.hs = hs
	s.mu.Unlock()
	if s.cfg.Sessions == nil {
		return nil
	}
	if old != nil {
		s.cfg.Sessions.RemoveSession(old)
	}
	return s.cfg.Sessions.AddSession(hs)
}

// removeSession forgets c's session in the hub: when it ends for good,
// not when it is parked.
func (s *Server) removeSession(c *conn) {
	s.mu.Lock()
	hs := c.hs
	c.hs = nil
	s.mu.Unlock()
	if hs != nil && s.cfg.Sessions != nil {
		s.cfg.Sessions.RemoveSession(hs)
	}
}

// sessionConn returns the connection of hs (nil when the session is
// gone) and whether it is parked.
func (s *Server) sessionConn(hs *hubSession) (*conn, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.nodes[hs.node]
	if c == nil || c.hs != hs {
		return nil, false
	}
	_, parked := s.parkedConn(c)
	return c, parked
}

// disconnectSession closes the connection of hs with d and makes its
// session final: a parked one ends now (its rooms are left as when its
// window passes), a live one is never parked. It does not block.
func (s *Server) disconnectSession(hs *hubSession, d hub.Disconnect) {
	s.mu.Lock()
	if s.handingDisconnectLocked(hs, d) {
		return // being handed over to another process (resume_cluster.go)
	}
	c := s.nodes[hs.node]
	if c == nil || c.hs != hs {
		s.mu.Unlock()
		return
	}
	c.final = true
	if p, parked := s.parkedConn(c); parked {
		if s.closing.Load() {
			s.mu.Unlock()
			return // Shutdown ends the parked sessions
		}
		p.timer.Stop()
		s.unparkLocked(p)
		s.metrics.disconnects.WithLabelValues(disconnectReason(d)).Inc()
		s.expiring.Add(1) // awaited by Shutdown (stopParked)
		s.mu.Unlock()
		go func() {
			defer s.expiring.Done()
			s.endParked(c)
		}()
		return
	}
	s.mu.Unlock()
	c.close(d)
}
