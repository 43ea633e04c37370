package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// nextGame returns the next game event of c (PaddleMove), skipping the
// relay's answers and news.
func nextGame(t *testing.T, c *relaytest.ISSUN) wire.Event {
	t.Helper()
	for {
		if ev := c.Next(); ev.TypeName == game("PaddleMove") {
			return ev
		}
	}
}

// knowsInLobby reports whether s knows NodeId id in another process's lobby.
func knowsInLobby(s *testServer, id wire.NodeID) bool { return s.cluster.lobby.hasRemote(id) }

// waitLobby waits until every server knows every client of the other
// servers in the lobby.
func waitLobby(t *testing.T, where map[*testServer][]wire.NodeID) {
	t.Helper()
	require.Eventually(t, func() bool {
		for s := range where {
			for o, ids := range where {
				for _, id := range ids {
					if o != s && !knowsInLobby(s, id) {
						return false
					}
				}
			}
		}
		return true
	}, testenv.Wait, testenv.Tick, "the processes know each other's lobby members")
}

func issunJoin(t *testing.T, c *relaytest.ISSUN, room string) {
	t.Helper()
	c.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: room}.Append(nil)))
	for {
		if c.Next().TypeName == game("SwitchboardJoined") {
			return
		}
	}
}

func issunLeave(t *testing.T, c *relaytest.ISSUN, room string) {
	t.Helper()
	c.Send(control(wire.SuffixLeave, wire.RoomRequest{Room: room}.Append(nil)))
	for {
		if c.Next().TypeName == game("SwitchboardLeft") {
			return
		}
	}
}

// ISSUN clients in no room on three processes are one lobby.
func TestClusterISSUNLobbyAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2, s3 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range []*testServer{s1, s2, s3} {
				dumpDrops(t, s)
			}
		}
	})
	a, a2 := dialISSUN(t, s1, 1), dialISSUN(t, s1, 4)
	b := dialISSUN(t, s2, 2)
	c := dialISSUN(t, s3, 3)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1, 4}, s2: {2}, s3: {3}})

	// a's broadcasts reach every other lobby member, in order, not a.
	const n = 50
	for i := range n {
		a.Send(event(broadcast, uint64(i), fmt.Sprint("a", i)))
	}
	for _, r := range []*relaytest.ISSUN{a2, b, c} {
		for i := range n {
			ev := nextGame(t, r)
			require.Equal(t, fmt.Sprint("a", i), string(ev.Payload))
			require.Equal(t, wire.NodeID(1), ev.Metadata.Sender)
		}
	}
	b.Send(event(broadcast, 1, "b"))
	for _, r := range []*relaytest.ISSUN{a, a2, c} {
		require.Equal(t, "b", string(nextGame(t, r).Payload), "no echo of a's own broadcasts came first")
	}

	// Targeted to a lobby member on another process.
	c.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 1}, 2, "c to a"))
	ev := nextGame(t, a)
	require.Equal(t, "c to a", string(ev.Payload))
	require.Equal(t, wire.NodeID(3), ev.Metadata.Sender)

	// b joins a room: out of the lobby everywhere; s2 keeps the topic.
	issunJoin(t, b, "match")
	require.Empty(t, *s2.lobby.snap.Load(), "b left s2's lobby with its join")
	require.Eventually(t, func() bool {
		return !knowsInLobby(s1, 2) && !knowsInLobby(s3, 2)
	}, testenv.Wait, testenv.Tick, "b left the lobby on every process")
	require.True(t, s2.cluster.lobbyLive(), "the lobby's topic stays subscribed")
	require.True(t, knowsInLobby(s2, 1), "s2 still knows the other processes' lobby members")
	pres, err := s1.hub.Presence(context.Background(), LobbyChannel)
	require.NoError(t, err)
	require.Len(t, pres, 3, "the lobby's presence lists a, a2 and c")
	d := dialISSUN(t, s3, 5) // in the room with b, on another process
	issunJoin(t, d, "match")
	w := dialISSUN(t, s2, 6) // a witness in s2's lobby
	require.Eventually(t, func() bool { return knowsInLobby(s1, 6) }, testenv.Wait, testenv.Tick)
	a.Send(event(broadcast, 3, "lobby only"))
	a.Send(event(broadcast, 4, "marker"))
	require.Equal(t, "lobby only", string(nextGame(t, c).Payload))
	require.Equal(t, "lobby only", string(nextGame(t, a2).Payload))
	require.Equal(t, "lobby only", string(nextGame(t, w).Payload))
	// s2 delivered "marker" after it was done with "lobby only" (one
	// topic, one sender process): whatever it gave b is queued already.
	require.Equal(t, "marker", string(nextGame(t, w).Payload))
	d.Send(event(broadcast, 5, "room"))
	require.Equal(t, "room", string(nextGame(t, b).Payload), "b got no lobby broadcast")

	// A lobby client targets a room member on another process: s1 holds
	// the room (a2 joins it), so it knows b there.
	issunJoin(t, a2, "match")
	require.Eventually(t, func() bool { return s1.cluster.room("match").hasRemote(2) }, testenv.Wait, testenv.Tick)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 5, "a to b in a room"))
	ev = nextGame(t, b)
	require.Equal(t, "a to b in a room", string(ev.Payload))
	require.Equal(t, wire.NodeID(1), ev.Metadata.Sender)

	// b leaves the room: in the lobby again, everywhere.
	issunLeave(t, b, "match")
	require.Eventually(t, func() bool {
		return knowsInLobby(s1, 2) && knowsInLobby(s3, 2)
	}, testenv.Wait, testenv.Tick, "b is back in the lobby")
	c.Send(event(broadcast, 6, "welcome back"))
	c.Send(event(broadcast, 7, "marker"))
	require.Equal(t, "welcome back", string(nextGame(t, b).Payload))
	require.Equal(t, "welcome back", string(nextGame(t, a).Payload))
	require.Equal(t, "marker", string(nextGame(t, a).Payload)) // s1 is done with "welcome back"
	d.Send(event(broadcast, 8, "room again"))
	require.Equal(t, "room again", string(nextGame(t, a2).Payload), "a2, in the room, got no lobby broadcast")

	// A disconnect leaves the lobby everywhere; its process, now without
	// lobby members, still knows the others' (its topic stays subscribed).
	c.Close()
	require.Eventually(t, func() bool {
		return len(*s3.lobby.snap.Load()) == 0 && !knowsInLobby(s1, 3) && !knowsInLobby(s2, 3)
	}, testenv.Wait, testenv.Tick)
	require.True(t, s3.cluster.lobbyLive())
	require.Equal(t, s3.cluster.lobby, s3.cluster.issunHolder(1))
}

// A process publishes lobby events only while another process has lobby
// members.
func TestClusterISSUNLobbyBusOnlyWhenNeeded(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	a, a2 := dialISSUN(t, s1, 1), dialISSUN(t, s1, 2)
	published := func() float64 { return testutil.ToFloat64(s1.cluster.published) }
	require.Eventually(t, func() bool { return published() == 2 }, testenv.Wait, testenv.Tick, "the two lobby joins")
	for i := range 20 {
		a.Send(event(broadcast, uint64(i), fmt.Sprint(i)))
		require.Equal(t, fmt.Sprint(i), string(nextGame(t, a2).Payload))
	}
	// Targeted to nobody known: dropped here, not published.
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 9}, 30, "nobody"))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s1.metrics.drops.WithLabelValues(dropUnknownTarget)) == 1
	}, testenv.Wait, testenv.Tick)
	require.Equal(t, 2.0, published(), "no other process has lobby members: no event published")

	b := dialISSUN(t, s2, 3)
	require.Eventually(t, func() bool { return knowsInLobby(s1, 3) }, testenv.Wait, testenv.Tick)
	a.Send(event(broadcast, 100, "now"))
	require.Equal(t, "now", string(nextGame(t, b).Payload))
	require.Eventually(t, func() bool { return published() == 3 }, testenv.Wait, testenv.Tick, "the broadcast")
}

// With token auth, a client that did not authenticate is in no lobby: it
// gets neither broadcasts nor targeted events from other processes.
func TestClusterISSUNLobbyTokenAuth(t *testing.T) {
	const secret = "relay-test-secret"
	prefix := clusterPrefix(t)
	mod := func(c *Config) { c.Auth = AuthToken; c.Verifier = auth.NewTokenVerifier(secret, "", "") }
	s1, s2 := newClusterServer(t, prefix, mod), newClusterServer(t, prefix, mod)
	a, b, u := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2), dialISSUN(t, s2, 3)
	for _, c := range []*relaytest.ISSUN{a, b} {
		tok, err := auth.SignConnect(secret, fmt.Sprint("user-", c.ID), time.Hour, time.Now())
		require.NoError(t, err)
		c.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: tok}.Append(nil)))
		require.Equal(t, game("SwitchboardWelcome"), c.Next().TypeName)
	}
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1}, s2: {2}})
	require.False(t, knowsInLobby(s1, 3), "u is in no lobby")
	pres, err := s1.hub.Presence(context.Background(), LobbyChannel)
	require.NoError(t, err)
	users := []string{}
	for _, info := range pres {
		users = append(users, info.UserID)
	}
	require.ElementsMatch(t, []string{"user-1", "user-2"}, users)

	a.Send(event(broadcast, 1, "all"))
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 3}, 2, "to u"))
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 3, "to b"))
	require.Equal(t, "all", string(nextGame(t, b).Payload))
	require.Equal(t, "to b", string(nextGame(t, b).Payload))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropUnknownTarget)) == 1
	}, testenv.Wait, testenv.Tick, "the event to u reaches s2 by the NodeId directory, which drops it")
	// u's own broadcast goes nowhere either.
	u.Send(event(broadcast, 4, "from u"))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropUnauthenticated)) == 1
	}, testenv.Wait, testenv.Tick)
	b.Send(event(broadcast, 5, "b"))
	require.Equal(t, "b", string(nextGame(t, a).Payload), "a got nothing from u")
	// u's first event is the answer to a request it sends now: nothing
	// was queued to it before (s2 delivered a's events before b's "to b").
	u.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match"}.Append(nil)))
	require.Equal(t, "multiplayer_pong"+wire.SuffixError, u.Next().TypeName, "u got no event")
}

// The lobby's remote members are repaired from the presence of relay:
// as a room's: a member whose bus join was lost is known at the next
// sync (and reachable by a targeted event), and dropped when its presence
// goes.
func TestClusterISSUNLobbySyncFromPresence(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	s1 := newClusterServer(t, prefix, func(c *Config) { c.Clock, c.SyncInterval = clk, time.Minute })
	a := dialISSUN(t, s1, 1)
	require.Eventually(t, s1.cluster.lobbyLive, testenv.Wait, testenv.Tick)
	ctx := context.Background()
	published := func() float64 { return testutil.ToFloat64(s1.cluster.published) }
	// a's lobby step (presence, then its join on the bus) is over: the
	// sync below has nothing of a's to write again, so it publishes nothing.
	require.Eventually(t, func() bool {
		pres, err := s1.hub.Presence(ctx, LobbyChannel)
		return err == nil && len(pres) == 1 && published() == 1
	}, testenv.Wait, testenv.Tick)
	ghost, _ := json.Marshal(presenceEntry{NodeID: "77", Transport: "quic-issun", Process: "other-process"})
	require.NoError(t, s1.hub.AddPresence(ctx, LobbyChannel, &hub.ClientInfo{ClientID: "ghost", UserID: "g", ChanInfo: ghost}))
	armed := func() bool { return clk.Pending() >= 1 } // the sync loop's timer
	require.Eventually(t, armed, testenv.Wait, testenv.Tick)
	clk.Advance(time.Minute)
	require.Eventually(t, func() bool { return knowsInLobby(s1, 77) }, testenv.Wait, testenv.Tick)
	before := published()
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, 1, "to the ghost"))
	require.Eventually(t, func() bool { return published() == before+1 }, testenv.Wait, testenv.Tick,
		"published for the remote lobby member")

	require.NoError(t, s1.hub.RemovePresence(ctx, LobbyChannel, "ghost", "g"))
	require.Eventually(t, armed, testenv.Wait, testenv.Tick)
	clk.Advance(time.Minute)
	require.Eventually(t, func() bool { return !knowsInLobby(s1, 77) && s1.cluster.issunHolder(77) == nil }, testenv.Wait, testenv.Tick)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, 2, "gone"))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s1.metrics.drops.WithLabelValues(dropUnknownTarget)) == 1
	}, testenv.Wait, testenv.Tick)
	require.Equal(t, before+1, published())
}

// gatedPresence holds the presence writes of channel until gate is
// closed (an engine that does not answer): additions, and removals when
// removals is set; the rest passes to the hub.
type gatedPresence struct {
	p        Presence
	l        PresenceLister
	channel  string
	removals bool
	gate     chan struct{}
	// reads: when set, the presence reads of channel wait for gate
	// instead of the writes.
	reads *atomic.Bool
}

func gatePresence(c *Config, channel string, removals bool, gate chan struct{}) {
	l, _ := c.Presence.(PresenceLister)
	c.Presence = &gatedPresence{p: c.Presence, l: l, channel: channel, removals: removals, gate: gate}
}

func (g *gatedPresence) wait(ctx context.Context, channel string) error {
	if channel != g.channel {
		return nil
	}
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedPresence) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	if !g.removals && g.reads == nil {
		if err := g.wait(ctx, ch); err != nil {
			return err
		}
	}
	return g.p.AddPresence(ctx, ch, info)
}

func (g *gatedPresence) RemovePresence(ctx context.Context, ch, clientID, userID string) error {
	if g.removals && g.reads == nil {
		if err := g.wait(ctx, ch); err != nil {
			return err
		}
	}
	return g.p.RemovePresence(ctx, ch, clientID, userID)
}

func (g *gatedPresence) PublishJoin(ctx context.Context, ch string, info *hub.ClientInfo) error {
	return g.p.PublishJoin(ctx, ch, info)
}

func (g *gatedPresence) PublishLeave(ctx context.Context, ch string, info *hub.ClientInfo) error {
	return g.p.PublishLeave(ctx, ch, info)
}

func (g *gatedPresence) Presence(ctx context.Context, ch string) (map[string]*hub.ClientInfo, error) {
	if g.reads != nil && g.reads.Load() {
		if err := g.wait(ctx, ch); err != nil {
			return nil, err
		}
	}
	return g.l.Presence(ctx, ch)
}

// Entering the lobby waits for no engine call: while the lobby's
// presence writes hang, clients connect and exchange lobby broadcasts on
// their process; once the engine answers, the other processes know them.
func TestClusterISSUNLobbyEntryWaitsForNoEngineCall(t *testing.T) {
	prefix := clusterPrefix(t)
	gate := make(chan struct{})
	s1 := newClusterServer(t, prefix, func(c *Config) { gatePresence(c, LobbyChannel, false, gate) })
	s2 := newClusterServer(t, prefix, nil)
	require.Eventually(t, func() bool { return s1.cluster.lobbyLive() && s2.cluster.lobbyLive() }, testenv.Wait, testenv.Tick)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s1, 2)
	// The handshake goroutine enters the lobby just after the echo: wait
	// for it, or a's broadcast may come first.
	require.Eventually(t, func() bool { return len(*s1.lobby.snap.Load()) == 2 }, testenv.Wait, testenv.Tick)
	a.Send(event(broadcast, 1, "local"))
	require.Equal(t, "local", string(nextGame(t, b).Payload), "a's events are read while its lobby presence write hangs")
	b.Send(event(broadcast, 2, "back"))
	require.Equal(t, "back", string(nextGame(t, a).Payload))
	pres, err := s2.hub.Presence(context.Background(), LobbyChannel)
	require.NoError(t, err)
	require.Empty(t, pres, "no lobby presence written yet")
	require.False(t, knowsInLobby(s2, 1) || knowsInLobby(s2, 2))

	close(gate)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1, 2}})
	c := dialISSUN(t, s2, 3)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1, 2}, s2: {3}})
	a.Send(event(broadcast, 3, "across"))
	require.Equal(t, "across", string(nextGame(t, c).Payload))
}

// A client moves between the lobby and a room in one step on its
// process: while its room presence is being written it gets no lobby
// broadcast, and while its room presence is being removed it already
// gets them.
func TestISSUNLobbyRoomMoveHasNoOverlapNorGap(t *testing.T) {
	for _, removals := range []bool{false, true} {
		t.Run(map[bool]string{false: "join", true: "leave"}[removals], func(t *testing.T) {
			gate := make(chan struct{})
			open := func() {
				select {
				case <-gate:
				default:
					close(gate)
				}
			}
			t.Cleanup(open)
			s := newTestServer(t, func(c *Config) { gatePresence(c, "relay:match", removals, gate) })
			a, b := dialISSUN(t, s, 1), dialISSUN(t, s, 2)
			if removals { // the join passes; the leave's removal hangs
				issunJoin(t, b, "match")
				b.Send(control(wire.SuffixLeave, wire.RoomRequest{Room: "match"}.Append(nil)))
				require.Eventually(t, func() bool { return s.Rooms()["match"] == 0 }, testenv.Wait, testenv.Tick)
				a.Send(event(broadcast, 1, "lobby"))
				require.Equal(t, "lobby", string(nextGame(t, b).Payload), "back in the lobby while its room presence is removed")
				open()
				for b.Next().TypeName != game("SwitchboardLeft") {
				}
				return
			}
			b.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match"}.Append(nil)))
			require.Eventually(t, func() bool { return s.Rooms()["match"] == 1 }, testenv.Wait, testenv.Tick)
			a.Send(event(broadcast, 1, "lobby"))
			a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 2, "marker"))
			require.Equal(t, "marker", string(nextGame(t, b).Payload), "no lobby broadcast once in the room")
			open()
			for b.Next().TypeName != game("SwitchboardJoined") {
			}
		})
	}
}

// Fast moves between the lobby and a room end with the other processes
// knowing the last state: the lobby's presence and remote members follow
// the connection's moves in order.
func TestClusterISSUNLobbyFastMoves(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1}, s2: {2}})
	lobbyPresence := func() []string {
		pres, err := s1.hub.Presence(context.Background(), LobbyChannel)
		require.NoError(t, err)
		var ids []string
		for _, info := range pres {
			var e presenceEntry
			require.NoError(t, json.Unmarshal(info.ChanInfo, &e))
			ids = append(ids, e.NodeID)
		}
		return ids
	}
	for range 10 {
		issunJoin(t, b, "match")
		issunLeave(t, b, "match")
	}
	require.Eventually(t, func() bool {
		return knowsInLobby(s1, 2) && s1.cluster.lobby.remoteCount() == 1 && len(lobbyPresence()) == 2
	}, testenv.Wait, testenv.Tick, "b is in the lobby everywhere")
	a.Send(event(broadcast, 1, "lobby"))
	require.Equal(t, "lobby", string(nextGame(t, b).Payload))

	for range 10 {
		issunJoin(t, b, "match")
		issunLeave(t, b, "match")
		issunJoin(t, b, "match")
		issunJoin(t, b, "other") // room to room, not through the lobby
	}
	require.Eventually(t, func() bool {
		return !knowsInLobby(s1, 2) && s1.cluster.lobby.remoteCount() == 0 && len(lobbyPresence()) == 1
	}, testenv.Wait, testenv.Tick, "b is in a room, in no lobby")
	require.ElementsMatch(t, []string{"1"}, lobbyPresence())
}

// lobbyMemberFrame is another process's bus join or leave of lobby
// member i.
func lobbyMemberFrame(kind byte, i int) []byte {
	return busMemberFrame(kind, transportISSUN, "other-process",
		&busMember{Node: uint64(i), SID: fmt.Sprint("sid-", i), Label: presenceTransport(transportISSUN)})
}

// A remote join and leave of the lobby costs the same whatever the
// lobby's size: the remote members' NodeId counts and ISSUN index change
// one member at a time (bytes allocated per join+leave, with 10 and with
// 10,000 remote members; rebuilding them would allocate ~1 MB).
func TestClusterLobbyJoinCostIndependentOfSize(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Bus = nopBus{} })
	cl := s.cluster
	require.Eventually(t, cl.lobbySynced, testenv.Wait, testenv.Tick) // its first sync drops members not in presence
	perJoinLeave := func() uint64 {
		const ops = 200
		frames := make([][2][]byte, ops)
		for i := range frames {
			frames[i] = [2][]byte{lobbyMemberFrame(busJoin, 500000+i), lobbyMemberFrame(busLeave, 500000+i)}
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, f := range frames {
			cl.handle(LobbyChannel, f[0])
			cl.handle(LobbyChannel, f[1])
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / ops
	}
	for i := range 10 {
		cl.handle(LobbyChannel, lobbyMemberFrame(busJoin, i+1))
	}
	small := perJoinLeave()
	for i := 10; i < 10000; i++ {
		cl.handle(LobbyChannel, lobbyMemberFrame(busJoin, i+1))
	}
	require.Equal(t, 10000, cl.lobby.remoteCount())
	require.Equal(t, cl.lobby, cl.issunHolder(9999))
	large := perJoinLeave()
	t.Logf("bytes per join+leave: %d with 10 remote members, %d with 10,000", small, large)
	require.Less(t, large, small+16<<10, "a join into a large lobby allocates as one into a small one")
	require.Equal(t, 10000, cl.lobby.remoteCount())
	require.Nil(t, cl.issunHolder(500000), "the leaves left no index entry")
}

// A room's release drops its remote members from the ISSUN index; a
// bus message handled after the release adds none back.
func TestClusterIndexCleanedAtRoomRelease(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Bus = nopBus{} })
	cl := s.cluster
	br, err := cl.acquire("match")
	require.NoError(t, err)
	join := func(i int) []byte {
		return busMemberFrame(busJoin, transportISSUN, "other-process",
			&busMember{Node: uint64(i), SID: fmt.Sprint("sid-", i), Label: presenceTransport(transportISSUN)})
	}
	cl.handle("relay:match", join(42))
	cl.handle("relay:match", join(43))
	require.Equal(t, br, cl.issunHolder(42))
	require.True(t, br.hasRemote(43))
	cl.release(br)
	require.Nil(t, cl.issunHolder(42))
	require.Nil(t, cl.issunHolder(43))
	require.False(t, br.hasRemote(42))
	require.Zero(t, br.remoteCount())
	cl.handle("relay:match", join(44))
	require.Nil(t, cl.issunHolder(44), "not held: no member added")
	cl.idxMu.RLock()
	defer cl.idxMu.RUnlock()
	require.Empty(t, cl.issunNodes)
}

// lobbyWritten reports whether the lobby presence of connection id of s
// is written (false, done when its step failed), and whether no step of
// it is under way.
func lobbyWritten(s *testServer, id wire.NodeID) (written, idle bool) {
	c := s.node(id)
	if c == nil {
		return false, false
	}
	c.lobby.mu.Lock()
	idle = !c.lobby.running
	c.lobby.mu.Unlock()
	if !c.lobby.step.TryLock() {
		return false, false
	}
	defer c.lobby.step.Unlock()
	return c.lobby.in, idle
}

// A client entering the lobby while Redis is down is in its process's
// lobby only; once Redis is back, the lobby sync (after the PUB/SUB
// reconnect) writes its presence and join, and the other processes know
// it. The restarted Redis lost every lobby presence: those are written
// again too.
func TestClusterISSUNLobbyEntryWhileRedisIsDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	prefix := clusterPrefix(t)
	start := func() *testServer {
		b, err := redis.New(redis.Config{Address: srv.URL(), Prefix: prefix})
		require.NoError(t, err)
		return startTestServer(t, hub.Config{Broker: b, Presence: b}, true, nil)
	}
	s1, s2 := start(), start()
	a := dialISSUN(t, s1, 1)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1}, s2: {}})
	require.Eventually(t, func() bool { return knowsInLobby(s2, 1) }, testenv.Wait, testenv.Tick)

	srv.Kill()
	b := dialISSUN(t, s2, 2)
	require.Eventually(t, func() bool {
		written, idle := lobbyWritten(s2, 2)
		return idle && !written
	}, testenv.Wait, testenv.Tick, "b's lobby presence write failed")
	a.Send(event(broadcast, 1, "local only"))
	require.False(t, knowsInLobby(s1, 2))

	srv.Start()
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1}, s2: {2}})
	require.Eventually(t, func() bool {
		pres, err := s1.hub.Presence(context.Background(), LobbyChannel)
		return err == nil && len(pres) == 2
	}, testenv.Wait, testenv.Tick, "both lobby presences written again")
	a.Send(event(broadcast, 2, "across"))
	require.Equal(t, "across", string(nextGame(t, b).Payload))
	b.Send(event(broadcast, 3, "back"))
	require.Equal(t, "back", string(nextGame(t, a).Payload))
}

// On the memory engine (no bus) the lobby is the process's alone: no
// presence is written for it and no lobby step runs.
func TestISSUNLobbyMemoryEngineWritesNothing(t *testing.T) {
	s := newTestServer(t, nil)
	require.Nil(t, s.cluster)
	a, b := dialISSUN(t, s, 1), dialISSUN(t, s, 2)
	a.Send(event(broadcast, 1, "hello"))
	require.Equal(t, "hello", string(nextGame(t, b).Payload))
	issunJoin(t, b, "match")
	issunLeave(t, b, "match")
	a.Send(event(broadcast, 2, "again"))
	require.Equal(t, "again", string(nextGame(t, b).Payload))
	pres, err := s.hub.Presence(context.Background(), LobbyChannel)
	require.NoError(t, err)
	require.Empty(t, pres)
	for _, id := range []wire.NodeID{1, 2} {
		c := s.node(id)
		c.lobby.mu.Lock()
		require.Nil(t, c.lobby.done, "no lobby step started")
		c.lobby.mu.Unlock()
	}
}

// A targeted event to a known remote member that the full bus queue
// drops is counted once, as bus_queue_full, not as an unknown target too.
func TestClusterTargetedDropCountedOnce(t *testing.T) {
	release := make(chan struct{})
	s := newTestServer(t, func(c *Config) { c.Bus, c.BusQueue = stuckBus{release: release}, 1 })
	t.Cleanup(func() { close(release) }) // before the server's shutdown
	cl := s.cluster
	require.Eventually(t, cl.lobbySynced, testenv.Wait, testenv.Tick) // its first sync drops members not in presence
	cl.handle(LobbyChannel, lobbyMemberFrame(busJoin, 77))
	require.Equal(t, cl.lobby, cl.issunHolder(77))
	full := func() float64 { return testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropBusQueueFull)) }
	a := dialISSUN(t, s, 1)
	const n = 5
	for i := range n {
		a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, uint64(i), "to 77"))
	}
	a.Send(control(wire.SuffixJoin, []byte{0xff})) // answered after the events were handled
	require.Equal(t, "multiplayer_pong"+wire.SuffixError, a.Next().TypeName)
	// One message is in the publisher's hands and one fits the queue: a's
	// lobby join and the first event, at most.
	require.GreaterOrEqual(t, full(), float64(n-2))
	require.Zero(t, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropUnknownTarget)))
}

// A user change in the lobby (a SwitchboardAuth after an auth-none
// handshake) reaches the other processes: their remote member has the
// new user.
func TestClusterISSUNLobbyUserChangeReachesOthers(t *testing.T) {
	const secret = "relay-test-secret"
	prefix := clusterPrefix(t)
	mod := func(c *Config) { c.Verifier = auth.NewTokenVerifier(secret, "", "") }
	s1, s2 := newClusterServer(t, prefix, mod), newClusterServer(t, prefix, mod)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2)
	waitLobby(t, map[*testServer][]wire.NodeID{s1: {1}, s2: {2}})
	tok, err := auth.SignConnect(secret, "user-1", time.Hour, time.Now())
	require.NoError(t, err)
	a.Send(control(wire.SuffixAuth, wire.AuthRequest{Token: tok}.Append(nil)))
	require.Equal(t, game("SwitchboardWelcome"), a.Next().TypeName)
	require.Eventually(t, func() bool {
		list := s2.cluster.lobby.remoteMembers()
		return len(list) == 1 && list[0].user == "user-1"
	}, testenv.Wait, testenv.Tick, "s2 knows a's new user")
	pres, err := s2.hub.Presence(context.Background(), LobbyChannel)
	require.NoError(t, err)
	users := []string{}
	for _, info := range pres {
		users = append(users, info.UserID)
	}
	require.ElementsMatch(t, []string{"user-1", ""}, users)
	a.Send(event(broadcast, 1, "still here"))
	require.Equal(t, "still here", string(nextGame(t, b).Payload))
}

// A room whose remote members are of another protocol refuses a join
// (errRoomTransport), told from the counts by transport.
func TestClusterJoinRefusedForAnotherProtocolsRoom(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Bus = nopBus{} })
	br, err := s.cluster.acquire("arena")
	require.NoError(t, err)
	s.cluster.handle("relay:arena", busMemberFrame(busJoin, transportNative, "other-process",
		&busMember{Node: 9, SID: "n9", Label: presenceTransport(transportNative)}))
	require.True(t, br.otherTransport(transportISSUN))
	require.False(t, br.otherTransport(transportNative))
	a := dialISSUN(t, s, 1)
	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "arena"}.Append(nil)))
	require.Equal(t, "multiplayer_pong"+wire.SuffixError, a.Next().TypeName)
	require.Empty(t, s.Rooms())
	s.cluster.handle("relay:arena", busMemberFrame(busLeave, transportNative, "other-process",
		&busMember{Node: 9, SID: "n9", Label: presenceTransport(transportNative)}))
	require.False(t, br.otherTransport(transportISSUN))
	s.cluster.release(br)
}

// A lobby sync whose presence read hangs holds up no lobby entry, no
// lobby exit and no room join.
func TestClusterISSUNLobbySyncHoldsUpNoEntry(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	var reads atomic.Bool
	s1 := newClusterServer(t, prefix, func(c *Config) {
		c.Clock, c.SyncInterval = clk, time.Minute
		gatePresence(c, LobbyChannel, false, gate)
		c.Presence.(*gatedPresence).reads = &reads
	})
	s2 := newClusterServer(t, prefix, nil)
	require.Eventually(t, func() bool { return s1.cluster.lobbySynced() && s2.cluster.lobbyLive() }, testenv.Wait, testenv.Tick)
	reads.Store(true)
	require.Eventually(t, func() bool { return clk.Pending() >= 1 }, testenv.Wait, testenv.Tick) // the sync loop's timer
	clk.Advance(time.Minute)
	require.Eventually(t, func() bool {
		if s1.cluster.lobby.syncMu.TryLock() {
			s1.cluster.lobby.syncMu.Unlock()
			return false
		}
		return true
	}, testenv.Wait, testenv.Tick, "the lobby sync is reading presence")
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s1, 2)
	a.Send(event(broadcast, 1, "hi"))
	require.Equal(t, "hi", string(nextGame(t, b).Payload))
	c := dialISSUN(t, s2, 3)
	require.Eventually(t, func() bool { return knowsInLobby(s2, 1) && knowsInLobby(s2, 2) && knowsInLobby(s1, 3) },
		testenv.Wait, testenv.Tick, "lobby joins went out during the sync")
	issunJoin(t, b, "match")
	issunJoin(t, c, "match")
	require.Eventually(t, func() bool { return !knowsInLobby(s2, 2) && s1.cluster.room("match").hasRemote(3) },
		testenv.Wait, testenv.Tick)
	b.Send(event(broadcast, 3, "room"))
	require.Equal(t, "room", string(nextGame(t, c).Payload))
}
