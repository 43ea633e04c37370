package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// conn is one relay connection of either profile. Its read goroutine owns
// the fields marked so; the others are safe for concurrent use.
type conn struct {
	srv       *Server
	qc        *quic.Conn
	transport string
	label     string // transport in metrics and presence (a native session's may be webtransport)
	id        wire.NodeID
	sid       string // session id: the hub presence client id
	q         *delivery.Queue

	// ctx ends when the connection is to close; close records why.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	why    hub.Disconnect
	closed bool
	expiry clock.Timer // closes the connection when its token expires
	// expiryOff: the connection ended; expireAt (a refresh) arms nothing.
	expiryOff bool

	// receiving: the handshake is done and events may be queued to it.
	receiving atomic.Bool
	// tokenAccepted: a valid token named the user.
	tokenAccepted atomic.Bool

	// hs is the session's registration in the hub (sessions.go); final:
	// the server API disconnected it, so it is never parked. Both are
	// guarded by Server.mu.
	hs    *hubSession
	final bool

	// Owned by the read goroutine; info is guarded by mu (the server API
	// refreshes it); user is written under mu once the connection may
	// have a lobby step (read by it under mu).
	user   string
	info   []byte
	authed bool
	// dirUser is the user of c's NodeId directory entry as written
	// (directory.go), guarded by mu.
	dirUser string
	// dirGone: the directory entry was removed for good; dirParked: it
	// says the session is parked (directory.go).
	dirGone, dirParked bool
	// dirDirty: the entry's state changed since the last write began;
	// dirWriting: a write is in flight, and its writer writes again while
	// dirDirty (dirAdd). Guarded by mu.
	dirDirty, dirWriting bool

	bucket bucket
	// rooms are the rooms joined, guarded by rmu (written by the goroutine
	// handling joins, read by the event readers).
	rmu   sync.RWMutex
	rooms map[string]*room

	// prefix is the ISSUN type-name prefix answers use; guarded by Server.mu.
	prefix string
	// lobby is the connection's part in the lobby across processes
	// (rooms.go, lobbyBus).
	lobby lobbyBus
	// resume is the native session's resume token; alias, when set, is
	// the token whose HELLO took the session over from another process
	// (resume_cluster.go): it resumes the session too, for a client that
	// lost the WELCOME carrying resume.
	resume, alias string
	// meta is the native member metadata (JOIN), guarded by mu.
	meta []byte
	// native is set for native connections.
	native *nativeState
}

func (s *Server) newConn(qc *quic.Conn, transport string, id wire.NodeID) *conn {
	c := &conn{srv: s, qc: qc, transport: transport, label: transport, id: id, sid: newSessionID(),
		bucket: newBucket(s.cfg.EventRate, s.cfg.EventBurst, s.cfg.Clock.Now()), rooms: map[string]*room{}}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	return c
}

// close asks the connection to close with d (the first reason wins). It
// never blocks: the read goroutine closes the QUIC connection.
func (c *conn) close(d hub.Disconnect) {
	c.mu.Lock()
	if !c.closed {
		c.closed, c.why = true, d
	}
	c.mu.Unlock()
	c.cancel()
}

// expireAt closes the connection (3005, connection expired) when its
// token expires: at unix second exp (0: never).
func (c *conn) expireAt(exp int64) {
	if exp <= 0 {
		return
	}
	d := time.Unix(exp, 0).Sub(c.srv.cfg.Clock.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	if c.expiryOff {
		return
	}
	c.expiry = c.srv.cfg.Clock.AfterFunc(max(d, 0), func() { c.close(closeExpired) })
}

// clearExpiry stops the expiry timer: the connection never expires (a
// refresh with expire_at 0).
func (c *conn) clearExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// setInfo sets the connection info that presence shows.
func (c *conn) setInfo(info []byte) {
	c.mu.Lock()
	c.info = info
	c.mu.Unlock()
}

// userName is the connection's user, for goroutines other than its read
// goroutine (the lobby step): an ISSUN SwitchboardAuth sets it under mu.
func (c *conn) userName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

func (c *conn) connInfo() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// stopExpiry stops the expiry timer for good: the connection ends.
func (c *conn) stopExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expiryOff = true
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// reason returns why the connection closes (closeNormal when the peer
// went away).
func (c *conn) reason() (hub.Disconnect, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		return closeNormal, false
	}
	return c.why, true
}

// send queues frame (shared, never modified) to the connection.
func (c *conn) send(frame []byte) bool {
	if err := c.q.Enqueue(frame); err != nil {
		if !errors.Is(err, delivery.ErrOverflow) {
			c.srv.metrics.dropQueueClosed.Inc()
		}
		return false
	}
	c.srv.metrics.deliveries.Inc()
	return true
}

// Overflow implements delivery.Sink: a slow consumer is disconnected.
func (c *conn) Overflow() { c.close(closeSlow) }

// WriteFailed implements delivery.Sink.
func (c *conn) WriteFailed(err error) {
	if errors.Is(err, errSlowPeer) {
		c.close(closeSlow)
		return
	}
	c.close(closeWriteError)
}

// errSlowPeer: the peer did not take a write within WriteTimeout.
var errSlowPeer = errors.New("relay: peer too slow")

// finish ends a registered connection: leaves its rooms, unregisters it,
// drops its queue and closes the QUIC connection with the reason.
func (c *conn) finish() {
	c.receiving.Store(false)
	c.stopExpiry()
	for _, r := range c.roomList() {
		c.srv.leave(c, r)
	}
	c.srv.leaveLobby(c)
	c.srv.unregister(c)
	if c.q != nil {
		c.q.Close()
	}
	d, byServer := c.reason()
	if byServer {
		c.srv.metrics.disconnects.WithLabelValues(disconnectReason(d)).Inc()
		c.srv.log.Debug("relay connection closed", "node_id", uint64(c.id), "code", d.Code, "reason", d.Reason)
	}
	if c.native != nil {
		c.native.tr.close(d)
	} else {
		closeQUIC(c.qc, d)
	}
	c.cancel()
}

// readFrame reads one frame of version want into a fresh buffer holding
// header and body, so the frame can be rewritten and shared as is.
func readFrame(r io.Reader, want uint8, maxBody int) (wire.Header, []byte, error) {
	var hb [wire.HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.EOF {
			return wire.Header{}, nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return wire.Header{}, nil, fmt.Errorf("%w: header ended after %d bytes", wire.ErrTruncated, n)
		}
		return wire.Header{}, nil, err
	}
	h, err := wire.ParseHeader(hb[:], want, maxBody)
	if err != nil {
		return wire.Header{}, nil, err
	}
	frame := make([]byte, wire.HeaderSize+int(h.Length))
	copy(frame, hb[:])
	if n, err := io.ReadFull(r, frame[wire.HeaderSize:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return wire.Header{}, nil, fmt.Errorf("%w: body of %d bytes ended after %d", wire.ErrTruncated, h.Length, n)
		}
		return wire.Header{}, nil, err
	}
	return h, frame, nil
}

// isProtocolError tells decoding errors (the peer's fault) from I/O ones.
func isProtocolError(err error) bool {
	for _, e := range []error{wire.ErrBadMagic, wire.ErrVersion, wire.ErrFrameType, wire.ErrTooLarge, wire.ErrTruncated, wire.ErrMalformed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// protocolClose is the disconnect for a protocol violation, naming it.
func protocolClose(err error) hub.Disconnect {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return hub.Disconnect{Code: closeBadRequest.Code, Reason: "bad request: " + msg}
}

// roomList returns the rooms joined.
func (c *conn) roomList() []*room {
	c.rmu.RLock()
	defer c.rmu.RUnlock()
	out := make([]*room, 0, len(c.rooms))
	for _, r := range c.rooms {
		out = append(out, r)
	}
	return out
}

// roomNamed returns the joined room called name (nil when not joined).
func (c *conn) roomNamed(name string) *room {
	c.rmu.RLock()
	defer c.rmu.RUnlock()
	return c.rooms[name]
}

// roomByHandle returns the joined room of a native handle.
func (c *conn) roomByHandle(h uint32) *room {
	c.rmu.RLock()
	defer c.rmu.RUnlock()
	for _, r := range c.rooms {
		if r.id == h {
			return r
		}
	}
	return nil
}
