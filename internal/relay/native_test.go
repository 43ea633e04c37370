package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func dialNative(t *testing.T, s *testServer, id wire.NodeID) *relaytest.Native {
	t.Helper()
	return relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: id, Client: "test"})
}

// nextError returns the next ERROR, skipping presence news.
func nextError(t *testing.T, c *relaytest.Native) *wire.Error {
	t.Helper()
	return nextSkippingPresence[*wire.Error](t, c, "ERROR")
}

// nextSkippingPresence returns c's next message, which must be an M (what
// names it), skipping presence news.
func nextSkippingPresence[M wire.Message](t testing.TB, c *relaytest.Native, what string) M {
	t.Helper()
	for {
		switch m := c.Next().(type) {
		case M:
			return m
		case *wire.Presence:
		default:
			t.Fatalf("got %s, want %s", m.FrameType(), what)
		}
	}
}

func TestNativeWelcome(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxMembers = 16 })
	a := dialNative(t, s, 0)
	require.NotZero(t, a.Welcome.NodeID, "assigned")
	require.NotEmpty(t, a.Welcome.SessionID)
	require.Equal(t, s.Limits(), a.Welcome.Limits)
	require.Equal(t, uint32(16), a.Welcome.Limits.MaxMembers)
	require.Equal(t, uint32(5000), a.Welcome.Limits.HeartbeatMillis)
	b := dialNative(t, s, 42)
	require.Equal(t, wire.NodeID(42), b.Welcome.NodeID)
	require.Equal(t, wire.ALPNNative, b.QC.ConnectionState().TLS.NegotiatedProtocol)

	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 42}, relaytest.NativeOptions{})
	require.Error(t, err, "NodeId 42 is taken")
}

func TestNativeJoinLeavePresence(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	ja := a.Join("arena")
	require.Equal(t, "arena", ja.Room)
	require.Len(t, ja.Members, 1)
	b.SendControl(&wire.Join{RequestID: 7, Room: "arena", Metadata: []byte(`{"team":"red"}`)})
	jb := b.Next().(*wire.Joined)
	require.Equal(t, uint32(7), jb.RequestID)
	require.Equal(t, ja.Handle, jb.Handle, "one handle for every member")
	require.Len(t, jb.Members, 2)
	p := a.Next().(*wire.Presence)
	require.Equal(t, []wire.Member{{NodeID: 2, Metadata: []byte(`{"team":"red"}`)}}, p.Joins)

	pres, err := s.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 2)
	for _, info := range pres {
		require.Contains(t, string(info.ChanInfo), `"transport":"quic-native"`)
	}

	a.SendControl(&wire.List{RequestID: 3, Prefix: "ar"})
	rooms := a.Next().(*wire.Rooms)
	require.Equal(t, []wire.RoomInfo{{Name: "arena", Members: 2, MaxMembers: DefaultMaxMembers}}, rooms.Rooms)

	b.SendControl(&wire.Leave{RequestID: 8, Handle: jb.Handle})
	require.Equal(t, &wire.Left{RequestID: 8, Handle: jb.Handle, Reason: "left"}, b.Next())
	p = a.Next().(*wire.Presence)
	require.Equal(t, []wire.NodeID{2}, p.Leaves)

	b.SendControl(&wire.Leave{RequestID: 9, Handle: jb.Handle})
	e := b.Next().(*wire.Error)
	require.Equal(t, wire.ErrCodeNotInRoom, e.Code)
	require.Equal(t, uint32(9), e.RequestID)

	b.SendControl(&wire.Join{RequestID: 10, Room: "nowhere"})
	e = b.Next().(*wire.Error)
	require.Equal(t, wire.ErrCodeNotFound, e.Code, "joining a missing room without create")
}

func TestNativeReliableInOrderNoEchoTargets(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.EventRate = -1 })
	a, b, c := dialNative(t, s, 1), dialNative(t, s, 2), dialNative(t, s, 3)
	h := a.Join("r").Handle
	b.Join("r")
	c.Join("r")
	const n = 1000
	for i := range n {
		a.Send(&wire.NativeEvent{Handle: h, Sender: 99, Sequence: uint64(i), OpCode: 5, Payload: []byte("m")})
	}
	for _, rc := range []*relaytest.Native{b, c} {
		for i := range n {
			ev := rc.NextEvent()
			require.Equal(t, uint64(i), ev.Sequence)
			require.Equal(t, wire.NodeID(1), ev.Sender, "sender rewritten")
			require.Equal(t, uint32(5), ev.OpCode)
		}
	}
	a.Send(&wire.NativeEvent{Handle: h, Sequence: n, Targets: []wire.NodeID{3}, Payload: []byte("only c")})
	b.Send(&wire.NativeEvent{Handle: h, Sequence: 0, Payload: []byte("from b")})
	// Order holds per sender; a's and b's streams are independent.
	require.ElementsMatch(t, []string{"only c", "from b"}, []string{string(c.NextEvent().Payload), string(c.NextEvent().Payload)})
	require.Equal(t, "from b", string(a.NextEvent().Payload), "a receives b's event, never its own")
	select {
	case ev := <-b.Events:
		require.NotEqual(t, "only c", string(ev.Payload), "the targeted event skipped b")
	default:
	}
	select {
	case ev := <-a.Events:
		t.Fatalf("a got an echo: %q", ev.Payload)
	default:
	}
}

func TestNativeDatagrams(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	h := a.Join("u").Handle
	b.Join("u")
	// Datagrams may be lost even on loopback: resend until both arrive.
	got := map[string]bool{}
	require.Eventually(t, func() bool {
		_ = a.SendDatagram(&wire.NativeEvent{Handle: h, Sequence: 1, Payload: []byte("x")}, &wire.NativeEvent{Handle: h, Sequence: 2, Payload: []byte("y")})
		for {
			select {
			case ev := <-b.Datagrams:
				require.Equal(t, wire.NodeID(1), ev.Sender)
				got[string(ev.Payload)] = true
			default:
				return got["x"] && got["y"]
			}
		}
	}, testenv.Wait, 20*time.Millisecond)
	require.Positive(t, testutil.ToFloat64(s.metrics.eventsIn.WithLabelValues(unreliable)))
}

// datagramWriting reports whether c's datagram writer runs.
func datagramWriting(c *conn) bool {
	c.native.dgMu.Lock()
	defer c.native.dgMu.Unlock()
	return c.native.dgWriting
}

func TestNativeDatagramWriterOnDemand(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	h := a.Join("u").Handle
	b.Join("u")
	bc := s.node(2)
	require.NotNil(t, bc)
	require.False(t, datagramWriting(bc), "no writer before any datagram")

	got := false
	require.Eventually(t, func() bool {
		_ = a.SendDatagram(&wire.NativeEvent{Handle: h, Sequence: 1, Payload: []byte("x")})
		for {
			select {
			case ev := <-b.Datagrams:
				got = got || string(ev.Payload) == "x"
			default:
				return got
			}
		}
	}, testenv.Wait, 20*time.Millisecond, "the writer started on demand delivers")
	require.Eventually(t, func() bool { return !datagramWriting(bc) }, testenv.Wait, time.Millisecond,
		"the writer ends once the ring is empty")

	// After the session ends, frames are dropped and no writer starts.
	b.Close()
	require.Eventually(t, func() bool { return s.node(2) == nil }, testenv.Wait, time.Millisecond)
	before := testutil.ToFloat64(s.metrics.dropQueueClosed)
	bc.pushDatagram(wire.AppendMessage(nil, &wire.NativeEvent{Handle: h, Sequence: 2, Payload: []byte("late")}))
	require.False(t, datagramWriting(bc))
	require.Equal(t, before+1, testutil.ToFloat64(s.metrics.dropQueueClosed))
	// goleak (TestMain) checks that no writer outlived the test.
}

func TestNativeTokenAuth(t *testing.T) {
	const secret = "native-secret"
	s := newTestServer(t, func(c *Config) { c.Auth = AuthToken; c.Verifier = auth.NewTokenVerifier(secret, "", "") })
	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 1}, relaytest.NativeOptions{})
	require.Error(t, err, "no token")
	_, err = relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: "bad"}, relaytest.NativeOptions{})
	require.Error(t, err, "bad token")
	tok, err := auth.SignConnect(secret, "alice", time.Hour, time.Now())
	require.NoError(t, err)
	a := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: tok})
	a.Join("t")
	pres, err := s.hub.Presence(context.Background(), "relay:t")
	require.NoError(t, err)
	for _, info := range pres {
		require.Equal(t, "alice", info.UserID)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeUnauthorize)))
}

func TestNativeRoomLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxMembers = 2; c.MaxRooms = 1 })
	a, b, c := dialNative(t, s, 1), dialNative(t, s, 2), dialNative(t, s, 3)
	a.Join("r")
	b.Join("r")
	c.SendControl(&wire.Join{RequestID: 1, Room: "r"})
	require.Equal(t, wire.ErrCodeRoomFull, nextError(t, c).Code)
	a.SendControl(&wire.Join{RequestID: 2, Room: "other", Create: true})
	require.Equal(t, wire.ErrCodeTooManyRooms, nextError(t, a).Code)
	// A mixed room is refused: ISSUN clients use their own rooms.
	i := dialISSUN(t, s, 9)
	i.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "r"}.Append(nil)))
	ea, err := wire.DecodeErrorAnswer(i.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, wire.ErrCodeConflict, ea.Code)
}

func TestNativeShutdownSendsGoAway(t *testing.T) {
	s := newTestServer(t, nil)
	a := dialNative(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	g := a.Next().(*wire.GoAway)
	require.Equal(t, hub.DisconnectShutdown.Code, g.Code)
	require.Equal(t, "shutdown", g.Reason)
	require.Equal(t, uint32(1000), g.RetryAfterMillis)
}

func TestNativeHeartbeatsAndMisses(t *testing.T) {
	clk := clocktest.New(time.Unix(1_000_000, 0))
	s := newTestServer(t, func(c *Config) { c.Clock = clk })
	good := dialNative(t, s, 1)
	silent := relaytest.DialNativeOpts(t, s.Addr().String(), &wire.Hello{NodeID: 2}, relaytest.NativeOptions{NoAcks: true})
	goodConn := s.node(1)
	for i := range missedHeartbeats + 1 {
		require.Eventually(t, func() bool { return clk.Pending() >= 2 }, testenv.Wait, testenv.Tick, "both heartbeat timers armed")
		clk.Advance(DefaultHeartbeatInterval)
		require.Eventually(t, func() bool {
			n := goodConn.native
			n.hbMu.Lock()
			defer n.hbMu.Unlock()
			return n.hbSeq == uint64(i+1) && n.hbMissed == 0
		}, testenv.Wait, testenv.Tick, "heartbeat %d acknowledged", i+1)
	}
	g := silent.Next().(*wire.GoAway)
	require.Equal(t, hub.DisconnectNoPong.Code, g.Code)
	require.Eventually(t, func() bool { return s.NumConnections() == 1 }, testenv.Wait, testenv.Tick, "the acking client stays")
	// The client's own heartbeat is acknowledged.
	good.SendControl(&wire.Heartbeat{Seq: 77, SentMicros: 5})
	require.Equal(t, &wire.Ack{Seq: 77, SentMicros: 5}, good.Next())
}

func TestNativeBadControlFrame(t *testing.T) {
	s := newTestServer(t, nil)
	a := dialNative(t, s, 1)
	a.SendRawControl([]byte("garbage!"))
	g := a.Next().(*wire.GoAway)
	require.Equal(t, hub.DisconnectBadRequest.Code, g.Code)
	require.Contains(t, g.Reason, "bad magic")
	b := dialNative(t, s, 2)
	b.Join("fine")
}

func TestNativeSlowConsumer(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.EventRate = -1; c.QueueLimit = 128 << 10; c.WriteTimeout = time.Second })
	a := dialNative(t, s, 1)
	slow := relaytest.DialNativeOpts(t, s.Addr().String(), &wire.Hello{NodeID: 2}, relaytest.NativeOptions{NoEvents: true})
	fast := dialNative(t, s, 3)
	h := a.Join("r").Handle
	slow.Join("r")
	fast.Join("r")
	payload := []byte(strings.Repeat("z", 4000))
	// 2.4 MB, paced by the fast member (16 events in flight): beyond the
	// slow reader's flow-control window (512 KiB) and queue.
	const n = 600
	for i := range n {
		a.Send(&wire.NativeEvent{Handle: h, Sequence: uint64(i), Payload: payload})
		if i >= 16 {
			require.Equal(t, uint64(i-16), fast.NextEvent().Sequence, "the fast member is never stalled")
		}
	}
	for i := n - 16; i < n; i++ {
		require.Equal(t, uint64(i), fast.NextEvent().Sequence)
	}
	var g *wire.GoAway
	for g == nil {
		if m, ok := slow.Next().(*wire.GoAway); ok {
			g = m
		}
	}
	require.Equal(t, hub.DisconnectSlow.Code, g.Code)
}

func TestNativeResumeWithinGrace(t *testing.T) {
	clk := clocktest.New(time.Unix(1_000_000, 0))
	s := newTestServer(t, func(c *Config) { c.Clock = clk; c.HeartbeatInterval = time.Hour; c.ResumeGrace = 20 * time.Second })
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	token := a.Welcome.ResumeToken
	require.Len(t, token, 32)
	h := a.Join("r").Handle
	b.Join("r")
	a.Next() // b's join

	require.NoError(t, a.QC.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)
	pres, err := s.hub.Presence(context.Background(), "relay:r")
	require.NoError(t, err)
	require.Len(t, pres, 2, "the lost member is still present")

	_, err = relaytest.TryNative(t, s.Addr().String(), &wire.Hello{ResumeToken: "nope"}, relaytest.NativeOptions{})
	require.Error(t, err, "an unknown token is refused")

	a2 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{ResumeToken: token})
	require.True(t, a2.Welcome.Resumed)
	require.Equal(t, wire.NodeID(1), a2.Welcome.NodeID)
	require.Equal(t, a.Welcome.SessionID, a2.Welcome.SessionID)
	j := a2.Next().(*wire.Joined)
	require.Equal(t, h, j.Handle)
	require.Len(t, j.Members, 2)
	b.Send(&wire.NativeEvent{Handle: h, Payload: []byte("welcome back")})
	require.Equal(t, "welcome back", string(a2.NextEvent().Payload))
	a2.Send(&wire.NativeEvent{Handle: h, Payload: []byte("thanks")})
	ev := b.NextEvent()
	require.Equal(t, "thanks", string(ev.Payload))
	require.Equal(t, wire.NodeID(1), ev.Sender)
	quiet(t, b, "b") // nothing while a was away

	// Lost again and not back in time: the others see it leave.
	require.NoError(t, a2.QC.CloseWithError(1, "lost again"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)
	clk.Advance(20 * time.Second)
	p := b.Next().(*wire.Presence)
	require.Equal(t, []wire.NodeID{1}, p.Leaves)
	require.Zero(t, testutil.ToFloat64(s.metrics.parked))
	require.Eventually(t, func() bool {
		pres, err := s.hub.Presence(context.Background(), "relay:r")
		return err == nil && len(pres) == 1
	}, testenv.Wait, testenv.Tick)
	// Its NodeId is free again.
	dialNative(t, s, 1)
}

func TestNativeNormalCloseLeavesAtOnce(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	a.Join("r")
	b.Join("r")
	require.NoError(t, a.QC.CloseWithError(0, ""))
	p := b.Next().(*wire.Presence)
	require.Equal(t, []wire.NodeID{1}, p.Leaves)
}

func TestTokenExpiryCloses(t *testing.T) {
	const secret = "exp-secret"
	clk := clocktest.New(time.Now())
	s := newTestServer(t, func(c *Config) {
		c.Clock = clk
		c.HeartbeatInterval = time.Hour
		c.Verifier = auth.NewTokenVerifier(secret, "", "")
	})
	tok, err := auth.SignConnect(secret, "bob", time.Minute, time.Now())
	require.NoError(t, err)
	n := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: tok})
	i := dialISSUN(t, s, 2)
	i.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: tok}.Append(nil)))
	require.Equal(t, game("SwitchboardWelcome"), i.Next().TypeName)
	require.Eventually(t, func() bool { return clk.Pending() >= 2 }, testenv.Wait, testenv.Tick)
	clk.Advance(2 * time.Minute)
	g := n.Next().(*wire.GoAway)
	require.Equal(t, hub.DisconnectExpired.Code, g.Code)
	ae := i.ClosedWith()
	require.Equal(t, uint64(hub.DisconnectExpired.Code), uint64(ae.ErrorCode))
}

// A fresh HELLO (no resume token) with the NodeId of a parked session of
// the same user ends that session (the others see it leave) and gets the
// NodeId; another user's parked session keeps it.
func TestNativeFreshHelloEndsOwnParkedSession(t *testing.T) {
	const secret = "fresh-secret"
	s := newTestServer(t, func(c *Config) { c.Verifier = auth.NewTokenVerifier(secret, "", "") })
	sign := func(user string) string {
		tok, err := auth.SignConnect(secret, user, time.Hour, time.Now())
		require.NoError(t, err)
		return tok
	}
	a := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: sign("bob")})
	b := dialNative(t, s, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	require.NoError(t, a.QC.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)

	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: sign("alice")}, relaytest.NativeOptions{})
	require.Error(t, err, "another user's parked session keeps its NodeId")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.parked))

	a2 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: sign("bob")})
	require.False(t, a2.Welcome.Resumed)
	require.Equal(t, wire.NodeID(1), a2.Welcome.NodeID)
	require.Equal(t, []wire.NodeID{1}, nextPresence(t, b).Leaves)
	require.Zero(t, testutil.ToFloat64(s.metrics.parked))
}

// An anonymous parked session is reachable only through its resume
// token: a fresh anonymous HELLO with its NodeId is refused (3501) and
// the session stays parked, its members seeing nothing.
func TestNativeFreshAnonymousHelloKeepsParkedSession(t *testing.T) {
	s := newTestServer(t, nil)
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	require.NoError(t, a.QC.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)

	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 1}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.parked), "still parked")
	a2 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed, "the token still resumes it")
	require.Equal(t, wire.NodeID(1), a2.Welcome.NodeID)
}
