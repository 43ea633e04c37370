package relay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// The native protocol (ALPN switchboard-relay/1, frames of version 2):
//
//   - The client opens a bidirectional control stream and sends HELLO;
//     the server answers WELCOME (or ERROR and closes). The control stream
//     then carries JOIN/JOINED, LEAVE/LEFT, PRESENCE, LIST/ROOMS, ERROR,
//     HEARTBEAT/ACK both ways and GOAWAY.
//   - Reliable events: EVENT frames on one uni stream per direction (the
//     server's writes coalesce whatever is queued).
//   - Unreliable events: DATAGRAM frames, several packed per QUIC
//     datagram; to each receiver through a ring that drops the oldest.
//   - A room's handle is the same on every connection, so an event frame
//     is encoded once for all receivers. The sender never gets its own
//     event; Targets restricts delivery to those members.

// goAwayLinger is how long a closing connection waits for the client to
// close after GOAWAY.
const goAwayLinger = 250 * time.Millisecond

// datagramRing is the number of unreliable frames waiting per receiver.
const datagramRing = 256

// missedHeartbeats closes a connection that acknowledged none of this
// many heartbeats in a row.
const missedHeartbeats = 3

// nativeState is the native part of a conn.
type nativeState struct {
	tr    nativeTransport
	ctl   controlStream
	ctlMu sync.Mutex // serialises writes on ctl
	ctlQ  *delivery.Queue
	evQ   *delivery.Queue
	evOut sendStream // opened at the first reliable event
	evMu  sync.Mutex

	bucketMu sync.Mutex

	// The datagram ring, guarded by dgMu. A writer goroutine runs only
	// while frames wait (dgWriting); dgClosed stops new ones at the end.
	dgMu      sync.Mutex
	dgRing    [][]byte // oldest first
	dgSpare   [][]byte // the last batch's slice, emptied, for the ring to reuse
	dgWriting bool
	dgClosed  bool

	// wg counts the session's goroutines besides the control reader: the
	// event stream and datagram readers and the datagram writer.
	wg sync.WaitGroup

	hbMu     sync.Mutex
	hbTimer  clock.Timer
	hbSeq    uint64
	hbMissed int
	rtt      time.Duration
}

func (s *Server) handshakeNative(qc *quic.Conn) (session func()) {
	return s.handshakeNativeOn(qc, quicTransport{qc}, transportNative)
}

// handshakeNativeOn runs the handshake of a native session on tr, carried
// by qc; label names the transport in metrics and presence. It returns
// the session (nil when refused), to be run to its end; see
// Server.handshake for why in a goroutine of its own.
func (s *Server) handshakeNativeOn(qc *quic.Conn, tr nativeTransport, label string) (session func()) {
	hctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	ctl, err := tr.acceptControl(hctx)
	if err != nil {
		s.metrics.handshakes.WithLabelValues(handshakeTimeout).Inc()
		tr.close(protocolClose(fmt.Errorf("%w: no control stream: %w", errBadHandshake, err)))
		return nil
	}
	_ = ctl.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	h, frame, err := readFrame(ctl, wire.VersionNative, s.cfg.MaxFrame)
	if err == nil && h.Type != wire.FrameHello {
		err = fmt.Errorf("%w: %s before HELLO", errBadHandshake, h.Type)
	}
	var hello *wire.Hello
	if err == nil {
		var m wire.Message
		if m, err = wire.DecodeMessage(h.Type, frame[wire.HeaderSize:]); err == nil {
			hello = m.(*wire.Hello)
		}
	}
	if err != nil {
		s.metrics.handshakes.WithLabelValues(handshakeBad).Inc()
		tr.close(protocolClose(err))
		return nil
	}
	_ = ctl.SetReadDeadline(time.Time{})
	refuse := func(result string, cause error, d hub.Disconnect) {
		s.metrics.handshakes.WithLabelValues(result).Inc()
		code, msg := wireError(cause)
		_ = ctl.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		_, _ = ctl.Write(wire.AppendMessage(nil, &wire.Error{Code: code, Message: msg}))
		tr.close(d)
	}
	claims, err := s.helloIdentity(hello)
	if err != nil {
		refuse(handshakeUnauthorize, err, closeInvalidToken)
		return nil
	}
	user, info := claims.User, claims.Info
	c := s.newConn(qc, transportNative, hello.NodeID)
	c.label = label
	c.user, c.info, c.authed = user, info, true
	c.tokenAccepted.Store(user != "")
	n := &nativeState{tr: tr, ctl: ctl}
	c.native = n
	n.ctlQ = s.cfg.Pool.NewQueue(ctlSink{c}, s.cfg.QueueLimit)
	n.evQ = s.cfg.Pool.NewQueue(eventSink{c}, s.cfg.QueueLimit)
	c.q = n.evQ
	c.resume = s.newResumeToken()
	var rooms []*room
	if hello.ResumeToken != "" {
		rooms, err = s.resume(c, hello.ResumeToken, user)
		if err == nil && s.cluster != nil {
			s.cluster.dirMarkParked(c, false) // live again here
		}
		if errors.Is(err, ErrResumeUnknown) && s.cluster != nil {
			rooms, err = s.cluster.resumeRemote(c, hello.ResumeToken, user)
		}
	} else {
		err = s.registerNative(hctx, c, hello.NodeID == 0)
	}
	if err != nil {
		n.ctlQ.Close()
		n.evQ.Close()
		c.cancel()
		if errors.Is(err, ErrNodeInUse) {
			refuse(handshakeDuplicate, err, closeNodeInUse)
		} else if errors.Is(err, ErrResumeUnknown) || errors.Is(err, ErrResumeUser) {
			refuse(handshakeResume, err, closeResume)
		} else if errors.Is(err, hub.ErrRetryLater) {
			refuse(handshakeUnavailable, err, closeShutdown)
		} else {
			refuse(handshakeShutdown, err, closeShutdown)
		}
		return nil
	}
	s.metrics.handshakes.WithLabelValues(handshakeOK).Inc()
	c.expireAt(claims.ExpireAt)
	if rooms != nil {
		c.welcomeResumed(rooms)
	} else {
		c.ctlSend(&wire.Welcome{NodeID: c.id, SessionID: c.sid, ResumeToken: c.resume, Limits: s.limits})
	}
	c.receiving.Store(true)
	c.startHeartbeats()
	return c.runNative
}

// runNative serves a native session past its handshake to its end: it
// reads the control stream and starts the event stream and datagram
// readers; the datagram writer runs only while datagrams wait
// (pushDatagram).
func (c *conn) runNative() {
	n := c.native
	n.wg.Add(2)
	go func() { defer n.wg.Done(); c.readNativeStreams() }()
	go func() { defer n.wg.Done(); c.readDatagrams() }()
	stop := context.AfterFunc(c.ctx, func() { n.ctl.cancelRead() }) // GOAWAY can still be written
	c.readControl()
	stop()
	c.cancel()
	c.stopDatagrams()
	// Close before waiting: a datagram send blocked on a full queue ends
	// with the connection.
	c.finishNative()
	n.wg.Wait()
}

// helloIdentity verifies HELLO's token: the user and connection info.
func (s *Server) helloIdentity(h *wire.Hello) (auth.ConnectClaims, error) {
	if h.Token == "" {
		if s.cfg.Auth == AuthToken {
			return auth.ConnectClaims{}, ErrNotAuthed
		}
		return auth.ConnectClaims{}, nil
	}
	if s.cfg.Verifier == nil {
		return auth.ConnectClaims{}, ErrNoVerifier
	}
	return s.cfg.Verifier.VerifyConnect(h.Token)
}

// registerNative registers c, first giving it a free random NodeId when
// assign is set; ctx bounds the handshake (its directory read).
func (s *Server) registerNative(ctx context.Context, c *conn, assign bool) error {
	if !assign {
		// A parked session of the same user (named by an accepted token)
		// with this NodeId ends: the client starts afresh rather than
		// resuming (the others see it leave). Another user's, an anonymous
		// one (reachable only through its resume token) or a live one
		// keeps the NodeId.
		same := ""
		if c.user != "" && c.tokenAccepted.Load() {
			s.endParkedNode(c.id, "", c.user)
			same = c.user
		}
		// Held on another process (directory.go, claims.go): refused,
		// unless by the same user (a parked session there ends at JOIN,
		// freeNode).
		return s.registerChosen(ctx, c, same)
	}
	for range 8 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if c.id = wire.NodeID(binary.LittleEndian.Uint64(b[:]) &^ (1 << 63)); c.id == 0 {
			continue
		}
		if err := s.register(c); !errors.Is(err, ErrNodeInUse) {
			return err
		}
	}
	return hub.ErrInternal.With("no free node id")
}

// gone is closed when c's client connection ended (nil for ISSUN).
func (c *conn) gone() <-chan struct{} {
	if c.native == nil {
		return nil
	}
	return c.native.tr.done()
}

// ctlSend queues a control message.
func (c *conn) ctlSend(m wire.Message) {
	_ = c.native.ctlQ.Enqueue(wire.AppendMessage(nil, m))
}

// ctlError answers a failed request.
func (c *conn) ctlError(reqID uint32, err error) {
	code, msg := wireError(err)
	if code == wire.ErrCodeInternal {
		c.srv.log.Error("relay request failed", "node_id", uint64(c.id), "error", err)
	}
	c.ctlSend(&wire.Error{RequestID: reqID, Code: code, Message: msg})
}

// ctlSink writes control frames, coalesced, on the control stream.
type ctlSink struct{ *conn }

// WriteBatch implements delivery.Sink.
func (k ctlSink) WriteBatch(frames [][]byte) error {
	n := k.native
	n.ctlMu.Lock()
	defer n.ctlMu.Unlock()
	_ = n.ctl.SetWriteDeadline(time.Now().Add(k.srv.cfg.WriteTimeout))
	return slowIfTimeout(k.conn, writeAll(n.ctl, frames))
}

// eventSink writes reliable event frames, coalesced, on the server's
// event stream.
type eventSink struct{ *conn }

// WriteBatch implements delivery.Sink.
func (k eventSink) WriteBatch(frames [][]byte) error {
	n := k.native
	n.evMu.Lock()
	defer n.evMu.Unlock()
	if n.evOut == nil {
		ctx, cancel := context.WithTimeout(k.ctx, k.srv.cfg.WriteTimeout)
		st, err := n.tr.openUni(ctx)
		cancel()
		if err != nil {
			return slowIfTimeout(k.conn, err)
		}
		n.evOut = st
	}
	_ = n.evOut.SetWriteDeadline(time.Now().Add(k.srv.cfg.WriteTimeout))
	return slowIfTimeout(k.conn, writeAll(n.evOut, frames))
}

// writeAll writes frames with one Write call (one stream write, so quic-go
// packs them into as few packets as fit). Several frames are joined in a
// pooled buffer: a quic-go Write returns only once it copied or sent the
// data, so the buffer is free again afterwards.
func writeAll(w io.Writer, frames [][]byte) error {
	if len(frames) == 1 {
		_, err := w.Write(frames[0])
		return err
	}
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	if size > maxPooledBatch {
		buf := make([]byte, 0, size)
		for _, f := range frames {
			buf = append(buf, f...)
		}
		_, err := w.Write(buf)
		return err
	}
	bp := batchBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, f := range frames {
		buf = append(buf, f...)
	}
	_, err := w.Write(buf)
	*bp = buf[:0]
	batchBufs.Put(bp)
	return err
}

// maxPooledBatch is the largest joined batch whose buffer is pooled;
// bigger ones (rare: a receiver far behind) are allocated and dropped so
// the pool does not keep big buffers alive.
const maxPooledBatch = 64 << 10

// batchBufs holds the buffers writeAll joins frames in.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// slowIfTimeout marks a write that timed out while the connection was
// open as a slow consumer's.
func slowIfTimeout(c *conn, err error) error {
	if err != nil && (isTimeout(err) || errors.Is(err, context.DeadlineExceeded)) && c.ctx.Err() == nil {
		return fmt.Errorf("%w: %w", errSlowPeer, err)
	}
	return err
}

// readControl handles control frames until the connection ends.
func (c *conn) readControl() {
	for {
		h, frame, err := readFrame(c.native.ctl, wire.VersionNative, c.srv.cfg.MaxFrame)
		if err != nil {
			if isProtocolError(err) {
				c.close(protocolClose(err))
			} else if err == io.EOF {
				c.close(closeNormal)
			}
			return
		}
		m, err := wire.DecodeMessage(h.Type, frame[wire.HeaderSize:])
		if err != nil {
			c.close(protocolClose(err))
			return
		}
		if !c.handleControl(m) {
			return
		}
	}
}

// handleControl handles one control message; false ends the connection.
func (c *conn) handleControl(m wire.Message) bool {
	s := c.srv
	switch m := m.(type) {
	case *wire.Join:
		c.nativeJoin(m)
	case *wire.Leave:
		r := c.roomByHandle(m.Handle)
		if r == nil {
			c.ctlError(m.RequestID, ErrNotInRoom)
			return true
		}
		c.nativeLeave(r)
		c.ctlSend(&wire.Left{RequestID: m.RequestID, Handle: m.Handle, Reason: "left"})
	case *wire.List:
		c.ctlSend(&wire.Rooms{RequestID: m.RequestID, Rooms: s.listRooms(m.Prefix, int(m.Limit))})
	case *wire.Heartbeat:
		c.ctlSend(&wire.Ack{Seq: m.Seq, SentMicros: m.SentMicros})
	case *wire.Ack:
		c.heartbeatAcked(m)
	default:
		c.close(protocolClose(fmt.Errorf("%w: %s on the control stream", wire.ErrFrameType, m.FrameType())))
		return false
	}
	return true
}

func (c *conn) nativeJoin(m *wire.Join) {
	s := c.srv
	if m.Room == "" {
		c.ctlError(m.RequestID, hub.ErrBadRequest.With("bad request: empty room name"))
		return
	}
	if r := c.roomNamed(m.Room); r != nil {
		c.ctlSend(&wire.Joined{RequestID: m.RequestID, Room: r.name, Handle: r.id, Members: s.members(r)})
		return
	}
	if !m.Create && !s.roomExists(m.Room) {
		remote, err := s.cluster.remoteRoomExists(m.Room)
		if err != nil {
			c.ctlError(m.RequestID, err)
			return
		}
		if !remote {
			c.ctlError(m.RequestID, errNoRoom)
			return
		}
	}
	c.setMemberMeta(m.Metadata)
	r, before, err := s.join(c, m.Room, int(m.MaxMembers))
	if err != nil {
		c.ctlError(m.RequestID, err)
		return
	}
	frame := wire.AppendMessage(nil, &wire.Presence{Handle: r.id, Joins: []wire.Member{c.member()}})
	r.notifying(func() {
		c.ctlSend(&wire.Joined{RequestID: m.RequestID, Room: r.name, Handle: r.id, Members: s.members(r)})
		for _, o := range before {
			_ = o.native.ctlQ.Enqueue(frame)
		}
	})
}

// nativeLeave leaves r and tells the remaining members.
func (c *conn) nativeLeave(r *room) {
	c.srv.leave(c, r)
	frame := wire.AppendMessage(nil, &wire.Presence{Handle: r.id, Leaves: []wire.NodeID{c.id}})
	r.notifying(func() {
		for _, o := range *r.snap.Load() {
			_ = o.native.ctlQ.Enqueue(frame)
		}
	})
}

var errNoRoom = hub.ErrUnknownChannel.With("no such room (join with create to make it)")

func (c *conn) setMemberMeta(meta []byte) {
	c.mu.Lock()
	c.meta = slices.Clone(meta)
	c.mu.Unlock()
}

func (c *conn) member() wire.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return wire.Member{NodeID: c.id, User: c.user, Metadata: c.meta}
}

// members lists r's members, on every process (a session moving between
// processes once: see localSIDs).
func (s *Server) members(r *room) []wire.Member {
	list := *r.snap.Load()
	out := make([]wire.Member, len(list))
	for i, m := range list {
		out[i] = m.member()
	}
	if r.bus == nil {
		return out
	}
	local := localSIDs(list)
	for _, m := range r.bus.remoteMembers() {
		if _, dup := local[m.sid]; !dup {
			out = append(out, m.wireMember())
		}
	}
	return out
}

func (s *Server) roomExists(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.rooms[name]
	return r != nil && len(r.members) > 0 // not one held only by JOINs in flight
}

// listRooms lists native rooms whose names start with prefix, sorted,
// at most limit (0 or above wire.MaxListItems: wire.MaxListItems).
func (s *Server) listRooms(prefix string, limit int) []wire.RoomInfo {
	if limit <= 0 || limit > wire.MaxListItems {
		limit = wire.MaxListItems
	}
	s.mu.RLock()
	out := make([]wire.RoomInfo, 0)
	for name, r := range s.rooms {
		if r.transport == transportNative && len(r.members) > 0 && strings.HasPrefix(name, prefix) {
			out = append(out, wire.RoomInfo{Name: name, Members: uint32(len(r.members) + r.bus.remoteCount()), MaxMembers: uint32(r.maxMembers)})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b wire.RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// readNativeStreams reads EVENT frames from the client's uni streams.
func (c *conn) readNativeStreams() {
	for {
		rs, err := c.native.tr.acceptUni(c.ctx)
		if err != nil {
			return
		}
		stop := context.AfterFunc(c.ctx, func() { rs.cancelRead() })
		var ev wire.NativeEvent // decoded into, event after event
		for {
			h, frame, err := readFrame(rs, wire.VersionNative, c.srv.cfg.MaxFrame)
			if err != nil {
				if isProtocolError(err) {
					c.close(protocolClose(err))
				}
				break
			}
			if h.Type != wire.FrameEvent {
				c.close(protocolClose(fmt.Errorf("%w: %s on an event stream", wire.ErrFrameType, h.Type)))
				break
			}
			if !c.nativeEvent(frame, false, &ev) {
				break
			}
		}
		stop()
		if c.ctx.Err() != nil {
			return
		}
	}
}

// readDatagrams reads the client's datagrams: DATAGRAM frames, packed.
func (c *conn) readDatagrams() {
	var ev wire.NativeEvent // decoded into, event after event
	for {
		d, err := c.native.tr.receiveDatagram(c.ctx)
		if err != nil {
			return
		}
		for len(d) > 0 {
			h, _, rest, err := wire.SplitFrame(d, wire.VersionNative, c.srv.cfg.MaxFrame)
			if err == nil && h.Type != wire.FrameDatagram {
				err = fmt.Errorf("%w: %s in a datagram", wire.ErrFrameType, h.Type)
			}
			if err != nil {
				c.close(protocolClose(err))
				return
			}
			frame := d[: len(d)-len(rest) : len(d)-len(rest)]
			if !c.nativeEvent(frame, true, &ev) {
				return
			}
			d = rest
		}
	}
}

// nativeEvent routes one event frame (rewritten in place: the sender);
// false ends the connection.
//
// ev is the reader's scratch event, decoded into without allocating.
func (c *conn) nativeEvent(frame []byte, unrel bool, ev *wire.NativeEvent) bool {
	s := c.srv
	start := s.cfg.Clock.Now()
	n := c.native
	n.bucketMu.Lock()
	ok, abuse := c.bucket.take(start)
	n.bucketMu.Unlock()
	if !ok {
		s.metrics.dropRateLimited.Inc()
		if abuse {
			c.close(closeRateLimited)
			return false
		}
		return true
	}
	t, in := wire.FrameEvent, s.metrics.inReliable
	if unrel {
		t, in = wire.FrameDatagram, s.metrics.inUnreliable
	}
	if err := wire.DecodeNativeEvent(t, frame[wire.HeaderSize:], ev); err != nil {
		c.close(protocolClose(err))
		return false
	}
	in.Inc()
	r := c.roomByHandle(ev.Handle)
	if r == nil {
		s.metrics.dropNotInRoom.Inc()
		return true
	}
	binary.LittleEndian.PutUint64(frame[wire.HeaderSize+4:], uint64(c.id)) // sender
	for _, o := range *r.snap.Load() {
		if o == c || (len(ev.Targets) > 0 && !slices.Contains(ev.Targets, o.id)) {
			continue
		}
		if unrel {
			o.pushDatagram(frame)
		} else {
			o.send(frame)
		}
	}
	r.extend(frame, unrel, ev.Targets) // other processes, spectators (mirror.go)
	s.metrics.fanout.Observe(time.Since(start).Seconds())
	return true
}

// pushDatagram queues an unreliable frame, dropping the oldest when the
// ring is full, and starts the datagram writer unless it runs; it never
// blocks. A session past its end drops the frame.
func (c *conn) pushDatagram(frame []byte) {
	n := c.native
	n.dgMu.Lock()
	if n.dgClosed {
		n.dgMu.Unlock()
		c.srv.metrics.dropQueueClosed.Inc()
		return
	}
	if len(n.dgRing) >= datagramRing {
		n.dgRing = n.dgRing[1:]
		c.srv.metrics.dropRing.Inc()
	}
	n.dgRing = append(n.dgRing, frame)
	start := !n.dgWriting
	if start {
		n.dgWriting = true
		n.wg.Add(1) // before stopDatagrams: it sets dgClosed under dgMu, then the session waits
	}
	n.dgMu.Unlock()
	c.srv.metrics.deliveries.Inc()
	if start {
		go c.writeDatagrams()
	}
}

// stopDatagrams drops the queued datagrams; later ones are dropped and no
// writer starts. A writer running ends after its current datagram.
func (c *conn) stopDatagrams() {
	n := c.native
	n.dgMu.Lock()
	n.dgClosed = true
	clear(n.dgRing)
	n.dgRing, n.dgSpare = nil, nil
	n.dgMu.Unlock()
}

// writeDatagrams packs queued unreliable frames into datagrams until the
// ring is empty or the session ended, then returns: an idle connection
// has no writer goroutine (nor its stack).
//
// Both transports copy a datagram before SendDatagram returns, so the
// packing buffer goes back to its pool when the writer ends.
func (c *conn) writeDatagrams() {
	n := c.native
	defer n.wg.Done()
	bp := datagramBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0]; datagramBufs.Put(bp) }()
	flush := func() {
		if len(buf) > 0 {
			if err := n.tr.sendDatagram(buf); err != nil {
				c.srv.metrics.dropRing.Inc()
			}
			buf = buf[:0]
		}
	}
	var sent [][]byte // the batch just sent, emptied: the ring reuses it
	for {
		n.dgMu.Lock()
		if sent != nil && !n.dgClosed {
			n.dgSpare = sent
		}
		frames := n.dgRing
		if len(frames) == 0 || n.dgClosed {
			n.dgWriting = false
			n.dgMu.Unlock()
			return
		}
		n.dgRing, n.dgSpare = n.dgSpare[:0], nil
		n.dgMu.Unlock()
		for _, f := range frames {
			if len(buf)+len(f) > maxDatagram {
				flush()
			}
			buf = append(buf, f...)
		}
		flush()
		clear(frames) // the frames are shared: drop the references
		sent = frames
	}
}

// datagramBufs holds the datagram writers' packing buffers.
var datagramBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxDatagram); return &b }}

// startHeartbeats sends a HEARTBEAT every interval; missedHeartbeats
// unanswered in a row close the connection.
func (c *conn) startHeartbeats() {
	n := c.native
	var beat func()
	beat = func() {
		if c.ctx.Err() != nil {
			return
		}
		n.hbMu.Lock()
		if c.ctx.Err() != nil {
			n.hbMu.Unlock()
			return
		}
		if n.hbMissed >= missedHeartbeats {
			n.hbMu.Unlock()
			c.close(closeNoPong)
			return
		}
		n.hbMissed++
		n.hbSeq++
		seq := n.hbSeq
		n.hbTimer = c.srv.cfg.Clock.AfterFunc(c.srv.cfg.HeartbeatInterval, beat)
		n.hbMu.Unlock()
		c.ctlSend(&wire.Heartbeat{Seq: seq, SentMicros: uint64(c.srv.cfg.Clock.Now().UnixMicro())})
	}
	n.hbMu.Lock()
	n.hbTimer = c.srv.cfg.Clock.AfterFunc(c.srv.cfg.HeartbeatInterval, beat)
	n.hbMu.Unlock()
}

func (c *conn) heartbeatAcked(a *wire.Ack) {
	n := c.native
	n.hbMu.Lock()
	defer n.hbMu.Unlock()
	if a.Seq == n.hbSeq {
		n.hbMissed = 0
		n.rtt = c.srv.cfg.Clock.Now().Sub(time.UnixMicro(int64(a.SentMicros)))
		c.srv.metrics.rtt.Observe(n.rtt.Seconds())
	}
}

// finishNative ends a native connection: GOAWAY when the server closes
// it, then what finish does.
func (c *conn) finishNative() {
	n := c.native
	c.cancel() // a heartbeat firing now sees it and does not re-arm
	n.hbMu.Lock()
	if n.hbTimer != nil {
		n.hbTimer.Stop()
	}
	n.hbMu.Unlock()
	c.stopExpiry()
	n.ctlQ.Close()
	n.evQ.Close()
	if d, byServer := c.reason(); byServer && d != closeNormal {
		retry := uint32(0)
		if d.Reconnect() {
			retry = 1000
		}
		n.ctlMu.Lock()
		_ = n.ctl.SetWriteDeadline(time.Now().Add(goAwayLinger))
		_, err := n.ctl.Write(wire.AppendMessage(nil, &wire.GoAway{Code: d.Code, Reason: d.Reason, RetryAfterMillis: retry}))
		_ = n.ctl.Close()
		n.ctlMu.Unlock()
		// Closing the connection now would drop the GOAWAY still in
		// flight: give the client a moment to read it and close.
		if err == nil {
			t := time.NewTimer(goAwayLinger)
			select {
			case <-n.tr.done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	if c.srv.park(c) {
		c.receiving.Store(false)
		n.tr.close(closeNormal)
		if cl := c.srv.cluster; cl != nil {
			cl.dirMarkParked(c, true) // the same user's HELLO elsewhere may take it
		}
		return
	}
	for _, r := range c.roomList() {
		c.nativeLeave(r)
	}
	c.finish()
}
