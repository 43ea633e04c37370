package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testServer struct {
	*Server
	reg *prometheus.Registry
	hub *hub.Hub
	log *testenv.Buffer
}

// newTestServer starts a relay on 127.0.0.1:0 with a hub on the memory
// engine whose "relay" namespace keeps presence.
func newTestServer(t testing.TB, mod func(*Config)) *testServer {
	t.Helper()
	return startTestServer(t, hub.Config{Broker: memory.New(time.Now), Presence: memory.NewPresence()}, false, mod)
}

// startTestServer starts a relay on a hub of hc's broker and presence
// (with the relay namespace), carrying rooms across processes over the
// hub's topics when bus; mod adjusts the relay's configuration.
func startTestServer(t testing.TB, hc hub.Config, bus bool, mod func(*Config)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	hc.Namespaces = hub.Namespaces{Named: map[string]hub.ChannelOptions{"relay": {Presence: true, JoinLeave: true}}}
	h, err := hub.New(hc)
	require.NoError(t, err)
	pool, err := delivery.NewPool(delivery.Config{Registerer: reg})
	require.NoError(t, err)
	cfg := Config{Address: "127.0.0.1:0", Pool: pool, Presence: h, Sessions: h, Registerer: reg}
	if bus {
		cfg.Bus = h.Topics()
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
		pool.Close()
		require.NoError(t, h.Shutdown(ctx))
	})
	return &testServer{Server: s, reg: reg, hub: h}
}

func dialQUIC(t *testing.T, addr string, protos []string) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	return relaytest.DialQUIC(ctx, addr, protos)
}

func dialISSUN(t *testing.T, s *testServer, id wire.NodeID) *relaytest.ISSUN {
	t.Helper()
	c := relaytest.DialISSUN(t, s.Addr().String(), id)
	if s.cfg.Auth == AuthNone {
		// The client cannot see it: the relay puts it in the lobby just
		// after the echo, so a broadcast sent at once could miss it.
		require.Eventually(t, func() bool {
			sc := s.node(id)
			return sc != nil && s.inLobby(sc)
		}, testenv.Wait, testenv.Tick, "%d in the lobby", id)
	}
	return c
}

func tryISSUN(t *testing.T, s *testServer, id wire.NodeID) (*relaytest.ISSUN, error) {
	return relaytest.TryISSUN(t, s.Addr().String(), id)
}

func game(name string) string { return "multiplayer_pong::" + name }

func event(scope wire.Scope, seq uint64, payload string) *wire.Event {
	return &wire.Event{Metadata: wire.Metadata{Sender: 999, Timestamp: 1700000000000, Sequence: seq},
		Scope: scope, TypeName: game("PaddleMove"), Payload: []byte(payload)}
}

var broadcast = wire.Scope{Kind: wire.ScopeBroadcast}

func control(suffix string, payload []byte) *wire.Event {
	return &wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "multiplayer_pong" + suffix, Payload: payload}
}

func TestISSUNHandshakeEcho(t *testing.T) {
	s := newTestServer(t, nil)
	c := dialISSUN(t, s, 0x0102030405060708)
	require.Equal(t, c.ID, c.Echo, "the NodeId is echoed on the server's first stream")
	require.Empty(t, c.QC.ConnectionState().TLS.NegotiatedProtocol, "no ALPN")
	require.Eventually(t, func() bool { return s.NumConnections() == 1 }, testenv.Wait, testenv.Tick)
	// Counted once the echo's write returned: possibly after the client read it.
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeOK)) == 1
	}, testenv.Wait, testenv.Tick)
}

// The origin relay sent every event on one long-lived stream, so ISSUN
// clients (one frame per stream) got about one; here every event arrives,
// in order.
func TestISSUNThousandEventsInOrder(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.EventRate = -1 })
	a := dialISSUN(t, s, 1)
	b := dialISSUN(t, s, 2)
	const n = 1000
	go func() {
		for i := range n {
			if err := a.SendRaw(wire.AppendEventFrame(nil, event(broadcast, uint64(i), "x"))); err != nil {
				return
			}
		}
	}()
	for i := range n {
		ev := b.Next()
		require.Equal(t, uint64(i), ev.Metadata.Sequence, "event %d in order", i)
		require.Equal(t, wire.NodeID(1), ev.Metadata.Sender)
	}
	select {
	case ev := <-a.Events:
		t.Fatalf("the sender got its own event back: %+v", ev)
	default:
	}
}

func TestISSUNSenderRewrittenAndTargeted(t *testing.T) {
	s := newTestServer(t, nil)
	a, b, c := dialISSUN(t, s, 10), dialISSUN(t, s, 20), dialISSUN(t, s, 30)
	ev := event(wire.Scope{Kind: wire.ScopeTargeted, Target: 30}, 1, "secret")
	ev.Metadata.Sender = 20 // spoofing b
	a.Send(ev)
	got := c.Next()
	require.Equal(t, wire.NodeID(10), got.Metadata.Sender, "sender rewritten with the handshake NodeId")
	require.Equal(t, wire.Scope{Kind: wire.ScopeTargeted, Target: 30}, got.Scope)
	require.Equal(t, "secret", string(got.Payload))
	require.Equal(t, game("PaddleMove"), got.TypeName)

	// Broadcast reaches b and c, not the sender; the unknown target is dropped.
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, 2, "lost"))
	a.Send(event(broadcast, 3, "all"))
	require.Equal(t, "all", string(b.Next().Payload))
	require.Equal(t, "all", string(c.Next().Payload))
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropUnknownTarget)))
}

func TestISSUNDuplicateNodeRefused(t *testing.T) {
	s := newTestServer(t, nil)
	a := dialISSUN(t, s, 5)
	_, err := tryISSUN(t, s, 5)
	require.Error(t, err)
	var ae *quic.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectBadRequest.Code), ae.ErrorCode)
	require.Equal(t, "node id already connected", ae.ErrorMessage)
	// The first connection is unaffected.
	b := dialISSUN(t, s, 6)
	b.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 5}, 1, "still here"))
	require.Equal(t, "still here", string(a.Next().Payload))
}

func TestISSUNBadInputClosesClearly(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxFrame = 1024 })
	good := wire.AppendEventFrame(nil, event(broadcast, 1, "ok"))
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"oversize frame", wire.AppendEventFrame(nil, event(broadcast, 1, strings.Repeat("x", 2000))), "exceeds the frame cap of 1024"},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"wrong version", mod(func(b []byte) []byte { b[2] = 2; return b }), "unsupported version: version 2, want 1"},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), "bad magic"},
		{"4 GiB length", mod(func(b []byte) []byte { b[4], b[5], b[6], b[7] = 0xff, 0xff, 0xff, 0xff; return b }), "4294967295 bytes exceeds"},
		{"truncated", good[:20], "truncated"},
		{"bad event body", mod(func(b []byte) []byte { b[8+24] = 9; return b }), "unknown variant 9"},
	}
	peer := dialISSUN(t, s, 1000)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := dialISSUN(t, s, wire.NodeID(100+i))
			require.NoError(t, cl.SendRaw(c.frame))
			ae := cl.ClosedWith()
			require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectBadRequest.Code), ae.ErrorCode)
			require.Contains(t, ae.ErrorMessage, c.reason)
		})
	}
	// The server is unaffected.
	other := dialISSUN(t, s, 2000)
	other.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 1000}, 1, "fine"))
	require.Equal(t, "fine", string(peer.Next().Payload))
}

func TestISSUNBadHandshake(t *testing.T) {
	s := newTestServer(t, nil)
	for _, hs := range [][]byte{{1, 2, 3}, make([]byte, 8), make([]byte, 12)} {
		qc, err := dialQUIC(t, s.Addr().String(), nil)
		require.NoError(t, err)
		st, err := qc.OpenUniStream()
		require.NoError(t, err)
		if len(hs) == 12 {
			hs[0] = 1
		}
		_, _ = st.Write(hs)
		require.NoError(t, st.Close())
		<-qc.Context().Done()
		var ae *quic.ApplicationError
		require.ErrorAs(t, context.Cause(qc.Context()), &ae)
		require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectBadRequest.Code), ae.ErrorCode)
		require.Contains(t, ae.ErrorMessage, "bad handshake")
	}
	require.Equal(t, 3.0, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeBad)))
}

func TestISSUNFloodDropsThenDisconnects(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.EventRate, c.EventBurst = 10, 20 })
	flood := dialISSUN(t, s, 1)
	victim := dialISSUN(t, s, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			if flood.SendRaw(wire.AppendEventFrame(nil, event(broadcast, uint64(i), "spam"))) != nil {
				return
			}
		}
	}()
	ae := flood.ClosedWith()
	wg.Wait()
	require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectTooManyRequests.Code), ae.ErrorCode)
	require.Equal(t, "too many requests", ae.ErrorMessage)
	require.Positive(t, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropRateLimited)))
	// The burst went through; the rest was dropped.
	for range 20 {
		victim.Next()
	}
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.disconnects.WithLabelValues("rate_limited")))
	// The server still relays.
	a := dialISSUN(t, s, 3)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 1, "after"))
	for ev := victim.Next(); string(ev.Payload) != "after"; ev = victim.Next() {
	}
}

func TestISSUNMaxClientsRefusedBeforeHandshake(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxClients = 1 })
	dialISSUN(t, s, 1)
	_, err := dialQUIC(t, s.Addr().String(), nil)
	require.Error(t, err, "the handshake is refused")
	var te *quic.TransportError
	require.ErrorAs(t, err, &te)
	require.Positive(t, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeFull)))
}

func TestISSUNRoomsAndPresence(t *testing.T) {
	s := newTestServer(t, nil)
	a, b, c := dialISSUN(t, s, 1), dialISSUN(t, s, 2), dialISSUN(t, s, 3)

	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match-1"}.Append(nil)))
	ans := a.Next()
	require.Equal(t, "multiplayer_pong::SwitchboardJoined", ans.TypeName)
	require.Equal(t, wire.NodeID(0), ans.Metadata.Sender, "from the relay")
	ra, err := wire.DecodeRoomAnswer(ans.Payload)
	require.NoError(t, err)
	require.Equal(t, wire.RoomAnswer{Room: "match-1", Members: []wire.NodeID{1}}, ra)

	b.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match-1"}.Append(nil)))
	ra, err = wire.DecodeRoomAnswer(b.Next().Payload)
	require.NoError(t, err)
	require.ElementsMatch(t, []wire.NodeID{1, 2}, ra.Members)
	p := a.Next()
	require.Equal(t, "multiplayer_pong::SwitchboardPresence", p.TypeName)
	pa, err := wire.DecodePresenceAnswer(p.Payload)
	require.NoError(t, err)
	require.Equal(t, wire.PresenceAnswer{Room: "match-1", Joined: []wire.NodeID{2}}, pa)

	// Hub presence of relay:match-1 lists both players.
	pres, err := s.hub.Presence(context.Background(), "relay:match-1")
	require.NoError(t, err)
	require.Len(t, pres, 2)
	for _, info := range pres {
		require.Contains(t, string(info.ChanInfo), `"transport":"quic-issun"`)
	}

	// Room broadcast reaches the room only; c (in no room) broadcasts to the lobby only.
	a.Send(event(broadcast, 1, "in room"))
	require.Equal(t, "in room", string(b.Next().Payload))
	c.Send(event(broadcast, 2, "lobby"))
	// c's streams are handled in order: once its next request is answered,
	// "lobby" went out (to the lobby, which b is not in).
	c.Send(control(wire.SuffixLeave, wire.RoomRequest{Room: "nowhere"}.Append(nil)))
	require.Equal(t, "multiplayer_pong::SwitchboardError", c.Next().TypeName)
	a.Send(event(broadcast, 3, "in room 2"))
	require.Equal(t, "in room 2", string(b.Next().Payload), "the lobby event did not reach the room")
	select {
	case ev := <-c.Events:
		t.Fatalf("c outside the room got %q", ev.Payload)
	default:
	}

	b.Send(control(wire.SuffixLeave, wire.RoomRequest{Room: "match-1"}.Append(nil)))
	require.Equal(t, "multiplayer_pong::SwitchboardLeft", b.Next().TypeName)
	pa, err = wire.DecodePresenceAnswer(a.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, []wire.NodeID{2}, pa.Left)
	c.Send(event(broadcast, 4, "lobby again"))
	require.Equal(t, "lobby again", string(b.Next().Payload), "b is back in the lobby")

	b.Send(control(wire.SuffixLeave, wire.RoomRequest{Room: "match-1"}.Append(nil)))
	e := b.Next()
	require.Equal(t, "multiplayer_pong::SwitchboardError", e.TypeName)
	ea, err := wire.DecodeErrorAnswer(e.Payload)
	require.NoError(t, err)
	require.Equal(t, wire.ErrCodeNotInRoom, ea.Code)

	a.Close()
	require.Eventually(t, func() bool {
		pres, err := s.hub.Presence(context.Background(), "relay:match-1")
		return err == nil && len(pres) == 0
	}, testenv.Wait, testenv.Tick, "presence removed when the last player goes")
	require.Empty(t, s.Rooms())
}

func TestISSUNRoomFull(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxMembers = 1 })
	a, b := dialISSUN(t, s, 1), dialISSUN(t, s, 2)
	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "solo"}.Append(nil)))
	require.Equal(t, game("SwitchboardJoined"), a.Next().TypeName)
	b.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "solo"}.Append(nil)))
	ea, err := wire.DecodeErrorAnswer(b.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, wire.ErrorAnswer{Code: wire.ErrCodeRoomFull, Message: "room full"}, ea)
}

func TestISSUNTokenAuth(t *testing.T) {
	const secret = "relay-test-secret"
	s := newTestServer(t, func(c *Config) { c.Auth = AuthToken; c.Verifier = auth.NewTokenVerifier(secret, "", "") })
	a, b := dialISSUN(t, s, 1), dialISSUN(t, s, 2)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 1, "before auth"))
	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "r"}.Append(nil)))
	ea, err := wire.DecodeErrorAnswer(a.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, wire.ErrCodeUnauthorized, ea.Code)

	a.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: "garbage"}.Append(nil)))
	ea, err = wire.DecodeErrorAnswer(a.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, wire.ErrCodeUnauthorized, ea.Code)

	for _, c := range []*relaytest.ISSUN{a, b} {
		tok, err := auth.SignConnect(secret, "user-"+string(rune('0'+c.ID)), time.Hour, time.Now())
		require.NoError(t, err)
		c.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: tok}.Append(nil)))
		w := c.Next()
		require.Equal(t, game("SwitchboardWelcome"), w.TypeName)
		aa, err := wire.DecodeAuthAnswer(w.Payload)
		require.NoError(t, err)
		require.Equal(t, wire.AuthAnswer{NodeID: c.ID, User: "user-" + string(rune('0'+c.ID))}, aa)
	}
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 2, "after auth"))
	require.Equal(t, "after auth", string(b.Next().Payload), "the event before auth was not relayed")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropUnauthenticated)))

	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "r"}.Append(nil)))
	a.Next()
	pres, err := s.hub.Presence(context.Background(), "relay:r")
	require.NoError(t, err)
	for _, info := range pres {
		require.Equal(t, "user-1", info.UserID)
	}
}

func TestISSUNSlowReceiverDisconnected(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.EventRate = -1; c.QueueLimit = 1 << 20; c.WriteTimeout = 2 * time.Second })
	sender := dialISSUN(t, s, 1)
	fast := dialISSUN(t, s, 2)
	// A receiver that never accepts streams: its stream credit runs out
	// and its queue fills.
	slowQC, err := dialQUIC(t, s.Addr().String(), nil)
	require.NoError(t, err)
	defer slowQC.CloseWithError(0, "")
	st, err := slowQC.OpenUniStream()
	require.NoError(t, err)
	_, _ = st.Write([]byte{3, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, st.Close())
	require.Eventually(t, func() bool { return s.NumConnections() == 3 }, testenv.Wait, testenv.Tick)

	payload := strings.Repeat("p", 1000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 400 {
			if sender.SendRaw(wire.AppendEventFrame(nil, event(broadcast, uint64(i), payload))) != nil {
				return
			}
		}
	}()
	for i := range 400 {
		require.Equal(t, uint64(i), fast.Next().Metadata.Sequence, "the fast receiver is not stalled")
	}
	wg.Wait()
	select {
	case <-slowQC.Context().Done():
	case <-time.After(testenv.Wait):
		t.Fatal("the slow receiver was not disconnected")
	}
	var ae *quic.ApplicationError
	require.ErrorAs(t, context.Cause(slowQC.Context()), &ae)
	require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectSlow.Code), ae.ErrorCode, "slow consumer")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.disconnects.WithLabelValues("slow_consumer")))
}

func TestShutdownClosesConnections(t *testing.T) {
	s := newTestServer(t, nil)
	a := dialISSUN(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	ae := a.ClosedWith()
	require.Equal(t, quic.ApplicationErrorCode(hub.DisconnectShutdown.Code), ae.ErrorCode)
	require.NoError(t, s.Shutdown(ctx), "idempotent")
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	_, err := quic.DialAddr(dctx, s.Addr().String(), &tls.Config{InsecureSkipVerify: true}, nil)
	require.Error(t, err, "nothing listens any more")
	require.False(t, errors.Is(err, context.Canceled))
}

func TestMaxClientsPerIP(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxClientsPerIP = 2 })
	a := dialISSUN(t, s, 1)
	dialISSUN(t, s, 2)
	_, err := dialQUIC(t, s.Addr().String(), nil)
	require.Error(t, err, "a third connection from 127.0.0.1 is refused")
	require.Positive(t, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeIPLimit)))
	a.Close()
	require.Eventually(t, func() bool { return s.ipCount(s.Addr()) < 2 }, testenv.Wait, testenv.Tick)
	dialISSUN(t, s, 3)
}
