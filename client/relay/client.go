//go:build !js

package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Options configure Dial. Zero values mean defaults.
type Options struct {
	// Token is the hub connection JWT ("" when the relay needs none).
	Token string
	// NodeID asks for this NodeId; 0 lets the relay assign one.
	NodeID wire.NodeID
	// ResumeToken resumes a lost session (Client.ResumeToken of the old
	// client) within the relay's grace window.
	ResumeToken string
	// Name identifies the client in the relay's logs.
	Name string
	// TLS is the TLS configuration; nil verifies the server against the
	// system roots (ServerName from the address). NextProtos is set.
	TLS *tls.Config
	// CertHashes, when set, accept a server certificate whose SHA-256 is
	// one of them instead of verifying its chain (the relay's development
	// or relay-cert certificate).
	CertHashes [][32]byte
	// EventBuffer is the capacity of Events and Presence (default 1024).
	EventBuffer int
	// OnEvent, when set, receives every event instead of Events (which
	// then stays empty): reliable ones in order from the goroutine reading
	// the event stream, unreliable ones from the datagram reader. It must
	// return quickly; a slow OnEvent holds back the events behind it.
	// The Payload is the handler's to keep.
	OnEvent func(Event)
	// MaxFrame caps frames read (default 1 MiB).
	MaxFrame int
	// IdleTimeout is how long a silent connection lives before it counts
	// as lost (default 30 s; QUIC keep-alives are sent at a third of it).
	IdleTimeout time.Duration

	// Reconnect turns on automatic reconnection (see Reconnect in the
	// package documentation). Off, a lost connection ends the Client.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the delay between redials (defaults
	// 100 ms and 10 s); the delay doubles per failed attempt, with up to
	// 50 % random jitter subtracted.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts ends the Client after this many failed redials in a
	// row (0: no limit).
	MaxAttempts int
	// DialTimeout bounds one redial with its handshake (default 10 s).
	DialTimeout time.Duration
	// OnState, when set, is called at every State change, in order, from
	// one goroutine of the Client; it must return quickly and must not
	// call Close.
	OnState func(StateChange)

	// WebTransport dials https://addr/relay as a browser does (HTTP/3,
	// WebTransport) instead of the native QUIC protocol; the session
	// carries the same frames.
	WebTransport bool
	// Header is sent with the WebTransport request (Origin, for one).
	Header http.Header

	// Transport, when set, carries the native QUIC connection on this
	// shared UDP socket instead of a socket of its own (a load tool's
	// thousands of clients then cost one read loop). The caller owns it
	// and closes it after the clients. Not used with WebTransport.
	Transport *quic.Transport
}

// Event is an event received in a room.
type Event struct {
	Room       string
	Sender     wire.NodeID
	Sequence   uint64
	OpCode     uint32
	Payload    []byte
	Unreliable bool
}

// PresenceEvent tells who joined and left a room.
type PresenceEvent struct {
	Room   string
	Joins  []wire.Member
	Leaves []wire.NodeID
}

// GoAwayError is why the relay closed the connection.
type GoAwayError struct{ GoAway wire.GoAway }

func (e *GoAwayError) Error() string {
	return fmt.Sprintf("relay: goaway %d: %s", e.GoAway.Code, e.GoAway.Reason)
}

// Retry reports whether the relay invites the client back (codes
// 3000-3499 and from 5000, Centrifugo's reconnect ranges).
func (e *GoAwayError) Retry() bool { return e.GoAway.Code < 3500 || e.GoAway.Code >= 5000 }

// RefusedError is a handshake the relay refused by closing the
// connection with Code (its disconnect code) before an ERROR arrived.
type RefusedError struct {
	Code   uint32
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("relay: refused (%d): %s", e.Code, e.Reason)
}

// RequestError is an ERROR answer to a request.
type RequestError struct {
	Code    wire.ErrorCode
	Message string
}

func (e *RequestError) Error() string { return fmt.Sprintf("relay: error %d: %s", e.Code, e.Message) }

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("relay: client closed")

// ErrReconnecting is returned by sends and requests while the client is
// between connections (Options.Reconnect); the call may be retried after
// the next StateResumed or StateRejoined.
var ErrReconnecting = errors.New("relay: reconnecting")

// Client is a connection to the relay, or with Options.Reconnect a
// sequence of connections presenting one session. Safe for concurrent use.
type Client struct {
	addr string
	o    Options
	tc   *tls.Config

	events    chan Event
	presence  chan PresenceEvent
	done      chan struct{}
	wg        sync.WaitGroup // the supervisor and the sessions' readers
	closing   chan struct{}  // Close or Abandon asked
	closeOnce sync.Once
	leave     atomic.Bool // Close (code 0) rather than Abandon

	seq             atomic.Uint64
	dropped         atomic.Uint64
	droppedPresence atomic.Uint64

	mu      sync.Mutex
	sess    *session // current connection; nil while reconnecting
	welcome *wire.Welcome
	rooms   map[string]*Room // joined by the application, by name
	state   State
	err     error
}

// Dial connects to the relay at addr (host:port) and opens a session.
func Dial(ctx context.Context, addr string, o Options) (*Client, error) {
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 1 << 20
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	c := &Client{addr: addr, o: o, tc: tlsConfig(addr, o), rooms: map[string]*Room{},
		events: make(chan Event, o.EventBuffer), presence: make(chan PresenceEvent, o.EventBuffer),
		done: make(chan struct{}), closing: make(chan struct{})}
	s, w, err := c.connect(ctx, &wire.Hello{Token: o.Token, NodeID: o.NodeID, ResumeToken: o.ResumeToken, Client: o.Name})
	if err != nil {
		return nil, err
	}
	c.adopt(s, w)
	c.setState(StateChange{State: StateConnected})
	c.wg.Add(1)
	go c.supervise(s)
	go func() {
		c.wg.Wait()
		close(c.events)
		close(c.presence)
		close(c.done)
	}()
	return c, nil
}

func tlsConfig(addr string, o Options) *tls.Config {
	tc := &tls.Config{}
	if o.TLS != nil {
		tc = o.TLS.Clone()
	}
	tc.NextProtos = []string{wire.ALPNNative}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = host
		}
	}
	if len(o.CertHashes) > 0 {
		hashes := o.CertHashes
		tc.InsecureSkipVerify = true // the hash check below replaces the chain check
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("relay: no server certificate")
			}
			sum := sha256.Sum256(raw[0])
			for _, h := range hashes {
				if bytes.Equal(sum[:], h[:]) {
					return nil
				}
			}
			return fmt.Errorf("relay: server certificate sha256 %x is not pinned", sum)
		}
	}
	return tc
}

// connect dials and says HELLO; the session's readers are not started.
func (c *Client) connect(ctx context.Context, h *wire.Hello) (*session, *wire.Welcome, error) {
	qconf := &quic.Config{EnableDatagrams: true, MaxIdleTimeout: c.o.IdleTimeout, KeepAlivePeriod: c.o.IdleTimeout / 3}
	var l link
	var err error
	if c.o.WebTransport {
		l, err = dialWebTransport(ctx, c.addr, c.tc, qconf, c.o.Header)
	} else {
		l, err = dialQUIC(ctx, c.o.Transport, c.addr, c.tc, qconf)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("relay: dial %s: %w", c.addr, err)
	}
	s := &session{c: c, l: l, pending: map[uint32]chan wire.Message{}, byHandle: map[uint32]*Room{}, early: map[uint32][]*wire.Presence{},
		done: make(chan struct{}), attached: make(chan struct{}, 1)}
	w, err := s.hello(ctx, h)
	if err != nil {
		l.close(0, "")
		return nil, nil, err
	}
	return s, w, nil
}

// adopt makes s the current session.
func (c *Client) adopt(s *session, w *wire.Welcome) {
	c.mu.Lock()
	c.sess, c.welcome = s, w
	c.mu.Unlock()
	if isClosed(c.closing) { // stop may have missed s
		s.close(c.leave.Load())
	}
	s.wg.Add(3)
	go s.readControl()
	go s.readEvents()
	go s.readDatagrams()
	go func() { s.wg.Wait(); s.l.close(0, ""); s.finish(nil) }()
}

// current is the session requests go to.
func (c *Client) current() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		if c.state == StateClosed {
			return nil, ErrClosed
		}
		return nil, ErrReconnecting
	}
	return c.sess, nil
}

// NodeID is the session's NodeId.
func (c *Client) NodeID() wire.NodeID { return c.lastWelcome().NodeID }

// SessionID is the session's id (the hub presence client id); it changes
// when a reconnection could not resume.
func (c *Client) SessionID() string { return c.lastWelcome().SessionID }

// ResumeToken resumes this session after a lost connection (Options).
func (c *Client) ResumeToken() string { return c.lastWelcome().ResumeToken }

// Resumed reports whether the last connection resumed a lost session.
func (c *Client) Resumed() bool { return c.lastWelcome().Resumed }

// Limits are the relay's limits.
func (c *Client) Limits() wire.Limits { return c.lastWelcome().Limits }

func (c *Client) lastWelcome() *wire.Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Events delivers room events; it is closed when the client ends. It
// stays the same channel across reconnections.
func (c *Client) Events() <-chan Event { return c.events }

// Presence delivers joins and leaves of the rooms joined, dropping news
// when it is full (Room.Members is kept up to date regardless); it is
// closed at the end.
func (c *Client) Presence() <-chan PresenceEvent { return c.presence }

// Done is closed when the client has ended; Err tells why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client ended (*GoAwayError when the relay closed it),
// nil before the end and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// RTT is the last heartbeat round-trip time measured by the relay's
// heartbeats answered here (0 before the first).
func (c *Client) RTT() time.Duration {
	s, err := c.current()
	if err != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rtt
}

// DroppedUnreliable counts unreliable events dropped because Events was full.
func (c *Client) DroppedUnreliable() uint64 { return c.dropped.Load() }

// Close leaves every room at once (code 0: no resume) and closes; it
// stops a reconnection under way. It returns once the close has been
// sent (native QUIC and WebTransport alike), so the program may exit
// right after and the relay still sees a leave, not a lost connection.
func (c *Client) Close() error {
	c.stop(true)
	<-c.done
	return nil
}

// Abandon closes the connection as if it was lost (a non-zero code), so
// the relay keeps the session for its resume window; the Client ends
// (no reconnection).
func (c *Client) Abandon() {
	c.stop(false)
	<-c.done
}

func (c *Client) stop(leave bool) {
	c.closeOnce.Do(func() {
		c.leave.Store(leave)
		close(c.closing)
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		if s != nil {
			s.close(leave)
		}
	})
}

// Heartbeat sends a heartbeat; RTT is updated when its ACK arrives.
func (c *Client) Heartbeat() error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return s.writeControl(&wire.Heartbeat{Seq: c.seq.Add(1), SentMicros: uint64(time.Now().UnixMicro())})
}

// List returns the relay's rooms whose names start with prefix (at
// most limit; 0: the relay's cap).
func (c *Client) List(ctx context.Context, prefix string, limit int) ([]wire.RoomInfo, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	m := &wire.List{Prefix: prefix, Limit: uint32(max(limit, 0))}
	a, err := s.request(ctx, m, func(id uint32) { m.RequestID = id })
	if err != nil {
		return nil, err
	}
	return a.(*wire.Rooms).Rooms, nil
}

// JoinOptions tune Join.
type JoinOptions struct {
	Create     bool   // create the room when it does not exist
	MaxMembers uint32 // cap of a created room (0: the relay's)
	Metadata   []byte // shown to the other members
}

// Join joins room. With Options.Reconnect the room is rejoined after a
// reconnection that could not resume (see Reconnect in the package
// documentation).
func (c *Client) Join(ctx context.Context, room string, o JoinOptions) (*Room, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	j, err := s.join(ctx, room, o)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	if r == nil {
		r = &Room{c: c, name: room}
		c.rooms[room] = r
	}
	r.opts = o
	r.attach(s, j)
	return r, nil
}

// Room returns the joined room called name (nil when not joined); after
// a resume, the rooms kept are there once their JOINED arrived.
func (c *Client) Room(name string) *Room {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[name]
}

// forget drops a room the application left.
func (c *Client) forget(r *Room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms[r.name] == r {
		delete(c.rooms, r.name)
	}
}

// deliver passes a reliable event on, waiting for the reader (or the
// session's end).
func (c *Client) deliver(s *session, e Event) bool {
	if c.o.OnEvent != nil {
		c.o.OnEvent(e)
		return true
	}
	select {
	case c.events <- e:
		return true
	case <-s.done:
		return false
	}
}

// deliverUnreliable passes an unreliable event on unless Events is full.
func (c *Client) deliverUnreliable(e Event) {
	if c.o.OnEvent != nil {
		c.o.OnEvent(e)
		return
	}
	select {
	case c.events <- e:
	default:
		c.dropped.Add(1)
	}
}

func (c *Client) deliverPresence(p PresenceEvent) {
	select {
	case c.presence <- p:
	default:
		c.droppedPresence.Add(1)
	}
}

// session is one QUIC connection of a Client.
type session struct {
	c   *Client
	l   link
	ctl controlStream

	ctlMu  sync.Mutex
	sendMu sync.Mutex // reliable event writes
	evOut  io.Writer

	mu       sync.Mutex
	nextReq  uint32
	pending  map[uint32]chan wire.Message
	byHandle map[uint32]*Room
	// early holds the PRESENCE that arrived for a room between its JOINED
	// and the Room's attach (the joiner's goroutine), applied by attach.
	early map[uint32][]*wire.Presence
	err   error // why it ended (nil: the connection closed)
	rtt   time.Duration

	muteHeartbeats atomic.Bool   // tests: stop answering the relay's heartbeats
	attached       chan struct{} // a kept room attached (resume)
	done           chan struct{}
	wg             sync.WaitGroup
	once           sync.Once
}

func (s *session) hello(ctx context.Context, h *wire.Hello) (*wire.Welcome, error) {
	ctl, err := s.l.openControl(ctx)
	if err != nil {
		return nil, fmt.Errorf("relay: control stream: %w", err)
	}
	s.ctl = ctl
	if dl, ok := ctx.Deadline(); ok {
		_ = ctl.SetDeadline(dl)
	}
	if _, err := ctl.Write(wire.AppendMessage(nil, h)); err != nil {
		return nil, fmt.Errorf("relay: hello: %w", err)
	}
	hd, body, err := wire.ReadFrame(ctl, wire.VersionNative, s.c.o.MaxFrame, nil)
	if err != nil {
		if code, reason, ok := s.l.refusal(err); ok { // the ERROR before the close may be lost
			return nil, &RefusedError{Code: code, Reason: reason}
		}
		return nil, fmt.Errorf("relay: hello: %w", err)
	}
	_ = ctl.SetDeadline(time.Time{})
	m, err := wire.DecodeMessage(hd.Type, body)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Welcome:
		return m, nil
	case *wire.Error:
		return nil, &RequestError{Code: m.Code, Message: m.Message}
	default:
		return nil, fmt.Errorf("relay: %s before WELCOME", m.FrameType())
	}
}

func (s *session) finish(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		for id, ch := range s.pending {
			close(ch)
			delete(s.pending, id)
		}
		s.mu.Unlock()
		close(s.done)
	})
}

// close ends the connection: code 0 leaves the rooms at once, 1 lets
// the relay keep the session for a resume.
func (s *session) close(leave bool) {
	if leave {
		s.l.close(0, "")
	} else {
		s.l.close(1, "abandoned")
	}
}

func (s *session) writeControl(m wire.Message) error {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if _, err := s.ctl.Write(wire.AppendMessage(nil, m)); err != nil {
		return fmt.Errorf("relay: write: %w", err)
	}
	return nil
}

// request sends m (whose request id it sets) and waits for the answer.
func (s *session) request(ctx context.Context, m wire.Message, setID func(uint32)) (wire.Message, error) {
	ch := make(chan wire.Message, 1)
	s.mu.Lock()
	if isClosed(s.done) {
		s.mu.Unlock()
		return nil, s.c.endedErr()
	}
	s.nextReq++
	if s.nextReq == 0 {
		s.nextReq = 1
	}
	id := s.nextReq
	s.pending[id] = ch
	s.mu.Unlock()
	setID(id)
	if err := s.writeControl(m); err != nil {
		return nil, err
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return nil, s.c.endedErr()
		}
		if e, isErr := a.(*wire.Error); isErr {
			return nil, &RequestError{Code: e.Code, Message: e.Message}
		}
		return a, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// endedErr is what a call on an ended session returns.
func (c *Client) endedErr() error {
	if c.o.Reconnect && !isClosed(c.closing) {
		return ErrReconnecting
	}
	return ErrClosed
}

func (s *session) join(ctx context.Context, room string, o JoinOptions) (*wire.Joined, error) {
	m := &wire.Join{Room: room, Create: o.Create, MaxMembers: o.MaxMembers, Metadata: o.Metadata}
	a, err := s.request(ctx, m, func(id uint32) { m.RequestID = id })
	if err != nil {
		return nil, err
	}
	return a.(*wire.Joined), nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (s *session) answer(id uint32, m wire.Message) {
	s.mu.Lock()
	ch := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

func (s *session) room(handle uint32) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byHandle[handle]
}

func (s *session) readControl() {
	defer s.wg.Done()
	for {
		h, body, err := wire.ReadFrame(s.ctl, wire.VersionNative, s.c.o.MaxFrame, nil)
		if err != nil {
			s.finish(nil)
			s.l.close(0, "")
			return
		}
		m, err := wire.DecodeMessage(h.Type, body)
		if err != nil {
			s.finish(err)
			s.l.close(1, "bad frame")
			return
		}
		switch m := m.(type) {
		case *wire.Heartbeat:
			if !s.muteHeartbeats.Load() {
				_ = s.writeControl(&wire.Ack{Seq: m.Seq, SentMicros: m.SentMicros})
			}
		case *wire.Ack:
			s.mu.Lock()
			s.rtt = time.Since(time.UnixMicro(int64(m.SentMicros)))
			s.mu.Unlock()
		case *wire.Joined:
			if m.RequestID != 0 {
				s.mu.Lock()
				// PRESENCE until attach is kept; rooms whose join was
				// abandoned keep their entry, so their number is bounded.
				if s.byHandle[m.Handle] == nil && len(s.early) < maxEarlyRooms {
					s.early[m.Handle] = nil
				}
				s.mu.Unlock()
				s.answer(m.RequestID, m)
			} else { // a room kept by a resume
				s.c.kept(s, m)
			}
		case *wire.Left:
			s.mu.Lock()
			delete(s.byHandle, m.Handle)
			s.mu.Unlock()
			if m.RequestID != 0 {
				s.answer(m.RequestID, m)
			}
		case *wire.Rooms:
			s.answer(m.RequestID, m)
		case *wire.Error:
			s.answer(m.RequestID, m)
		case *wire.Presence:
			s.mu.Lock()
			r := s.byHandle[m.Handle]
			if q, waiting := s.early[m.Handle]; r == nil && waiting && len(q) < maxEarlyPresence {
				s.early[m.Handle] = append(q, m)
			}
			s.mu.Unlock()
			if r != nil {
				r.presence(m)
			}
		case *wire.GoAway:
			g := &GoAwayError{GoAway: *m}
			s.finish(g)
			code := uint32(0) // leave
			if g.Retry() {
				code = 1 // a session the relay parks stays resumable
			}
			s.l.close(code, "goaway")
			return
		}
	}
}

// kept attaches a room the relay kept for a resumed session (a JOINED
// without request id), creating it when the application had not joined
// it through this Client (a resume by Options.ResumeToken).
func (c *Client) kept(s *session, j *wire.Joined) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[j.Room]
	if r == nil {
		r = &Room{c: c, name: j.Room, opts: JoinOptions{Create: true}}
		c.rooms[j.Room] = r
	}
	r.attach(s, j)
	select {
	case s.attached <- struct{}{}:
	default:
	}
}

func (s *session) readEvents() {
	defer s.wg.Done()
	rs, err := s.l.acceptUni(context.Background())
	if err != nil {
		return
	}
	// Buffered: one stream read takes whatever frames arrived, instead of
	// two reads (header, body) per frame.
	br := bufio.NewReaderSize(rs, eventReadBuffer)
	var ev wire.NativeEvent // decoded into, event after event
	for {
		h, body, err := wire.ReadFrame(br, wire.VersionNative, s.c.o.MaxFrame, nil)
		if err != nil {
			return
		}
		if h.Type != wire.FrameEvent {
			continue
		}
		if err := wire.DecodeNativeEvent(h.Type, body, &ev); err != nil {
			return
		}
		e := Event{Room: s.roomName(ev.Handle), Sender: ev.Sender, Sequence: ev.Sequence, OpCode: ev.OpCode, Payload: ev.Payload}
		if !s.c.deliver(s, e) {
			return
		}
	}
}

// maxEarlyPresence bounds the PRESENCE kept for a room being attached,
// maxEarlyRooms the rooms being attached at once.
const (
	maxEarlyPresence = 256
	maxEarlyRooms    = 64
)

// eventReadBuffer is the read buffer of the relay's event stream.
const eventReadBuffer = 4 << 10

func (s *session) roomName(handle uint32) string {
	if r := s.room(handle); r != nil {
		return r.name
	}
	return ""
}

func (s *session) readDatagrams() {
	defer s.wg.Done()
	for {
		d, err := s.l.receiveDatagram(context.Background())
		if err != nil {
			return
		}
		for len(d) > 0 {
			h, body, rest, err := wire.SplitFrame(d, wire.VersionNative, s.c.o.MaxFrame)
			if err != nil {
				break
			}
			d = rest
			m, err := wire.DecodeMessage(h.Type, body)
			if err != nil {
				continue
			}
			ev, ok := m.(*wire.NativeEvent)
			if !ok {
				continue
			}
			s.c.deliverUnreliable(Event{Room: s.roomName(ev.Handle), Sender: ev.Sender, Sequence: ev.Sequence, OpCode: ev.OpCode,
				Payload: append([]byte(nil), ev.Payload...), Unreliable: true})
		}
	}
}
