//go:build !js

package relay

import (
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
	// MaxFrame caps frames read (default 1 MiB).
	MaxFrame int
	// WebTransport dials https://addr/relay as a browser does (HTTP/3,
	// WebTransport) instead of the native QUIC protocol; the session
	// carries the same frames.
	WebTransport bool
	// Header is sent with the WebTransport request (Origin, for one).
	Header http.Header
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

// RequestError is an ERROR answer to a request.
type RequestError struct {
	Code    wire.ErrorCode
	Message string
}

func (e *RequestError) Error() string { return fmt.Sprintf("relay: error %d: %s", e.Code, e.Message) }

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("relay: client closed")

// Client is a connection to the relay.
type Client struct {
	l       link
	ctl     controlStream
	welcome *wire.Welcome
	maxF    int

	ctlMu  sync.Mutex
	sendMu sync.Mutex // reliable event writes
	evOut  io.Writer
	seq    atomic.Uint64

	evMu   sync.Mutex // evOpen; closing events
	evOpen bool

	mu      sync.Mutex
	nextReq uint32
	pending map[uint32]chan wire.Message
	rooms   map[uint32]*Room // by handle
	err     error
	rtt     time.Duration

	events   chan Event
	presence chan PresenceEvent
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	dropped  atomic.Uint64
	// droppedPresence counts presence news dropped because Presence was
	// full (Room.Members stays right).
	droppedPresence atomic.Uint64
}

// Dial connects to the relay at addr (host:port) and opens a session.
func Dial(ctx context.Context, addr string, o Options) (*Client, error) {
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 1 << 20
	}
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
	var l link
	var err error
	if o.WebTransport {
		l, err = dialWebTransport(ctx, addr, tc, o.Header)
	} else {
		l, err = dialQUIC(ctx, addr, tc)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: dial %s: %w", addr, err)
	}
	c := &Client{l: l, maxF: o.MaxFrame, pending: map[uint32]chan wire.Message{}, rooms: map[uint32]*Room{},
		events: make(chan Event, o.EventBuffer), presence: make(chan PresenceEvent, o.EventBuffer), done: make(chan struct{}), evOpen: true}
	if err := c.hello(ctx, &wire.Hello{Token: o.Token, NodeID: o.NodeID, ResumeToken: o.ResumeToken, Client: o.Name}); err != nil {
		l.close(0, "")
		return nil, err
	}
	c.wg.Add(3)
	go c.readControl()
	go c.readEvents()
	go c.readDatagrams()
	go func() { c.wg.Wait(); c.l.close(0, ""); c.finish(nil) }()
	return c, nil
}

func (c *Client) hello(ctx context.Context, h *wire.Hello) error {
	ctl, err := c.l.openControl(ctx)
	if err != nil {
		return fmt.Errorf("relay: control stream: %w", err)
	}
	c.ctl = ctl
	if dl, ok := ctx.Deadline(); ok {
		_ = ctl.SetDeadline(dl)
	}
	if _, err := ctl.Write(wire.AppendMessage(nil, h)); err != nil {
		return fmt.Errorf("relay: hello: %w", err)
	}
	hd, body, err := wire.ReadFrame(ctl, wire.VersionNative, c.maxF, nil)
	if err != nil {
		if r := c.l.refusal(err); r != nil {
			return r
		}
		return fmt.Errorf("relay: hello: %w", err)
	}
	_ = ctl.SetDeadline(time.Time{})
	m, err := wire.DecodeMessage(hd.Type, body)
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *wire.Welcome:
		c.welcome = m
		return nil
	case *wire.Error:
		return &RequestError{Code: m.Code, Message: m.Message}
	default:
		return fmt.Errorf("relay: %s before WELCOME", m.FrameType())
	}
}

// NodeID is the session's NodeId.
func (c *Client) NodeID() wire.NodeID { return c.welcome.NodeID }

// SessionID is the session's id (the hub presence client id).
func (c *Client) SessionID() string { return c.welcome.SessionID }

// ResumeToken resumes this session after a lost connection (Options).
func (c *Client) ResumeToken() string { return c.welcome.ResumeToken }

// Resumed reports whether Dial resumed a lost session.
func (c *Client) Resumed() bool { return c.welcome.Resumed }

// Limits are the relay's limits.
func (c *Client) Limits() wire.Limits { return c.welcome.Limits }

// Events delivers room events; it is closed when the client ends.
func (c *Client) Events() <-chan Event { return c.events }

// Presence delivers joins and leaves of the rooms joined, dropping news
// when it is full (Room.Members is kept up to date regardless); it is
// closed at the end.
func (c *Client) Presence() <-chan PresenceEvent { return c.presence }

// Done is closed when the connection has ended; Err tells why.
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
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rtt
}

// DroppedUnreliable counts unreliable events dropped because Events was full.
func (c *Client) DroppedUnreliable() uint64 { return c.dropped.Load() }

// Close leaves every room at once (code 0: no resume) and closes.
func (c *Client) Close() error {
	c.l.close(0, "")
	<-c.done
	return nil
}

// Abandon closes the connection as if it was lost (a non-zero code), so
// the relay keeps the session for its resume window.
func (c *Client) Abandon() {
	c.l.close(1, "abandoned")
	<-c.done
}

func (c *Client) finish(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		for id, ch := range c.pending {
			close(ch)
			delete(c.pending, id)
		}
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *Client) writeControl(m wire.Message) error {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if _, err := c.ctl.Write(wire.AppendMessage(nil, m)); err != nil {
		return fmt.Errorf("relay: write: %w", err)
	}
	return nil
}

// request sends m (whose request id it sets) and waits for the answer.
func (c *Client) request(ctx context.Context, m wire.Message, setID func(uint32)) (wire.Message, error) {
	ch := make(chan wire.Message, 1)
	c.mu.Lock()
	if c.err != nil || isClosed(c.done) {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.nextReq++
	if c.nextReq == 0 {
		c.nextReq = 1
	}
	id := c.nextReq
	c.pending[id] = ch
	c.mu.Unlock()
	setID(id)
	if err := c.writeControl(m); err != nil {
		return nil, err
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if e, isErr := a.(*wire.Error); isErr {
			return nil, &RequestError{Code: e.Code, Message: e.Message}
		}
		return a, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *Client) answer(id uint32, m wire.Message) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

func (c *Client) readControl() {
	defer c.wg.Done()
	defer close(c.presence)
	for {
		h, body, err := wire.ReadFrame(c.ctl, wire.VersionNative, c.maxF, nil)
		if err != nil {
			c.finish(nil)
			c.l.close(0, "")
			return
		}
		m, err := wire.DecodeMessage(h.Type, body)
		if err != nil {
			c.finish(err)
			c.l.close(1, "bad frame")
			return
		}
		switch m := m.(type) {
		case *wire.Heartbeat:
			_ = c.writeControl(&wire.Ack{Seq: m.Seq, SentMicros: m.SentMicros})
		case *wire.Ack:
			c.mu.Lock()
			c.rtt = time.Since(time.UnixMicro(int64(m.SentMicros)))
			c.mu.Unlock()
		case *wire.Joined: // request id 0: a room kept by a resume
			c.room(m)
			if m.RequestID != 0 {
				c.answer(m.RequestID, m)
			}
		case *wire.Left:
			c.mu.Lock()
			delete(c.rooms, m.Handle)
			c.mu.Unlock()
			if m.RequestID != 0 {
				c.answer(m.RequestID, m)
			}
		case *wire.Rooms:
			c.answer(m.RequestID, m)
		case *wire.Error:
			c.answer(m.RequestID, m)
		case *wire.Presence:
			c.mu.Lock()
			r := c.rooms[m.Handle]
			c.mu.Unlock()
			if r != nil {
				r.applyPresence(m)
				select {
				case c.presence <- PresenceEvent{Room: r.name, Joins: m.Joins, Leaves: m.Leaves}:
				default:
					c.droppedPresence.Add(1)
				}
			}
		case *wire.GoAway:
			c.finish(&GoAwayError{GoAway: *m})
			c.l.close(0, "goaway")
			return
		}
	}
}

// room records the room of a JOINED.
func (c *Client) room(m *wire.Joined) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[m.Handle]
	if r == nil {
		r = &Room{c: c, name: m.Room, handle: m.Handle}
		c.rooms[m.Handle] = r
	}
	r.setMembers(m.Members)
}

func (c *Client) roomName(handle uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rooms[handle]; r != nil {
		return r.name
	}
	return ""
}

func (c *Client) readEvents() {
	defer c.wg.Done()
	defer func() {
		c.evMu.Lock() // the datagram reader may still deliver
		defer c.evMu.Unlock()
		close(c.events)
		c.evOpen = false
	}()
	rs, err := c.l.acceptUni(context.Background())
	if err != nil {
		return
	}
	for {
		h, body, err := wire.ReadFrame(rs, wire.VersionNative, c.maxF, nil)
		if err != nil {
			return
		}
		m, err := wire.DecodeMessage(h.Type, body)
		if err != nil {
			return
		}
		ev := m.(*wire.NativeEvent)
		e := Event{Room: c.roomName(ev.Handle), Sender: ev.Sender, Sequence: ev.Sequence, OpCode: ev.OpCode, Payload: ev.Payload}
		select {
		case c.events <- e:
		case <-c.done:
			return
		}
	}
}

func (c *Client) readDatagrams() {
	defer c.wg.Done()
	for {
		d, err := c.l.receiveDatagram(context.Background())
		if err != nil {
			return
		}
		for len(d) > 0 {
			h, body, rest, err := wire.SplitFrame(d, wire.VersionNative, c.maxF)
			if err != nil {
				break
			}
			d = rest
			m, err := wire.DecodeMessage(h.Type, body)
			if err != nil {
				continue
			}
			ev := m.(*wire.NativeEvent)
			e := Event{Room: c.roomName(ev.Handle), Sender: ev.Sender, Sequence: ev.Sequence, OpCode: ev.OpCode,
				Payload: append([]byte(nil), ev.Payload...), Unreliable: true}
			c.evMu.Lock()
			if c.evOpen {
				select {
				case c.events <- e:
				default:
					c.dropped.Add(1)
				}
			}
			c.evMu.Unlock()
		}
	}
}

// Heartbeat sends a heartbeat; RTT is updated when its ACK arrives.
func (c *Client) Heartbeat() error {
	return c.writeControl(&wire.Heartbeat{Seq: c.seq.Add(1), SentMicros: uint64(time.Now().UnixMicro())})
}

// List returns the relay's rooms whose names start with prefix (at
// most limit; 0: the relay's cap).
func (c *Client) List(ctx context.Context, prefix string, limit int) ([]wire.RoomInfo, error) {
	m := &wire.List{Prefix: prefix, Limit: uint32(max(limit, 0))}
	a, err := c.request(ctx, m, func(id uint32) { m.RequestID = id })
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

// Join joins room.
func (c *Client) Join(ctx context.Context, room string, o JoinOptions) (*Room, error) {
	m := &wire.Join{Room: room, Create: o.Create, MaxMembers: o.MaxMembers, Metadata: o.Metadata}
	if _, err := c.request(ctx, m, func(id uint32) { m.RequestID = id }); err != nil {
		return nil, err
	}
	return c.Room(room), nil
}

// Room returns the joined room called name (nil when not joined); after
// a resume, the rooms kept are there once their JOINED arrived.
func (c *Client) Room(name string) *Room {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.rooms {
		if r.name == name {
			return r
		}
	}
	return nil
}
