package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	clientrelay "github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

const sessionSecret = "session-secret"

func sessionServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	return newTestServer(t, func(c *Config) {
		c.Verifier = auth.NewTokenVerifier(sessionSecret, "", "")
		c.HeartbeatInterval = time.Hour
		if mod != nil {
			mod(c)
		}
	})
}

func userToken(t *testing.T, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.SignConnect(sessionSecret, user, ttl, time.Now())
	require.NoError(t, err)
	return tok
}

// issunAs connects an ISSUN client and authenticates it as user.
func issunAs(t *testing.T, s *testServer, id wire.NodeID, user string) *relaytest.ISSUN {
	t.Helper()
	c := dialISSUN(t, s, id)
	c.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: userToken(t, user, time.Hour)}.Append(nil)))
	require.Equal(t, game("SwitchboardWelcome"), c.Next().TypeName)
	return c
}

func nextGoAway(t *testing.T, c *relaytest.Native) *wire.GoAway {
	t.Helper()
	return nextSkippingPresence[*wire.GoAway](t, c, "GOAWAY")
}

// requireResumeRefused dials with token and asserts the relay refuses to
// resume: an ERROR (not found) or, when the close overtook it, the close
// "cannot resume".
func requireResumeRefused(t *testing.T, s *testServer, token, user string) {
	t.Helper()
	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{ResumeToken: token, Token: userToken(t, user, time.Hour)},
		relaytest.NativeOptions{})
	var refused *relaytest.ErrRefused
	if errors.As(err, &refused) {
		require.Equal(t, wire.ErrCodeNotFound, refused.Err.Code)
		return
	}
	var ae *quic.ApplicationError
	require.ErrorAs(t, err, &ae, "the resume is refused")
	require.Equal(t, uint64(closeResume.Code), uint64(ae.ErrorCode))
	require.Equal(t, closeResume.Reason, ae.ErrorMessage)
}

func sessionIDs(h *hub.Hub, user string) []string {
	var out []string
	for _, s := range h.UserSessions(user, "") {
		out = append(out, s.ID())
	}
	return out
}

func TestRelaySessionsAreInTheHubIndex(t *testing.T) {
	s := sessionServer(t, nil)
	n := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Hour)})
	require.Equal(t, []string{n.Welcome.SessionID}, sessionIDs(s.hub, "alice"))

	// An ISSUN connection is anonymous until it authenticates.
	i := dialISSUN(t, s, 2)
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "")) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, 2, s.hub.NumClients(), "the hub counts relay connections")
	i.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: userToken(t, "alice", time.Hour)}.Append(nil)))
	require.Equal(t, game("SwitchboardWelcome"), i.Next().TypeName)
	require.Empty(t, sessionIDs(s.hub, ""))
	require.Len(t, sessionIDs(s.hub, "alice"), 2)
	require.Equal(t, 2, s.hub.NumClients())

	n.Close()
	i.Close()
	require.Eventually(t, func() bool { return s.hub.NumClients() == 0 }, testenv.Wait, testenv.Tick, "closed connections leave the index")
}

func TestDisconnectUserClosesRelayConnections(t *testing.T) {
	s := sessionServer(t, nil)
	n := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Hour)})
	n.Join("arena")
	i := issunAs(t, s, 2, "alice")
	bob := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 3, Token: userToken(t, "bob", time.Hour)})
	bob.Join("arena")

	ban := hub.Disconnect{Code: 4001, Reason: "banned"}
	require.NoError(t, s.hub.DisconnectUser(context.Background(), "alice", "", ban, nil))

	g := nextGoAway(t, n)
	require.Equal(t, wire.GoAway{Code: 4001, Reason: "banned"}, *g, "no retry: 4001 does not reconnect")
	ae := i.ClosedWith()
	require.Equal(t, uint64(4001), uint64(ae.ErrorCode))
	require.Equal(t, "banned", ae.ErrorMessage)
	p := bob.Next().(*wire.Presence)
	require.Equal(t, []wire.NodeID{1}, p.Leaves, "alice left the room at once")
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "alice")) == 0 }, testenv.Wait, testenv.Tick)

	requireResumeRefused(t, s, n.Welcome.ResumeToken, "alice")
	require.Equal(t, 2.0, testutil.ToFloat64(s.metrics.disconnects.WithLabelValues("other")), "both of alice's connections")
	require.Zero(t, testutil.ToFloat64(s.metrics.parked))
	select {
	case m := <-bob.Control:
		t.Fatalf("bob got %s", m.FrameType())
	default:
	}
}

func TestDisconnectOneRelaySessionAndWhitelist(t *testing.T) {
	s := sessionServer(t, nil)
	n1 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Hour)})
	n2 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 2, Token: userToken(t, "alice", time.Hour)})
	n3 := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 3, Token: userToken(t, "alice", time.Hour)})
	ctx := context.Background()

	require.NoError(t, s.hub.DisconnectUser(ctx, "alice", n1.Welcome.SessionID, hub.DisconnectForceReconnect, nil))
	g := nextGoAway(t, n1)
	require.Equal(t, hub.DisconnectForceReconnect.Code, g.Code)
	require.Equal(t, uint32(1000), g.RetryAfterMillis, "3011 may reconnect")

	require.NoError(t, s.hub.DisconnectUser(ctx, "alice", "", hub.DisconnectForceNoReconnect, []string{n3.Welcome.SessionID}))
	require.Equal(t, hub.DisconnectForceNoReconnect.Code, nextGoAway(t, n2).Code)
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "alice")) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, []string{n3.Welcome.SessionID}, sessionIDs(s.hub, "alice"), "the whitelisted session stays")
	select {
	case m := <-n3.Control:
		t.Fatalf("the whitelisted session got %s", m.FrameType())
	default:
	}
}

func TestDisconnectUserEndsAParkedSession(t *testing.T) {
	s := sessionServer(t, func(c *Config) { c.ResumeGrace = time.Hour })
	a := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Hour)})
	b := dialNative(t, s, 2)
	a.Join("r")
	b.Join("r")
	a.Next() // b's join
	require.NoError(t, a.QC.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, []string{a.Welcome.SessionID}, sessionIDs(s.hub, "alice"), "a parked session stays in the index")

	require.NoError(t, s.hub.DisconnectUser(context.Background(), "alice", "", hub.DisconnectForceNoReconnect, nil))
	p := b.Next().(*wire.Presence)
	require.Equal(t, []wire.NodeID{1}, p.Leaves, "the others see it leave now, not after the window")
	require.Zero(t, testutil.ToFloat64(s.metrics.parked))
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "alice")) == 0 }, testenv.Wait, testenv.Tick)
	require.Eventually(t, func() bool {
		pres, err := s.hub.Presence(context.Background(), "relay:r")
		return err == nil && len(pres) == 1
	}, testenv.Wait, testenv.Tick)
	requireResumeRefused(t, s, a.Welcome.ResumeToken, "alice")
}

func TestServerAPIDisconnectIsNeverParked(t *testing.T) {
	// 3012 "no pong" is the one close by the server that parks; sent by
	// the server API, to a client that does not leave on GOAWAY but drops
	// the connection (non-zero code) as a lost one does, it still ends
	// the session.
	s := sessionServer(t, func(c *Config) { c.ResumeGrace = time.Hour })
	qc, err := dialQUIC(t, s.Addr().String(), []string{wire.ALPNNative})
	require.NoError(t, err)
	defer qc.CloseWithError(0, "")
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	ctl, err := qc.OpenStreamSync(ctx)
	require.NoError(t, err)
	_ = ctl.SetDeadline(time.Now().Add(testenv.Wait))
	read := func() wire.Message {
		h, body, err := wire.ReadFrame(ctl, wire.VersionNative, 1<<20, nil)
		require.NoError(t, err)
		m, err := wire.DecodeMessage(h.Type, body)
		require.NoError(t, err)
		return m
	}
	_, err = ctl.Write(wire.AppendMessage(nil, &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Hour)}))
	require.NoError(t, err)
	w := read().(*wire.Welcome)
	_, err = ctl.Write(wire.AppendMessage(nil, &wire.Join{RequestID: 1, Room: "r", Create: true}))
	require.NoError(t, err)
	require.IsType(t, &wire.Joined{}, read())

	require.NoError(t, s.hub.DisconnectUser(ctx, "alice", "", closeNoPong, nil))
	g := read().(*wire.GoAway)
	require.Equal(t, closeNoPong.Code, g.Code)
	require.NoError(t, qc.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "alice")) == 0 }, testenv.Wait, testenv.Tick)
	require.Zero(t, testutil.ToFloat64(s.metrics.parked))
	requireResumeRefused(t, s, w.ResumeToken, "alice")
}

func TestRefreshUserMovesOrEndsRelayExpiry(t *testing.T) {
	clk := clocktest.New(time.Now())
	s := sessionServer(t, func(c *Config) { c.Clock = clk })
	n := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{NodeID: 1, Token: userToken(t, "alice", time.Minute)})
	i := issunAs(t, s, 2, "alice")
	ctx := context.Background()

	later := clk.Now().Add(time.Hour).Unix()
	require.NoError(t, s.hub.RefreshUser(ctx, "alice", "", later, false, []byte(`{"level":2}`)))
	clk.Advance(2 * time.Minute) // past the token's own expiry
	n.Join("r")
	pres, err := s.hub.Presence(ctx, "relay:r")
	require.NoError(t, err)
	require.Len(t, pres, 1)
	for _, info := range pres {
		require.JSONEq(t, `{"level":2}`, string(info.ConnInfo), "refreshed connection info")
	}

	require.NoError(t, s.hub.RefreshUser(ctx, "alice", "", 0, true, nil))
	g := nextGoAway(t, n)
	require.Equal(t, hub.DisconnectExpired.Code, g.Code)
	ae := i.ClosedWith()
	require.Equal(t, uint64(hub.DisconnectExpired.Code), uint64(ae.ErrorCode))
}

// A native session over WebTransport is disconnected the same way.
func TestDisconnectUserClosesWebTransportSessions(t *testing.T) {
	s := sessionServer(t, nil)
	c, err := dialWT(t, s, clientrelay.Options{Token: userToken(t, "erin", time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []string{c.SessionID()}, sessionIDs(s.hub, "erin"))
	require.NoError(t, s.hub.DisconnectUser(context.Background(), "erin", c.SessionID(), hub.Disconnect{Code: 4003, Reason: "kicked"}, nil))
	select {
	case <-c.Done():
	case <-time.After(testenv.Wait):
		t.Fatal("not disconnected")
	}
	var g *clientrelay.GoAwayError
	require.ErrorAs(t, c.Err(), &g)
	require.Equal(t, wire.GoAway{Code: 4003, Reason: "kicked"}, g.GoAway)
	require.Eventually(t, func() bool { return len(sessionIDs(s.hub, "erin")) == 0 }, testenv.Wait, testenv.Tick)
}
