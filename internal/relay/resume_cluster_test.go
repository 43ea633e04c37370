package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// refusal checks that err refuses a HELLO with code (when the ERROR
// arrived before the connection closed) or with the QUIC close d.
func refusal(t *testing.T, err error, code wire.ErrorCode, d hub.Disconnect) {
	t.Helper()
	var r *relaytest.ErrRefused
	if errors.As(err, &r) {
		require.Equal(t, code, r.Err.Code, r.Err.Message)
		return
	}
	var ae *quic.ApplicationError
	require.True(t, errors.As(err, &ae), "refused: %v", err)
	require.Equal(t, uint64(d.Code), uint64(ae.ErrorCode))
}

// quietSeq numbers the barriers of quiet.
var quietSeq atomic.Uint64

// quiet fails when c got a control message (PRESENCE news, ...) before
// the answer to a HEARTBEAT it sends now: a barrier through c's control
// queue, in which the relay queues its news in order.
func quiet(t *testing.T, c *relaytest.Native, who string) {
	t.Helper()
	seq := 1<<40 + quietSeq.Add(1)
	c.SendControl(&wire.Heartbeat{Seq: seq})
	m := c.Next()
	a, ok := m.(*wire.Ack)
	require.True(t, ok, "%s got %s before the barrier", who, m.FrameType())
	require.Equal(t, seq, a.Seq, "%s: the barrier's ACK", who)
}

// noControl is quiet for each of ms, by name.
func noControl(t *testing.T, ms map[string]*relaytest.Native) {
	t.Helper()
	for name, m := range ms {
		quiet(t, m, name)
	}
}

// roomPresence returns the hub presence of room by session id.
func roomPresence(t *testing.T, s *testServer, room string) map[string]presenceEntry {
	t.Helper()
	pres, err := s.hub.Presence(context.Background(), ChannelPrefix+room)
	require.NoError(t, err)
	out := map[string]presenceEntry{}
	for sid, info := range pres {
		var e presenceEntry
		require.NoError(t, json.Unmarshal(info.ChanInfo, &e))
		out[sid] = e
	}
	return out
}

func parkedCount(s *testServer) float64 { return testutil.ToFloat64(s.metrics.parked) }

// lose drops c's connection as a network loss does (the relay parks it).
func lose(t *testing.T, c *relaytest.Native, s *testServer) {
	t.Helper()
	before := parkedCount(s)
	require.NoError(t, c.QC.CloseWithError(1, "network lost"))
	require.Eventually(t, func() bool { return parkedCount(s) == before+1 }, testenv.Wait, testenv.Tick)
}

// A session parked on s1 resumes on s2: nobody on any process sees it
// leave or join, events flow both ways, the hub presence moves to s2, and
// its final leave is seen once everywhere.
func TestClusterResumeOnAnotherProcess(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	s3 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s1, 2)
	c, d := dialNative(t, s2, 3), dialNative(t, s3, 4)
	token := a.Welcome.ResumeToken
	origin, ok := tokenOrigin(token)
	require.True(t, ok)
	require.Equal(t, s1.cluster.origin, origin, "the token names its process")

	h := a.Join("arena").Handle
	b.Join("arena")
	a.AwaitJoin(2)
	c.Join("arena")
	a.AwaitJoin(3)
	b.AwaitJoin(3)
	jd := d.Join("arena")
	require.Len(t, jd.Members, 4)
	for _, m := range []*relaytest.Native{a, b, c} {
		m.AwaitJoin(4)
	}
	sidA := a.Welcome.SessionID

	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: token})
	require.True(t, a2.Welcome.Resumed)
	require.Equal(t, wire.NodeID(1), a2.Welcome.NodeID)
	require.Equal(t, sidA, a2.Welcome.SessionID)
	next, ok := tokenOrigin(a2.Welcome.ResumeToken)
	require.True(t, ok)
	require.Equal(t, s2.cluster.origin, next, "a fresh token of the new process")
	j := nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
	require.Equal(t, "arena", j.Room)
	require.ElementsMatch(t, []wire.NodeID{1, 2, 3, 4}, nodeIDs(j.Members))
	h2 := j.Handle
	require.Zero(t, parkedCount(s1))
	require.Equal(t, 1.0, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionHandedOver)))
	require.Equal(t, 1.0, testutil.ToFloat64(s2.cluster.sessions.WithLabelValues(sessionTakenOver)))
	require.Nil(t, s1.node(1), "s1 freed the NodeId")

	// The hub presence lists it once, with process s2.
	require.Eventually(t, func() bool {
		p := roomPresence(t, s3, "arena")
		return len(p) == 4 && p[sidA].Process == s2.cluster.origin
	}, testenv.Wait, testenv.Tick)

	// Events both ways: b (s1) and d (s3) reach a2 (s2); a2 reaches all.
	b.Send(&wire.NativeEvent{Handle: h, Sequence: 1, Payload: []byte("from b")})
	ev := a2.NextEvent()
	require.Equal(t, "from b", string(ev.Payload))
	require.Equal(t, h2, ev.Handle)
	require.Equal(t, "from b", string(c.NextEvent().Payload))
	require.Equal(t, "from b", string(d.NextEvent().Payload))
	d.Send(&wire.NativeEvent{Handle: jd.Handle, Sequence: 2, Payload: []byte("from d")})
	require.Equal(t, "from d", string(a2.NextEvent().Payload))
	a2.Send(&wire.NativeEvent{Handle: h2, Sequence: 3, Payload: []byte("from a")})
	for _, m := range []*relaytest.Native{b, c, d} {
		ev := m.NextEvent()
		if string(ev.Payload) == "from d" || string(ev.Payload) == "from b" {
			ev = m.NextEvent()
		}
		require.Equal(t, "from a", string(ev.Payload))
		require.Equal(t, wire.NodeID(1), ev.Sender)
	}
	noControl(t, map[string]*relaytest.Native{"b": b, "c": c, "d": d, "a2": a2})

	// Its final leave: one leave everywhere, and nothing before it.
	a2.Close()
	for _, m := range []*relaytest.Native{b, c, d} {
		p := nextPresence(t, m)
		require.Equal(t, []wire.NodeID{1}, p.Leaves)
		require.Empty(t, p.Joins)
	}
	require.Eventually(t, func() bool { return len(roomPresence(t, s1, "arena")) == 3 }, testenv.Wait, testenv.Tick)
	for _, s := range []*testServer{s1, s2, s3} {
		require.Eventually(t, func() bool { return !s.cluster.room("arena").hasRemote(1) }, testenv.Wait, testenv.Tick)
	}
}

// The issuing process had no other member of the room: it lets go of
// the room, and the session lives on alone on s2.
func TestClusterResumeAloneMovesTheRoom(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
	a.Join("duo")
	b.Join("duo")
	a.AwaitJoin(2)
	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	j := nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(j.Members))
	require.Eventually(t, func() bool { return s1.cluster.room("duo") == nil }, testenv.Wait, testenv.Tick, "s1 unsubscribed")
	require.Empty(t, s1.Rooms())
	require.Equal(t, map[string]int{"duo": 2}, s2.Rooms())
	b.Send(&wire.NativeEvent{Handle: j.Handle, Payload: []byte("hi")})
	require.Equal(t, "hi", string(a2.NextEvent().Payload))
	quiet(t, b, "b")

	// Lost again: parked on s2 now, resumable there.
	lose(t, a2, s2)
	a3 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a2.Welcome.ResumeToken})
	require.True(t, a3.Welcome.Resumed)
	quiet(t, b, "b")
}

// Tokens that cannot resume: another user's session, unknown, expired,
// malformed, or of a process that is gone (refused within claimWait).
func TestClusterResumeRefused(t *testing.T) {
	const secret = "resume-secret"
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	s1 := newClusterServer(t, prefix, func(c *Config) {
		c.Verifier = auth.NewTokenVerifier(secret, "", "")
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1
	})
	s2 := newClusterServer(t, prefix, func(c *Config) { c.Verifier = auth.NewTokenVerifier(secret, "", "") })
	sign := func(user string) string {
		tok, err := auth.SignConnect(secret, user, time.Hour, time.Now())
		require.NoError(t, err)
		return tok
	}
	bob, other := sign("bob"), sign("alice")
	a := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{NodeID: 5, Token: bob})
	w := dialNative(t, s2, 6)
	a.Join("r")
	w.Join("r")
	a.AwaitJoin(6)
	lose(t, a, s1)
	token := a.Welcome.ResumeToken

	refused := func(hello *wire.Hello, code wire.ErrorCode) {
		t.Helper()
		_, err := relaytest.TryNative(t, s2.Addr().String(), hello, relaytest.NativeOptions{})
		refusal(t, err, code, closeResume)
	}
	refused(&wire.Hello{Token: other, ResumeToken: token}, wire.ErrCodePermissionDenied) // alice cannot take bob's session
	require.Equal(t, 1.0, parkedCount(s1), "still parked on s1")

	randomHex := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return hex.EncodeToString(b)
	}
	u := uuid.MustParse(s1.cluster.origin)
	start := time.Now()
	for _, tok := range []string{
		"nope",
		strings.Repeat("z", 64),
		hex.EncodeToString(u[:]) + randomHex(16), // s1's, never issued
		randomHex(32),                            // a process that does not exist
	} {
		refused(&wire.Hello{Token: bob, ResumeToken: tok}, wire.ErrCodeNotFound)
	}
	require.Less(t, time.Since(start), claimWait+testenv.Wait/2, "bounded by claimWait")
	require.Equal(t, 5.0, testutil.ToFloat64(s2.metrics.handshakes.WithLabelValues(handshakeResume)))

	// The window passes on s1: w sees a leave, the token is dead everywhere.
	clk.Advance(DefaultResumeGrace)
	require.Equal(t, []wire.NodeID{5}, nextPresence(t, w).Leaves)
	refused(&wire.Hello{Token: bob, ResumeToken: token}, wire.ErrCodeNotFound)
	require.Zero(t, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionHandedOver)))
}

// Two processes claim one token at once: one resumes it, the other is
// refused, and the room holds the session once.
func TestClusterResumeClaimedTwice(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	s3 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s1, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	lose(t, a, s1)
	var wg sync.WaitGroup
	results := make([]error, 2)
	conns := make([]*relaytest.Native, 2)
	for i, s := range []*testServer{s2, s3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], results[i] = relaytest.TryNative(t, s.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range results {
		if err == nil {
			require.Equal(t, -1, won, "only one resumes")
			won = i
		} else {
			refusal(t, err, wire.ErrCodeNotFound, closeResume)
		}
	}
	require.NotEqual(t, -1, won, "one resumes")
	winner := []*testServer{s2, s3}[won]
	require.Eventually(t, func() bool {
		p := roomPresence(t, s1, "r")
		return len(p) == 2 && p[a.Welcome.SessionID].Process == winner.cluster.origin
	}, testenv.Wait, testenv.Tick)
	conns[won].Close()
	require.Equal(t, []wire.NodeID{1}, nextPresence(t, b).Leaves)
	quiet(t, b, "b")
}

// A NodeId held only by a parked session of the same user on another
// process: a JOIN with it ends that session there (its rooms see it
// leave) instead of being refused; another user's is still refused.
func TestClusterFixedNodeIDElsewhere(t *testing.T) {
	const secret = "node-secret"
	prefix := clusterPrefix(t)
	mod := func(c *Config) { c.Verifier = auth.NewTokenVerifier(secret, "", "") }
	s1 := newClusterServer(t, prefix, mod)
	s2 := newClusterServer(t, prefix, mod)
	sign := func(user string) string {
		tok, err := auth.SignConnect(secret, user, time.Hour, time.Now())
		require.NoError(t, err)
		return tok
	}
	bob, alice := sign("bob"), sign("alice")
	a := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{NodeID: 7, Token: bob})
	w := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{NodeID: 8, Token: alice})
	a.Join("r")
	w.Join("r")
	a.AwaitJoin(8)

	// Live on s1: refused at the handshake, even for the same user (the
	// NodeId directory: a live session keeps its NodeId).
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{NodeID: 7, Token: bob}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
	require.Nil(t, s2.node(7))

	lose(t, a, s1)
	require.Eventually(t, func() bool { // s1 marked its entry parked
		hs, err := s2.cluster.dirRead(context.Background(), 7)
		return err == nil && len(hs) == 1 && hs[0].parked
	}, testenv.Wait, testenv.Tick)
	// Another user with NodeId 7: still refused, at the handshake (the
	// NodeId directory: a parked session keeps its NodeId).
	_, err = relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{NodeID: 7, Token: alice}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
	require.Nil(t, s2.node(7))
	require.Equal(t, 1.0, parkedCount(s1))

	// bob again, afresh, on s2: the parked session ends on s1.
	fresh := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{NodeID: 7, Token: bob})
	fresh.SendControl(&wire.Join{RequestID: 4, Room: "r"})
	j := nextSkippingPresence[*wire.Joined](t, fresh, "JOINED")
	require.ElementsMatch(t, []wire.NodeID{7, 8}, nodeIDs(j.Members))
	require.Zero(t, parkedCount(s1))
	require.Equal(t, 1.0, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionEndedForNode)))
	p := nextPresence(t, w)
	require.Equal(t, []wire.NodeID{7}, p.Leaves, "the old session left")
	p = nextPresence(t, w)
	require.Equal(t, []wire.NodeID{7}, nodeIDs(p.Joins), "the new one joined")
	require.Eventually(t, func() bool {
		pr := roomPresence(t, s1, "r")
		return len(pr) == 2 && pr[fresh.Welcome.SessionID].Process == s2.cluster.origin
	}, testenv.Wait, testenv.Tick)
	_, err = relaytest.TryNative(t, s1.Addr().String(), &wire.Hello{Token: bob, ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
	require.Error(t, err, "the ended session cannot be resumed")
}

// publishFailingBus takes subscriptions but cannot publish (Redis down).
type publishFailingBus struct{ nopBus }

func (publishFailingBus) Publish(context.Context, []hub.TopicMessage) error {
	return errors.New("redis broker: publish topic: connection refused")
}

func TestClusterResumeWhileTheBusIsDown(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Bus = publishFailingBus{} })
	u := uuid.New()
	tok := hex.EncodeToString(u[:]) + strings.Repeat("ab", 16)
	_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{ResumeToken: tok}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeUnavailable, closeShutdown)
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeUnavailable)))
}

// An answer that comes when the claimer no longer waits for it (its
// wait passed, its client went): the claimer ends the session, which
// every process sees leave once, and nothing of it stays.
func TestClusterResumeLateAnswerEndsTheSession(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b, c := dialNative(t, s1, 1), dialNative(t, s1, 2), dialNative(t, s2, 3)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	c.Join("r")
	a.AwaitJoin(3)
	b.AwaitJoin(3)
	lose(t, a, s1)
	// s1 answers s2 a request s2 asked and no longer waits for.
	s2.cluster.procMu.Lock()
	s2.cluster.pending["gone"] = pendingAsk{ch: make(chan *busReply, 1), to: s1.cluster.origin}
	s2.cluster.procMu.Unlock()
	require.True(t, s2.cluster.forget("gone"))
	s1.cluster.serve(s2.cluster.origin, &busRequest{ID: "gone", Op: opResume, Token: a.Welcome.ResumeToken})
	require.Zero(t, parkedCount(s1))
	for _, m := range []*relaytest.Native{b, c} {
		p := nextPresence(t, m)
		require.Equal(t, []wire.NodeID{1}, p.Leaves)
		require.Empty(t, p.Joins)
	}
	require.Eventually(t, func() bool { return len(roomPresence(t, s1, "r")) == 2 }, testenv.Wait, testenv.Tick)
	for _, s := range []*testServer{s1, s2} {
		require.Eventually(t, func() bool { return !s.cluster.room("r").hasRemote(1) }, testenv.Wait, testenv.Tick)
	}
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeNotFound, closeResume)
	dialNative(t, s2, 1).Join("r") // its NodeId is free everywhere
	require.Equal(t, []wire.NodeID{1}, nodeIDs(nextPresence(t, b).Joins), "one leave before, no other news")
}

// A claim racing the issuer's grace timer or its shutdown, each order
// forced with the handover hook: when the claim takes the session first,
// it resumes on s2 and nobody sees it leave until it does; when the timer
// or the shutdown ends it first, the resume is refused and everybody sees
// one leave. No member, presence or parked session is left behind.
func TestClusterResumeRaces(t *testing.T) {
	for _, tc := range []struct {
		race       string
		claimFirst bool
	}{{"grace timer", true}, {"grace timer", false}, {"shutdown", true}, {"shutdown", false}} {
		name := tc.race + map[bool]string{true: ", claim first", false: ", claim second"}[tc.claimFirst]
		t.Run(name, func(t *testing.T) {
			prefix := clusterPrefix(t)
			clk := clocktest.New(time.Now())
			s1 := newClusterServer(t, prefix, func(c *Config) { c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1 })
			s2 := newClusterServer(t, prefix, nil)
			a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
			a.Join("r")
			b.Join("r")
			a.AwaitJoin(2)
			lose(t, a, s1)
			shut := make(chan struct{})
			other := func() { // the grace timer fires, or the shutdown begins
				if tc.race == "grace timer" {
					clk.Advance(DefaultResumeGrace)
					return
				}
				go func() {
					defer close(shut)
					ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
					defer cancel()
					_ = s1.Shutdown(ctx)
				}()
				assert.Eventually(t, s1.closing.Load, testenv.Wait, time.Millisecond) // not on the test goroutine
			}
			stage := "taken"
			if !tc.claimFirst {
				stage = "claim"
			}
			hook := func(at string) {
				if at != stage {
					return
				}
				other()
				if !tc.claimFirst {
					assert.Eventually(t, func() bool { return parkedCount(s1) == 0 }, testenv.Wait, time.Millisecond)
				}
			}
			s1.cluster.testHandOver.Store(&hook)
			a2, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
			if tc.claimFirst {
				require.NoError(t, err)
				require.True(t, a2.Welcome.Resumed)
				nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
				quiet(t, b, "b")
				a2.Close()
			} else {
				refusal(t, err, wire.ErrCodeNotFound, closeResume)
			}
			p := nextPresence(t, b)
			require.Equal(t, []wire.NodeID{1}, p.Leaves, "one leave")
			require.Empty(t, p.Joins)
			quiet(t, b, "b")
			if tc.race == "shutdown" {
				<-shut
			}
			require.Zero(t, parkedCount(s1))
			require.Eventually(t, func() bool { return len(roomPresence(t, s2, "r")) == 1 }, testenv.Wait, testenv.Tick)
			require.Eventually(t, func() bool { return !s2.cluster.room("r").hasRemote(1) }, testenv.Wait, testenv.Tick)
			require.Equal(t, 1, len(s2.Rooms()))
		})
	}
}

// The server API disconnects a session while it is handed over: before
// the issuer answers, the handover is refused and the session ends; after
// it, the claimer is told and ends it (refusing the resume, or closing the
// resumed connection with the disconnect). Either way the others see one
// leave and the session is gone everywhere.
func TestClusterResumeDisconnectRacesHandover(t *testing.T) {
	kick := hub.Disconnect{Code: 4321, Reason: "kicked"}
	for _, stage := range []string{"taken", "answering"} {
		t.Run(stage, func(t *testing.T) {
			prefix := clusterPrefix(t)
			s1 := newClusterServer(t, prefix, nil)
			s2 := newClusterServer(t, prefix, nil)
			a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
			a.Join("r")
			b.Join("r")
			a.AwaitJoin(2)
			lose(t, a, s1)
			s1.mu.RLock()
			hs := s1.nodes[1].hs
			s1.mu.RUnlock()
			hook := func(at string) {
				if at == stage {
					hs.Disconnect(kick)
				}
			}
			s1.cluster.testHandOver.Store(&hook)
			a2, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
			if stage == "taken" {
				refusal(t, err, wire.ErrCodeNotFound, closeResume)
			} else if err == nil {
				var g *wire.GoAway
				for g == nil {
					g, _ = a2.Next().(*wire.GoAway)
				}
				require.Equal(t, kick.Code, g.Code)
			} else if !strings.Contains(err.Error(), "unexpected GOAWAY") { // the kick can beat the WELCOME
				refusal(t, err, wire.ErrCodeNotFound, closeResume)
			}
			p := nextPresence(t, b)
			require.Equal(t, []wire.NodeID{1}, p.Leaves, "one leave")
			require.Empty(t, p.Joins)
			quiet(t, b, "b")
			require.Zero(t, parkedCount(s1))
			require.Zero(t, parkedCount(s2))
			require.Nil(t, s1.node(1))
			require.Eventually(t, func() bool { return s2.node(1) == nil }, testenv.Wait, testenv.Tick)
			require.Eventually(t, func() bool { return len(roomPresence(t, s2, "r")) == 1 }, testenv.Wait, testenv.Tick)
		})
	}
}

// failingAnswers is a bus whose answers between processes never leave.
type failingAnswers struct{ RoomBus }

func (b failingAnswers) Publish(ctx context.Context, msgs []hub.TopicMessage) error {
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "relay-process:") && len(m.Data) > 1 && m.Data[1] == busAnswer {
			return errors.New("redis broker: publish topic: connection reset")
		}
	}
	return b.RoomBus.Publish(ctx, msgs)
}

// The issuer took the session out but cannot send it: it ends it (one
// leave everywhere) and the claimer, unanswered, refuses the resume.
func TestClusterResumeAnswerLost(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, func(c *Config) { c.Bus = failingAnswers{c.Bus} })
	s2 := newClusterServer(t, prefix, nil)
	a, b, c := dialNative(t, s1, 1), dialNative(t, s1, 2), dialNative(t, s2, 3)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	c.Join("r")
	a.AwaitJoin(3)
	b.AwaitJoin(3)
	lose(t, a, s1)
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeNotFound, closeResume)
	for _, m := range []*relaytest.Native{b, c} {
		p := nextPresence(t, m)
		require.Equal(t, []wire.NodeID{1}, p.Leaves)
		require.Empty(t, p.Joins)
	}
	require.Zero(t, parkedCount(s1))
	require.Eventually(t, func() bool { return len(roomPresence(t, s2, "r")) == 2 }, testenv.Wait, testenv.Tick)
	for _, s := range []*testServer{s1, s2} {
		require.Eventually(t, func() bool { return !s.cluster.room("r").hasRemote(1) }, testenv.Wait, testenv.Tick)
	}
	require.Zero(t, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionHandedOver)))
}

// An anonymous parked session on another process: an anonymous JOIN
// with its NodeId is refused (Conflict), nothing is asked of s1, and the
// session stays parked and resumable.
func TestClusterFixedNodeIDAnonymousRefused(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, w := dialNative(t, s1, 7), dialNative(t, s2, 8)
	a.Join("r")
	w.Join("r")
	a.AwaitJoin(8)
	lose(t, a, s1)

	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{NodeID: 7}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse) // at the handshake: the NodeId directory
	require.Nil(t, s2.node(7))
	require.Equal(t, 1.0, parkedCount(s1), "still parked")
	require.Zero(t, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionEndedForNode)))
	// Asked directly (a forged request), s1 refuses too.
	require.False(t, s1.Server.endParkedNode(7, "", ""))
	require.Equal(t, 1.0, parkedCount(s1))
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
}

// The client lost the WELCOME of a resume on another process: its retry
// with the token it still holds resumes the session wherever it lands
// (the process that took it over keeps that token as an alias; the
// issuer redirects a claim to it), and nobody sees it leave or join.
func TestClusterResumeWithTheOldToken(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	s3 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s1, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	old := a.Welcome.ResumeToken
	lose(t, a, s1)
	resumeWith := func(s *testServer) *relaytest.Native {
		t.Helper()
		n := relaytest.DialNative(t, s.Addr().String(), &wire.Hello{ResumeToken: old})
		require.True(t, n.Welcome.Resumed)
		require.Equal(t, wire.NodeID(1), n.Welcome.NodeID)
		j := nextSkippingPresence[*wire.Joined](t, n, "JOINED")
		require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(j.Members))
		return n
	}
	a2 := resumeWith(s2) // its WELCOME is "lost": the client keeps old
	lose(t, a2, s2)
	a3 := resumeWith(s2) // on s2 again: old is an alias there
	require.Equal(t, a2.Welcome.ResumeToken, a3.Welcome.ResumeToken, "a local resume keeps the token")
	lose(t, a3, s2)
	a4 := resumeWith(s3) // s3 asks s1, which redirects to s2
	lose(t, a4, s3)
	resumeWith(s1) // s1 asks s2 (it handed the session there), s2 redirects to s3
	require.Equal(t, 3.0, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionTakenOver))+
		testutil.ToFloat64(s2.cluster.sessions.WithLabelValues(sessionTakenOver))+
		testutil.ToFloat64(s3.cluster.sessions.WithLabelValues(sessionTakenOver)))
	for _, s := range []*testServer{s1, s2, s3} {
		require.Zero(t, parkedCount(s))
	}
	quiet(t, b, "b")
}

// A client that goes while its process claims the session: the claimer
// still takes the session and parks it (under the old token too), so the
// client's retry with the token it holds resumes it, and nobody sees it
// leave or join.
func TestClusterResumeClientGoneMidClaim(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s1, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	lose(t, a, s1)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	qc, err := relaytest.DialQUIC(ctx, s2.Addr().String(), []string{wire.ALPNNative})
	require.NoError(t, err)
	ctl, err := qc.OpenStreamSync(ctx)
	require.NoError(t, err)
	hook := func(at string) {
		if at == "taken" { // the client goes while s1 hands the session over
			_ = qc.CloseWithError(1, "lost again")
		}
	}
	s1.cluster.testHandOver.Store(&hook)
	_, err = ctl.Write(wire.AppendMessage(nil, &wire.Hello{ResumeToken: a.Welcome.ResumeToken}))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return parkedCount(s2) == 1 }, testenv.Wait, testenv.Tick, "taken and parked on s2")
	s1.cluster.testHandOver.Store(nil)
	a3 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a3.Welcome.Resumed, "s1 redirects the old token to s2")
	require.Equal(t, wire.NodeID(1), a3.Welcome.NodeID)
	quiet(t, b, "b")
}

// slowRemove is a presence whose removal of one session id blocks until
// gate is closed (Redis slow to answer).
type slowRemove struct {
	writeOnly
	lister PresenceLister
	sid    atomic.Pointer[string]
	gate   chan struct{}
}

// writeOnly is a Presence under another field name.
type writeOnly interface {
	AddPresence(ctx context.Context, channel string, info *hub.ClientInfo) error
	RemovePresence(ctx context.Context, channel, clientID, userID string) error
	PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error
}

func (p *slowRemove) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	return p.lister.Presence(ctx, channel)
}

func (p *slowRemove) RemovePresence(ctx context.Context, channel, clientID, userID string) error {
	if sid := p.sid.Load(); sid != nil && *sid == clientID {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.writeOnly.RemovePresence(ctx, channel, clientID, userID)
}

// The issuer answers before its engine work: a Redis slower than the
// claimer's wait does not cost the resume, and the presence ends up the
// claimer's once the issuer's removal is done.
func TestClusterResumeIssuerAnswersFirst(t *testing.T) {
	prefix := clusterPrefix(t)
	slow := &slowRemove{gate: make(chan struct{})}
	s1 := newClusterServer(t, prefix, func(c *Config) {
		slow.writeOnly, slow.lister = c.Presence, c.Presence.(PresenceLister)
		c.Presence = slow
	})
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	sid := a.Welcome.SessionID
	slow.sid.Store(&sid)
	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
	close(slow.gate) // the issuer's removal now runs, after the claimer wrote its entry
	require.Eventually(t, func() bool {
		p := roomPresence(t, s2, "r")
		return len(p) == 2 && p[sid].Process == s2.cluster.origin
	}, testenv.Wait, testenv.Tick, "the claimer wrote its presence again")
	quiet(t, b, "b")
}

// An issuer that gets a claim already past (or too near) its deadline
// refuses it and keeps the session parked.
func TestClusterResumeLateRequestRefused(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	a.Join("r")
	lose(t, a, s1)
	s1.cluster.serve(s2.cluster.origin, &busRequest{ID: "late", Op: opResume, Token: a.Welcome.ResumeToken,
		Deadline: time.Now().Add(answerMargin / 2).UnixMilli()})
	require.Equal(t, 1.0, parkedCount(s1), "still parked")
	require.Zero(t, testutil.ToFloat64(s1.cluster.sessions.WithLabelValues(sessionHandedOver)))
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
}

// A session moving between processes is briefly a local member and a
// remote record of the same session id on one process: JOINED (native)
// and the ISSUN member list show it once.
func TestClusterMembersListAMovingSessionOnce(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	s1.mu.RLock()
	r := s1.rooms["r"]
	s1.mu.RUnlock()
	br := r.bus
	br.mu.Lock()
	br.putRemoteLocked(remoteMember{node: 1, sid: a.Welcome.SessionID, transport: transportNative, handed: true})
	br.mu.Unlock()
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(s1.members(r)))
	require.ElementsMatch(t, []wire.NodeID{1, 2}, s1.memberIDs(r))
}

// Answers on the process topic are trusted only as answers to this
// process's own requests, from the process asked, with a well-formed
// session: a forged or stray one removes nobody.
func TestClusterUntrustedAnswers(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialNative(t, s1, 1), dialNative(t, s2, 2)
	a.Join("r")
	b.Join("r")
	a.AwaitJoin(2)
	cl := s2.cluster
	bad := func() float64 { return testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropBusMalformed)) }
	forged := &handedSession{Node: 1, SID: a.Welcome.SessionID, Rooms: []string{"r"}}
	answer := func(origin string, r *busReply) {
		cl.handle(cl.procTopic, busJSONFrame(busAnswer, origin, r))
	}

	// No such request (empty or unknown id), or given up on but from
	// another process than the one asked: dropped, a stays.
	fake := uuid.NewString()
	answer(fake, &busReply{Session: forged})
	answer(fake, &busReply{ID: "never-asked", Session: forged})
	cl.procMu.Lock()
	cl.pending["asked-s1"] = pendingAsk{ch: make(chan *busReply, 1), to: s1.cluster.origin}
	cl.procMu.Unlock()
	require.True(t, cl.forget("asked-s1"))
	answer(fake, &busReply{ID: "asked-s1", Session: forged})
	require.Equal(t, 3.0, bad())

	// Pending, from another process than asked: not delivered.
	ch := make(chan *busReply, 1)
	cl.procMu.Lock()
	cl.pending["p"] = pendingAsk{ch: ch, to: s1.cluster.origin}
	cl.procMu.Unlock()
	answer(fake, &busReply{ID: "p", Session: forged})
	require.Empty(t, ch)
	require.Equal(t, 4.0, bad())
	// From the process asked, but malformed: a refusal is delivered.
	answer(s1.cluster.origin, &busReply{ID: "p", Session: &handedSession{Node: 1, SID: "x", Rooms: []string{"r", "r"}}})
	require.Equal(t, refuseUnknown, (<-ch).Err)
	require.Nil(t, cl.pending["p"].ch)
	require.Equal(t, 5.0, bad())

	// A disconnect of a session s2 did not take over from that process.
	cl.handle(cl.procTopic, busJSONFrame(busAsk, fake, &busRequest{ID: "d", Op: opDisconnect, Node: 2, SID: b.Welcome.SessionID, Code: 4000}))
	require.Equal(t, 6.0, bad())

	require.Eventually(t, func() bool { return len(roomPresence(t, s1, "r")) == 2 }, testenv.Wait, testenv.Tick)
	quiet(t, b, "b")
	require.NotNil(t, s1.node(1), "a is live on s1")
	quiet(t, a, "a")
	require.True(t, cl.room("r").hasRemote(1), "a is still a member for s2")
}

func TestHandedSessionValid(t *testing.T) {
	ok := handedSession{Node: 1, SID: "s", Rooms: []string{"a", "b"}}
	require.True(t, ok.valid(2))
	for name, h := range map[string]handedSession{
		"no node":         {SID: "s", Rooms: []string{"a"}},
		"no session id":   {Node: 1, Rooms: []string{"a"}},
		"empty room":      {Node: 1, SID: "s", Rooms: []string{""}},
		"duplicate rooms": {Node: 1, SID: "s", Rooms: []string{"a", "a"}},
		"too many rooms":  {Node: 1, SID: "s", Rooms: []string{"a", "b", "c"}},
	} {
		require.False(t, h.valid(2), name)
	}
}

// blackholed is a presence whose calls for one session id hang until
// their context ends (Redis not answering).
type blackholed struct {
	writeOnly
	lister PresenceLister
	sid    string
}

func (p *blackholed) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	return p.lister.Presence(ctx, channel)
}

func (p *blackholed) RemovePresence(ctx context.Context, channel, clientID, userID string) error {
	if clientID == p.sid {
		<-ctx.Done()
		return ctx.Err()
	}
	return p.writeOnly.RemovePresence(ctx, channel, clientID, userID)
}

func (p *blackholed) PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error {
	if info.ClientID == p.sid {
		<-ctx.Done()
		return ctx.Err()
	}
	return p.writeOnly.PublishLeave(ctx, channel, info)
}

// Shutdown's deadline bounds the requests between processes in progress
// (an abandon whose Redis calls hang), and a membership message queued
// after the publisher stopped is counted as dropped.
func TestClusterShutdownBoundsRequests(t *testing.T) {
	prefix := clusterPrefix(t)
	s := newClusterServer(t, prefix, func(c *Config) {
		c.Presence = &blackholed{writeOnly: c.Presence, lister: c.Presence.(PresenceLister), sid: "victim"}
	})
	started := make(chan struct{})
	require.True(t, s.cluster.goRun(func() {
		close(started)
		s.cluster.abandon(&handedSession{Node: 9, SID: "victim", Rooms: []string{"x", "y", "z"}})
	}))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.NoError(t, s.Shutdown(ctx))
	require.Less(t, time.Since(start), opTimeout, "not rooms × opTimeout")
	drops := func() float64 { return testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropBusPublish)) }
	before := drops()
	s.cluster.enqueueWait("relay:x", busMemberFrame(busLeave, transportNative, s.cluster.origin, &busMember{Node: 9, SID: "victim"}))
	require.False(t, s.cluster.enqueue("relay:x", []byte("late")))
	require.Equal(t, before+2, drops())
}

// A process serving its maximum of requests of others answers one more
// "unavailable" at once: the resume is refused as retryable, and works
// once the process has room again.
func TestClusterServeBounded(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	a.Join("r")
	lose(t, a, s1)
	for range maxServing {
		s1.cluster.serving <- struct{}{}
	}
	start := time.Now()
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeUnavailable, closeShutdown)
	require.Less(t, time.Since(start), claimWait, "answered, not timed out")
	require.Equal(t, 1.0, parkedCount(s1))
	for range maxServing {
		<-s1.cluster.serving
	}
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
}

// A sync on the process taking a session over keeps its remote record
// while it arrives (its presence not written yet), and then, finding its
// presence written by this process, drops the record without news.
func TestClusterSyncKeepsASessionMovingHere(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, c := dialNative(t, s1, 1), dialNative(t, s2, 3)
	a.Join("r")
	c.Join("r")
	a.AwaitJoin(3)
	br, sid, ctx := s2.cluster.room("r"), a.Welcome.SessionID, context.Background()
	require.True(t, br.hasRemote(1))

	require.NoError(t, s1.hub.RemovePresence(ctx, "relay:r", sid, "")) // the issuer's cleanup
	s2.mu.Lock()
	s2.cluster.arriving[sid] = []string{"r"}
	s2.mu.Unlock()
	_, ok := s2.cluster.sync(br)
	require.True(t, ok)
	require.True(t, br.hasRemote(1), "kept while it arrives")

	here, _ := json.Marshal(presenceEntry{NodeID: "1", Transport: "quic-native", Process: s2.cluster.origin})
	require.NoError(t, s2.hub.AddPresence(ctx, "relay:r", &hub.ClientInfo{ClientID: sid, ChanInfo: here}))
	s2.mu.Lock()
	delete(s2.cluster.arriving, sid)
	s2.mu.Unlock()
	_, ok = s2.cluster.sync(br)
	require.True(t, ok)
	require.False(t, br.hasRemote(1), "a member of this process now")
	quiet(t, c, "c") // no leave
}

// A session taken over by a process whose members did not know it (a sync
// dropped its record while it moved) is announced to them as a join.
func TestClusterResumeUnknownHereIsAJoin(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, c := dialNative(t, s1, 1), dialNative(t, s2, 3)
	a.Join("r")
	c.Join("r")
	a.AwaitJoin(3)
	token := a.Welcome.ResumeToken
	lose(t, a, s1)
	s2.cluster.room("r").forgetSilently(a.Welcome.SessionID, time.Now())
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: token})
	require.True(t, a2.Welcome.Resumed)
	require.Equal(t, []wire.NodeID{1}, nodeIDs(nextPresence(t, c).Joins))
}

// Shutdown's deadline bounds parked sessions leaving their rooms too: a
// presence removal that hangs is cancelled at the deadline.
func TestShutdownBoundsParkedLeaves(t *testing.T) {
	var bh *blackholed
	s := newTestServer(t, func(c *Config) {
		bh = &blackholed{writeOnly: c.Presence, lister: c.Presence.(PresenceLister)}
		c.Presence = bh
	})
	a := dialNative(t, s, 1)
	a.Join("r")
	bh.sid = a.Welcome.SessionID
	lose(t, a, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = s.Shutdown(ctx)
	require.Less(t, time.Since(start), opTimeout, "not held by the parked session's hanging leave")
}

// A claimer's presence rewrite (opPresent) whose write lands after the
// session left the room is removed again: no entry outlives the member.
func TestClusterPresenceRewriteAfterLeave(t *testing.T) {
	var held *heldAdds
	s := newClusterServer(t, clusterPrefix(t), func(c *Config) {
		held = &heldAdds{writeOnly: c.Presence, lister: c.Presence.(PresenceLister), channel: "relay:r",
			entered: make(chan struct{}, 1), release: make(chan struct{})}
		c.Presence = held
	})
	x := dialNative(t, s, 9)
	j := x.Join("r")
	sid := x.Welcome.SessionID
	require.Len(t, roomPresence(t, s, "r"), 1)
	held.armed.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); s.writePresence(s.cluster.ctx, 9, sid) }()
	<-held.entered
	x.SendControl(&wire.Leave{RequestID: 3, Handle: j.Handle})
	require.Eventually(t, func() bool { return len(s.Rooms()) == 0 && len(roomPresence(t, s, "r")) == 0 },
		testenv.Wait, testenv.Tick, "left, its presence removed")
	close(held.release)
	<-done
	require.Empty(t, roomPresence(t, s, "r"), "the late write was undone")
}
