package relaytest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Native is a minimal client of the native protocol for tests: a control
// stream, one reliable event stream out, datagrams. It answers the
// server's heartbeats unless NoAcks is set before Dial returns (use
// DialNativeOpts). Control messages other than heartbeats arrive on
// Control, events on Events (reliable) and Datagrams.
type Native struct {
	t         testing.TB
	QC        *quic.Conn
	Welcome   *wire.Welcome
	Control   chan wire.Message
	Events    chan *wire.NativeEvent
	Datagrams chan *wire.NativeEvent

	ctl   *quic.Stream
	ctlMu sync.Mutex
	evOut *quic.SendStream
	noAck bool
	wg    sync.WaitGroup
}

// NativeOptions tune DialNativeOpts.
type NativeOptions struct {
	NoAcks   bool // never answer the server's heartbeats
	NoEvents bool // never read the server's reliable event stream
}

// DialNative connects, sends hello and waits for WELCOME, failing t
// otherwise.
func DialNative(t testing.TB, addr string, hello *wire.Hello) *Native {
	t.Helper()
	c, err := TryNative(t, addr, hello, NativeOptions{})
	require.NoError(t, err)
	return c
}

// DialNativeOpts is DialNative with options.
func DialNativeOpts(t testing.TB, addr string, hello *wire.Hello, o NativeOptions) *Native {
	t.Helper()
	c, err := TryNative(t, addr, hello, o)
	require.NoError(t, err)
	return c
}

// ErrRefused carries the ERROR the server answered HELLO with.
type ErrRefused struct{ Err *wire.Error }

func (e *ErrRefused) Error() string { return "relay refused: " + e.Err.Message }

// TryNative is DialNative returning the error (*ErrRefused for an ERROR
// answer, the QUIC error otherwise).
func TryNative(t testing.TB, addr string, hello *wire.Hello, o NativeOptions) (*Native, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	qc, err := DialQUIC(ctx, addr, []string{wire.ALPNNative})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	ctl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := ctl.Write(wire.AppendMessage(nil, hello)); err != nil {
		return nil, err
	}
	h, body, err := wire.ReadFrame(ctl, wire.VersionNative, 1<<20, nil)
	if err != nil {
		return nil, err
	}
	m, err := wire.DecodeMessage(h.Type, body)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Welcome:
		c := &Native{t: t, QC: qc, Welcome: m, ctl: ctl, noAck: o.NoAcks,
			Control: make(chan wire.Message, 1024), Events: make(chan *wire.NativeEvent, 4096), Datagrams: make(chan *wire.NativeEvent, 4096)}
		c.wg.Add(2)
		go c.readControl()
		go c.readDatagrams()
		if !o.NoEvents {
			c.wg.Add(1)
			go c.readEvents()
		}
		t.Cleanup(c.Close)
		return c, nil
	case *wire.Error:
		return nil, &ErrRefused{Err: m}
	default:
		return nil, errors.New("relaytest: unexpected " + m.FrameType().String())
	}
}

// Close closes the connection and waits for the readers.
func (c *Native) Close() {
	_ = c.QC.CloseWithError(0, "")
	c.wg.Wait()
}

func (c *Native) readControl() {
	defer c.wg.Done()
	defer close(c.Control)
	for {
		h, body, err := wire.ReadFrame(c.ctl, wire.VersionNative, 1<<20, nil)
		if err != nil {
			return
		}
		m, err := wire.DecodeMessage(h.Type, body)
		if err != nil {
			return
		}
		if g, ok := m.(*wire.GoAway); ok { // a client closes on GOAWAY
			c.Control <- g
			_ = c.QC.CloseWithError(0, "goaway")
			return
		}
		if hb, ok := m.(*wire.Heartbeat); ok {
			if !c.noAck {
				c.SendControl(&wire.Ack{Seq: hb.Seq, SentMicros: hb.SentMicros})
			}
			continue
		}
		c.Control <- m
	}
}

func (c *Native) readEvents() {
	defer c.wg.Done()
	rs, err := c.QC.AcceptUniStream(context.Background())
	if err != nil {
		return
	}
	for {
		h, body, err := wire.ReadFrame(rs, wire.VersionNative, 1<<20, nil)
		if err != nil {
			return
		}
		m, err := wire.DecodeMessage(h.Type, body)
		if err != nil {
			return
		}
		c.Events <- m.(*wire.NativeEvent)
	}
}

func (c *Native) readDatagrams() {
	defer c.wg.Done()
	for {
		d, err := c.QC.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		for len(d) > 0 {
			h, body, rest, err := wire.SplitFrame(d, wire.VersionNative, 1<<20)
			if err != nil {
				return
			}
			m, err := wire.DecodeMessage(h.Type, body)
			if err != nil {
				return
			}
			c.Datagrams <- m.(*wire.NativeEvent)
			d = rest
		}
	}
}

// SendControl writes a control message.
func (c *Native) SendControl(m wire.Message) {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	_, _ = c.ctl.Write(wire.AppendMessage(nil, m))
}

// SendRawControl writes bytes on the control stream.
func (c *Native) SendRawControl(b []byte) {
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	_, _ = c.ctl.Write(b)
}

// Send writes a reliable event on the client's event stream.
func (c *Native) Send(ev *wire.NativeEvent) {
	c.t.Helper()
	if c.evOut == nil {
		st, err := c.QC.OpenUniStreamSync(context.Background())
		require.NoError(c.t, err)
		c.evOut = st
	}
	_, err := c.evOut.Write(wire.AppendMessage(nil, ev))
	require.NoError(c.t, err)
}

// SendDatagram sends events, packed into one datagram.
func (c *Native) SendDatagram(evs ...*wire.NativeEvent) error {
	var b []byte
	for _, ev := range evs {
		ev.Unreliable = true
		b = wire.AppendMessage(b, ev)
	}
	return c.QC.SendDatagram(b)
}

// Next returns the next control message (heartbeats excepted).
func (c *Native) Next() wire.Message {
	c.t.Helper()
	select {
	case m, ok := <-c.Control:
		if !ok {
			c.t.Fatalf("control stream of %d ended", c.Welcome.NodeID)
		}
		return m
	case <-time.After(testenv.Wait):
		c.t.Fatalf("no control message for %d", c.Welcome.NodeID)
	}
	return nil
}

// NextEvent returns the next reliable event.
func (c *Native) NextEvent() *wire.NativeEvent {
	c.t.Helper()
	select {
	case ev := <-c.Events:
		return ev
	case <-time.After(testenv.Wait):
		c.t.Fatalf("no event for %d", c.Welcome.NodeID)
	}
	return nil
}

// AwaitJoin reads control messages until a PRESENCE says id joined.
// Across processes that is when this member's events start reaching id.
func (c *Native) AwaitJoin(id wire.NodeID) {
	c.t.Helper()
	for {
		if p, ok := c.Next().(*wire.Presence); ok && slices.ContainsFunc(p.Joins, func(m wire.Member) bool { return m.NodeID == id }) {
			return
		}
	}
}

// Join joins (creating) room and returns JOINED, failing on ERROR.
func (c *Native) Join(room string) *wire.Joined {
	c.t.Helper()
	c.SendControl(&wire.Join{RequestID: 1, Room: room, Create: true})
	for {
		switch m := c.Next().(type) {
		case *wire.Joined:
			return m
		case *wire.Error:
			c.t.Fatalf("join %s: %s", room, m.Message)
		}
	}
}
