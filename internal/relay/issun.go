package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// The ISSUN profile (no ALPN): byte-compatible with ISSUN 0.10 clients.
//
//   - Handshake: the client's first uni stream carries its 8-byte LE
//     NodeId and ends; the server echoes the 8 bytes on its first uni
//     stream. NodeId 0 is the relay's own (answers' sender) and refused,
//     as is a NodeId already connected.
//   - Client → server: event frames (version 1) on uni streams, read in
//     stream order, each to its FIN.
//   - Server → client: one frame per new uni stream (the client reads one
//     frame per stream), only event frames.

var errBadHandshake = errors.New("relay: bad handshake")

// handshakeISSUN runs the ISSUN handshake and returns the connection's
// session, its read loop (nil when refused); see Server.handshake.
func (s *Server) handshakeISSUN(qc *quic.Conn) (session func()) {
	hctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout) // the NodeId exchange and directory read
	defer cancel()
	id, err := readNodeID(hctx, qc, time.Now().Add(s.cfg.HandshakeTimeout))
	if err != nil {
		result := handshakeBad
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			result = handshakeTimeout
		}
		if s.ctx.Err() != nil {
			result = handshakeShutdown
		}
		s.metrics.handshakes.WithLabelValues(result).Inc()
		closeQUIC(qc, protocolClose(err))
		return nil
	}
	c := s.newConn(qc, transportISSUN, id)
	c.q = s.cfg.Pool.NewQueue(issunSink{c}, s.cfg.QueueLimit)
	// Connected on another process: refused too (directory.go, claims.go).
	if err = s.registerChosen(hctx, c, ""); err != nil {
		if errors.Is(err, ErrNodeInUse) {
			s.metrics.handshakes.WithLabelValues(handshakeDuplicate).Inc()
			closeQUIC(qc, closeNodeInUse)
		} else {
			s.metrics.handshakes.WithLabelValues(handshakeShutdown).Inc()
			closeQUIC(qc, closeShutdown)
		}
		c.cancel()
		return nil
	}
	var echo [8]byte
	binary.LittleEndian.PutUint64(echo[:], uint64(id))
	if err := c.writeStream(echo[:]); err != nil {
		s.metrics.handshakes.WithLabelValues(handshakeBad).Inc()
		c.close(closeWriteError)
		c.finish()
		return nil
	}
	s.metrics.handshakes.WithLabelValues(handshakeOK).Inc()
	c.receiving.Store(true)
	if s.cfg.Auth == AuthNone {
		c.authed = true
		s.enterLobby(c) // no engine call: its cluster side follows (lobbyChanged)
	}
	return func() {
		defer c.finish()
		c.readISSUN()
	}
}

// readNodeID reads the client's first uni stream: exactly 8 bytes.
func readNodeID(ctx context.Context, qc *quic.Conn, deadline time.Time) (wire.NodeID, error) {
	rs, err := qc.AcceptUniStream(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: no handshake stream: %w", errBadHandshake, err)
	}
	_ = rs.SetReadDeadline(deadline)
	var b [9]byte
	n, err := io.ReadFull(rs, b[:])
	switch {
	case err == nil:
		rs.CancelRead(0)
		return 0, fmt.Errorf("%w: handshake stream longer than 8 bytes", errBadHandshake)
	case errors.Is(err, io.ErrUnexpectedEOF) && n == 8:
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return 0, fmt.Errorf("%w: handshake stream of %d bytes, want 8", errBadHandshake, n)
	default:
		return 0, fmt.Errorf("%w: %w", errBadHandshake, err)
	}
	id := wire.NodeID(binary.LittleEndian.Uint64(b[:8]))
	if id == 0 {
		return 0, fmt.Errorf("%w: node id 0 is reserved for the relay", errBadHandshake)
	}
	return id, nil
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// writeStream writes b on a new uni stream and ends it, waiting at most
// WriteTimeout for the peer to allow the stream.
func (c *conn) writeStream(b []byte) error {
	st, err := c.openStream()
	if err != nil {
		return err
	}
	_ = st.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if _, err := st.Write(b); err != nil {
		// The peer may stop reading a stream (STOP_SENDING) once it has the
		// frame, as ISSUN clients do: that stream is done, not the connection.
		var se *quic.StreamError
		if errors.As(err, &se) && se.Remote {
			return nil
		}
		st.CancelWrite(0)
		return err
	}
	// Close fails only for a stream the peer already stopped: same case.
	_ = st.Close()
	return nil
}

// openStream opens a uni stream: at once while the peer's stream credit
// lasts (no context or timer per event), else waiting up to WriteTimeout
// for more credit. It runs in a delivery writer, never under a room lock.
func (c *conn) openStream() (*quic.SendStream, error) {
	st, err := c.qc.OpenUniStream()
	var limit *quic.StreamLimitReachedError
	if err == nil || !errors.As(err, &limit) {
		return st, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.cfg.WriteTimeout)
	defer cancel()
	return c.qc.OpenUniStreamSync(ctx)
}

// issunSink writes each frame on a stream of its own.
type issunSink struct{ *conn }

// WriteBatch implements delivery.Sink. A peer that grants no stream
// within WriteTimeout is a slow consumer.
func (k issunSink) WriteBatch(frames [][]byte) error {
	for _, f := range frames {
		if err := k.writeStream(f); err != nil {
			if errors.Is(err, context.DeadlineExceeded) && k.ctx.Err() == nil {
				return fmt.Errorf("%w: %w", errSlowPeer, err)
			}
			return err
		}
	}
	return nil
}

// readISSUN reads the client's streams in order until the connection ends.
func (c *conn) readISSUN() {
	for {
		rs, err := c.qc.AcceptUniStream(c.ctx)
		if err != nil {
			return
		}
		if !c.readStream(rs) {
			return
		}
	}
}

// readStream handles the frames of one client stream; false ends the
// connection. A stream that stalls past HandshakeTimeout is dropped.
func (c *conn) readStream(rs *quic.ReceiveStream) bool {
	stop := context.AfterFunc(c.ctx, func() { rs.CancelRead(0) })
	defer stop()
	_ = rs.SetReadDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	for {
		h, frame, err := readFrame(rs, wire.VersionISSUN, c.srv.cfg.MaxFrame)
		if err == io.EOF {
			return true
		}
		if err != nil {
			if isProtocolError(err) {
				c.close(protocolClose(err))
				return false
			}
			rs.CancelRead(0)
			return c.ctx.Err() == nil // a reset or stalled stream is dropped
		}
		if h.Type != wire.FrameEvent {
			continue // heartbeats and acks of the ISSUN profile carry nothing
		}
		if !c.handleISSUNEvent(frame) {
			return false
		}
	}
}

// handleISSUNEvent routes one event frame; false ends the connection.
func (c *conn) handleISSUNEvent(frame []byte) bool {
	s := c.srv
	start := s.cfg.Clock.Now()
	if ok, abuse := c.bucket.take(start); !ok {
		s.metrics.dropRateLimited.Inc()
		if abuse {
			c.close(closeRateLimited)
			return false
		}
		return true
	}
	body := frame[wire.HeaderSize:]
	v, err := wire.ParseEvent(body, s.cfg.MaxTypeName)
	if err != nil {
		c.close(protocolClose(err))
		return false
	}
	s.metrics.inReliable.Inc()
	if v.Scope.Kind == wire.ScopeToServer {
		s.metrics.controlEvents.Inc()
		c.control(string(v.TypeName), v.Payload)
		return true
	}
	if !c.authed {
		s.metrics.drops.WithLabelValues(dropUnauthenticated).Inc()
		return true
	}
	wire.SetSender(body, c.id)
	switch v.Scope.Kind {
	case wire.ScopeBroadcast:
		r := s.lobby
		for _, rr := range c.roomList() {
			r = rr
		}
		for _, m := range *r.snap.Load() {
			if m != c {
				m.send(frame)
			}
		}
		r.extend(frame, false, nil) // other processes, spectators (mirror.go)
	case wire.ScopeTargeted:
		t := s.node(v.Scope.Target)
		if t == nil && c.forwardTargeted(v.Scope.Target, frame) {
			break
		}
		if t == nil || !t.issunReceiver() {
			s.metrics.drops.WithLabelValues(dropUnknownTarget).Inc()
			return true
		}
		t.send(frame)
	}
	s.metrics.fanout.Observe(time.Since(start).Seconds())
	return true
}

// issunReceiver reports whether the connection may receive an ISSUN
// targeted event.
func (c *conn) issunReceiver() bool {
	return c.receiving.Load() && c.transport == transportISSUN && c.authedForDelivery()
}

// authedForDelivery reports whether the connection may receive events:
// with AuthToken, only after its token was accepted.
func (c *conn) authedForDelivery() bool {
	return c.srv.cfg.Auth == AuthNone || c.tokenAccepted.Load()
}

// control handles a ToServer event: SwitchboardAuth, Join and Leave.
func (c *conn) control(typeName string, payload []byte) {
	kind, prefix := wire.ParseControl(typeName)
	var err error
	switch kind {
	case wire.ControlAuth:
		err = c.issunAuth(prefix, payload)
	case wire.ControlJoin:
		err = c.issunJoin(prefix, payload)
	case wire.ControlLeave:
		err = c.issunLeave(prefix, payload)
	default:
		c.srv.metrics.drops.WithLabelValues(dropUnknownControl).Inc()
		return
	}
	if err != nil {
		code, msg := wireError(err)
		if code == wire.ErrCodeInternal {
			c.srv.log.Error("relay control request failed", "node_id", uint64(c.id), "error", err)
		}
		c.answer(prefix, wire.SuffixError, wire.ErrorAnswer{Code: code, Message: msg}.Append(nil))
	}
}

// answer queues an event from the relay (sender 0) to the client.
func (c *conn) answer(prefix, suffix string, payload []byte) {
	c.send(c.srv.controlFrame(c.id, prefix, suffix, payload))
}

// controlFrame encodes an event of the relay to one client; sequences
// count the relay's events.
func (s *Server) controlFrame(to wire.NodeID, prefix, suffix string, payload []byte) []byte {
	name := prefix + suffix
	if prefix == "" {
		name = suffix[2:]
	}
	ev := wire.Event{
		Metadata: wire.Metadata{Sender: 0, Timestamp: uint64(s.cfg.Clock.Now().UnixMilli()), Sequence: s.ctrlSeq.Add(1)},
		Scope:    wire.Scope{Kind: wire.ScopeTargeted, Target: to},
		TypeName: name, Payload: payload,
	}
	return wire.AppendEventFrame(nil, &ev)
}

func (c *conn) issunAuth(prefix string, payload []byte) error {
	req, err := wire.DecodeAuthRequest(payload)
	if err != nil {
		return hub.ErrBadRequest.With("bad request: " + err.Error())
	}
	if c.tokenAccepted.Load() {
		return hub.ErrAlreadySubscribed.With("already authenticated")
	}
	if c.srv.cfg.Verifier == nil {
		return ErrNoVerifier
	}
	claims, err := c.srv.cfg.Verifier.VerifyConnect(req.Token)
	if err != nil {
		return err
	}
	if len(c.roomList()) > 0 {
		return hub.ErrAlreadySubscribed.With("authenticate before joining a room")
	}
	if err := c.srv.addSession(c, claims.User); err != nil {
		return err
	}
	oldUser := c.user
	c.mu.Lock() // the lobby step reads it (userName)
	c.user = claims.User
	c.mu.Unlock()
	c.setInfo(claims.Info)
	c.tokenAccepted.Store(true)
	c.expireAt(claims.ExpireAt)
	if !c.authed {
		c.authed = true
		c.srv.enterLobby(c)
	} else {
		c.srv.lobbyUserChanged(c, oldUser)
	}
	c.answer(prefix, wire.SuffixWelcome, wire.AuthAnswer{NodeID: c.id, User: c.user}.Append(nil))
	return nil
}

func (c *conn) issunJoin(prefix string, payload []byte) error {
	req, err := wire.DecodeRoomRequest(payload)
	if err != nil {
		return hub.ErrBadRequest.With("bad request: " + err.Error())
	}
	if !c.authed {
		return ErrNotAuthed
	}
	s := c.srv
	if r := c.roomNamed(req.Room); r != nil {
		c.answer(prefix, wire.SuffixJoined, wire.RoomAnswer{Room: r.name, Members: s.memberIDs(r)}.Append(nil))
		return nil
	}
	for _, old := range c.roomList() { // an ISSUN connection is in one room at most
		c.issunLeaveRoom(old, false) // not to the lobby between two rooms
	}
	s.mu.Lock()
	c.prefix = prefix
	s.mu.Unlock()
	r, before, err := s.joinRoomFrom(c, req.Room, 0, false, true) // out of the lobby with the join
	if err != nil {
		if len(c.roomList()) == 0 && c.receiving.Load() {
			s.enterLobby(c) // left its room for none
		}
		return err
	}
	r.notifying(func() {
		c.answer(prefix, wire.SuffixJoined, wire.RoomAnswer{Room: r.name, Members: s.memberIDs(r)}.Append(nil))
		s.tellISSUNPresence(before, r.name, []wire.NodeID{c.id}, nil)
	})
	return nil
}

func (c *conn) issunLeave(prefix string, payload []byte) error {
	req, err := wire.DecodeRoomRequest(payload)
	if err != nil {
		return hub.ErrBadRequest.With("bad request: " + err.Error())
	}
	r := c.roomNamed(req.Room)
	if r == nil {
		return ErrNotInRoom
	}
	c.issunLeaveRoom(r, true)
	c.answer(prefix, wire.SuffixLeft, wire.RoomAnswer{Room: r.name}.Append(nil))
	return nil
}

// issunLeaveRoom leaves r, tells the remaining members and, toLobby,
// puts c back in the lobby.
func (c *conn) issunLeaveRoom(r *room, toLobby bool) {
	s := c.srv
	s.leaveRoom(c, r, toLobby && c.authed && c.receiving.Load()) // in the lobby with the leave
	r.notifying(func() { s.tellISSUNPresence(*r.snap.Load(), r.name, nil, []wire.NodeID{c.id}) })
}

// tellISSUNPresence sends SwitchboardPresence to members, each with its
// own type-name prefix.
func (s *Server) tellISSUNPresence(members []*conn, room string, joined, left []wire.NodeID) {
	payload := wire.PresenceAnswer{Room: room, Joined: joined, Left: left}.Append(nil)
	for _, m := range members {
		s.mu.RLock()
		prefix := m.prefix
		s.mu.RUnlock()
		m.send(s.controlFrame(m.id, prefix, wire.SuffixPresence, payload))
	}
}
