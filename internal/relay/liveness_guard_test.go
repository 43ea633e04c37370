package relay

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// judging reports whether s's relay takes the processes its registry
// does not list for dead.
func judging(s *liveServer) bool { return s.cluster.liveness().judging }

// countLeaves adds to got the NodeIds the PRESENCE messages c has
// received (without waiting) say left.
func countLeaves(c *relaytest.Native, got map[wire.NodeID]int) {
	for {
		select {
		case m := <-c.Control:
			if p, ok := m.(*wire.Presence); ok {
				for _, id := range p.Leaves {
					got[id]++
				}
			}
		default:
			return
		}
	}
}

// cleaning reports whether a cleanup of dead processes' entries runs on
// br's channel in br's process (s).
func cleaning(s *liveServer, br *busRoom) bool {
	s.cluster.live.mu.Lock()
	defer s.cluster.live.mu.Unlock()
	c := s.cluster.live.cleans[br.topic]
	return c != nil && len(c.removing) > 0
}

// A process whose control subscription is down (its other engine calls
// work) hears no announcement, its own included: its registry soon lists
// only itself, and it must not take the others for dead. Nobody's
// presence is removed, no hub leave is published, no member is dropped;
// once its control plane works again for the registry's TTL, it judges
// again.
func TestLivenessDeafProcessJudgesNobody(t *testing.T) {
	lc := newLiveCluster(t)
	a, b, c := lc.start(t, nil), lc.start(t, nil), lc.start(t, nil)
	all := []*liveServer{a, b, c}
	na, nb, nc := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2), dialNative(t, c.testServer, 3)
	for _, n := range []*relaytest.Native{na, nb, nc} {
		n.Join("arena")
	}
	require.Eventually(t, func() bool {
		return remoteCount(a, "arena") == 2 && remoteCount(b, "arena") == 2 && remoteCount(c, "arena") == 2
	}, testenv.Wait, testenv.Tick)
	lc.advanceUntil(t, func() bool { return judging(a) && judging(b) && judging(c) }, "every registry is complete")
	const ch = ChannelPrefix + "arena"

	a.deaf.deaf.Store(true)
	br := a.cluster.room("arena")
	syncs := br.syncs.Load()
	end := lc.clk.Now().Add(a.hub.NodeTTL() + deadSettle + DefaultSyncInterval + 2*livenessEvery)
	lc.advanceUntil(t, func() bool { return !lc.clk.Now().Before(end) && br.syncs.Load() > syncs },
		"a is deaf past the TTL, the settle time and a sync")
	require.Equal(t, []string{a.cluster.origin}, a.hub.LiveIDs(), "a's registry lists only itself")
	for _, s := range all {
		require.Equal(t, 2, remoteCount(s, "arena"), "no member dropped")
		require.Zero(t, s.leaves.total(), "no hub leave")
		require.Len(t, entriesOf(t, a, ch, s.cluster.origin), 1, "no presence removed")
	}
	for _, n := range []*relaytest.Native{na, nb, nc} {
		got := map[wire.NodeID]int{}
		countLeaves(n, got)
		require.Empty(t, got, "no leave told")
	}
	// b's NodeId stays taken on a (its directory entry counts).
	_, err := relaytest.TryNative(t, a.Addr().String(), &wire.Hello{NodeID: 2}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
	require.Len(t, entriesOf(t, a, nodeChannel(2), b.cluster.origin), 1)
	require.False(t, judging(a))

	// The plane delivers again: a judges once it has heard its own
	// announcements for the TTL, and finds the others live.
	a.deaf.deaf.Store(false)
	back := lc.clk.Now()
	lc.advanceUntil(t, func() bool { return judging(a) }, "a judges again")
	require.GreaterOrEqual(t, lc.clk.Now().Sub(back), a.hub.NodeTTL())
	require.False(t, a.cluster.liveness().dead(b.cluster.origin))
	require.False(t, a.cluster.liveness().dead(c.cluster.origin))
	require.Equal(t, 2, remoteCount(a, "arena"))
}

// A process that leaves the registry cleanly (Hub.Shutdown announces the
// leave first) while its relay drains with slow presence removals: the
// others drop its members at once, telling their clients once, and never
// clean its hub presence themselves; its own leaves are the only ones.
func TestLivenessCleanLeaveOneHubLeave(t *testing.T) {
	lc := newLiveCluster(t)
	a, b, na, nb, nb2 := arenaOnTwo(t, lc)
	lc.advanceUntil(t, func() bool { return judging(a) }, "a's registry is complete")
	const ch = ChannelPrefix + "arena"
	sids := []string{nb.Welcome.SessionID, nb2.Welcome.SessionID}
	bOrigin := b.cluster.origin
	seen := map[wire.NodeID]int{}
	countLeaves(na, seen)

	// b's hub leaves the registry as Hub.Shutdown does (a leave, then
	// silence); its relay drains, its presence removals held.
	held := b.leaves.hold(ch)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, b.ctl.Broadcast(ctx, []byte(`{"t":"leave","n":"`+bOrigin+`"}`)))
	require.NoError(t, b.ctl.Close(ctx))
	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(ctx) }()
	require.Eventually(t, func() bool { return held.held.Load() == 2 }, testenv.Wait, testenv.Tick, "b's removals wait")

	lc.advanceUntil(t, func() bool { return remoteCount(a, "arena") == 0 }, "a drops b's members at once")
	require.True(t, a.cluster.liveness().dead(bOrigin))
	end := lc.clk.Now().Add(deadSettle + 2*livenessEvery + a.hub.NodeTTL())
	lc.advanceUntil(t, func() bool { return !lc.clk.Now().Before(end) }, "past the settle time and the registry's TTL")
	br := a.cluster.room("arena")
	require.ElementsMatch(t, sids, entriesOf(t, a, ch, bOrigin), "b's entries are still there")
	a.cluster.sync(br)
	require.Eventually(t, func() bool { return !cleaning(a, br) }, testenv.Wait, testenv.Tick)
	require.Zero(t, a.leaves.total(), "a cleans nothing of a process that left cleanly")

	close(held.release)
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("b's shutdown did not end")
	}
	require.Empty(t, entriesOf(t, a, ch, bOrigin))
	for _, sid := range sids {
		require.Equal(t, 1, a.leaves.count(ch, sid)+b.leaves.count(ch, sid), "one hub leave per member")
	}
	require.Eventually(t, func() bool {
		br.mu.Lock()
		defer br.mu.Unlock()
		_, g1 := br.gone[sids[0]]
		_, g2 := br.gone[sids[1]]
		return g1 && g2
	}, testenv.Wait, testenv.Tick, "b's bus leaves reached a")
	countLeaves(na, seen)
	require.Equal(t, map[wire.NodeID]int{2: 1, 3: 1}, seen, "a's client is told each leave once")
}

// A slow engine during a cleanup of a dead process's entries delays
// neither the room's syncs nor the liveness check nor a JOIN; the cleanup
// then completes with one hub leave.
func TestLivenessSlowCleanupBlocksNothing(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	na.Join("arena")
	nb.Join("arena")
	require.Eventually(t, func() bool { return remoteCount(a, "arena") == 1 }, testenv.Wait, testenv.Tick)
	lc.advanceUntil(t, func() bool { return judging(a) }, "a's registry is complete")
	const ch = ChannelPrefix + "arena"
	bOrigin := b.cluster.origin
	held := a.leaves.hold(ch)
	b.crash(t)
	lc.advanceUntil(t, func() bool { return held.held.Load() > 0 }, "a's cleanup of b's entry is held")

	br := a.cluster.room("arena")
	synced := make(chan struct{})
	go func() { a.cluster.sync(br); close(synced) }()
	require.Eventually(t, func() bool {
		select {
		case <-synced:
			return true
		default:
			return false
		}
	}, testenv.Wait, testenv.Tick, "a sync of the room is not held by the cleanup")
	v := a.cluster.live.view.Load()
	lc.advanceUntil(t, func() bool { return a.cluster.live.view.Load() != v }, "the liveness check goes on")
	dialNative(t, a.testServer, 3).Join("arena")

	close(held.release)
	require.Eventually(t, func() bool { return len(entriesOf(t, a, ch, bOrigin)) == 0 && !cleaning(a, br) },
		testenv.Wait, testenv.Tick)
	require.Equal(t, 1, a.leaves.count(ch, nb.Welcome.SessionID), "one hub leave, though two syncs read the entry")
}

// A bus join of a process already judged dead (late news: published
// before it died) adds no member: nothing would drop it again.
func TestLivenessLateJoinOfDeadProcessIgnored(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	na.Join("arena")
	nb.Join("arena")
	na.AwaitJoin(2)
	bOrigin := b.cluster.origin
	b.crash(t)
	lc.advanceUntil(t, func() bool { return gotLeave(na, 2) }, "b's member leaves")

	a.cluster.handle(ChannelPrefix+"arena", busMemberFrame(busJoin, transportNative, bOrigin,
		&busMember{Node: 5, SID: "late-session", Label: presenceTransport(transportNative)}))
	require.Zero(t, remoteCount(a, "arena"))
}

// A JOIN meeting a dead process's member with its NodeId drops it,
// schedules the cleanup of its hub presence, and goes on: a parked
// session of the same user with that NodeId on a live process is then
// ended as usual, and the JOIN is admitted.
func TestLivenessFreeNodeLooksOnAfterDeadMember(t *testing.T) {
	const secret = "node-secret"
	mod := func(c *Config) { c.Verifier = auth.NewTokenVerifier(secret, "", "") }
	lc := newLiveCluster(t)
	a, b := lc.startWith(t, nil, mod), lc.startWith(t, nil, mod)
	bob, err := auth.SignConnect(secret, "bob", time.Hour, time.Now())
	require.NoError(t, err)
	alice, err := auth.SignConnect(secret, "alice", time.Hour, time.Now())
	require.NoError(t, err)
	na := relaytest.DialNative(t, a.Addr().String(), &wire.Hello{NodeID: 1, Token: alice})
	na.Join("arena")
	old := relaytest.DialNative(t, b.Addr().String(), &wire.Hello{NodeID: 7, Token: bob})
	old.Join("arena")
	na.AwaitJoin(7)
	lose(t, old, b.testServer)
	lc.advanceUntil(t, func() bool { return a.cluster.liveness().confirmed && !a.cluster.liveness().dead(b.cluster.origin) }, "a judges (complete for the echo gap), b is live")

	// A member of a dead process with NodeId 7 too, which a's check has
	// not dropped yet.
	br := a.cluster.room("arena")
	br.news.Lock()
	br.mu.Lock()
	br.putRemoteLocked(remoteMember{node: 7, sid: "dead-session", process: "dead-process", transport: transportNative, added: lc.clk.Now()})
	br.mu.Unlock()
	br.news.Unlock()
	// Never listed, met unlisted an echo gap ago: dead.
	a.cluster.live.mu.Lock()
	a.cluster.live.met["dead-process"] = lc.clk.Now().Add(-a.hub.EchoGap())
	a.cluster.live.mu.Unlock()

	fresh := relaytest.DialNative(t, a.Addr().String(), &wire.Hello{NodeID: 7, Token: bob})
	fresh.SendControl(&wire.Join{RequestID: 4, Room: "arena"})
	j := nextSkippingPresence[*wire.Joined](t, fresh, "JOINED")
	require.ElementsMatch(t, []wire.NodeID{1, 7}, nodeIDs(j.Members))
	require.Zero(t, parkedCount(b.testServer), "the parked session ended on b")
	require.Zero(t, remoteCount(a, "arena"))
	a.cluster.live.mu.Lock()
	_, due := a.cluster.live.due[br]
	a.cluster.live.mu.Unlock()
	require.True(t, due, "the dead member's cleanup is scheduled")
}

// A directory answer cached before its process died counts the next
// targeted event unknown_target, as a missing NodeId, instead of sending
// it to the dead process's topic; the entry is forgotten.
func TestLivenessDirectoryCacheOfDeadProcess(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	na := dialISSUN(t, a.testServer, 1)
	bOrigin := b.cluster.origin
	b.crash(t)
	lc.advanceUntil(t, func() bool { return a.cluster.liveness().dead(bOrigin) }, "b is dead for a")

	a.cluster.dirMu.Lock()
	a.cluster.dir.cache[2] = &dirEntry{process: bOrigin, expires: lc.clk.Now().Add(dirTTL)}
	a.cluster.dirMu.Unlock()
	published := testutil.ToFloat64(a.cluster.published)
	na.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 1, "to the dead"))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(a.metrics.drops.WithLabelValues(dropUnknownTarget)) == 1
	}, testenv.Wait, testenv.Tick)
	require.Equal(t, published, testutil.ToFloat64(a.cluster.published), "nothing sent to b's topic")
	a.cluster.dirMu.Lock()
	defer a.cluster.dirMu.Unlock()
	require.NotContains(t, a.cluster.dir.cache, wire.NodeID(2))
}

// Two reads finding the same directory entry of a dead process while its
// removal is under way start one removal, not two.
func TestLivenessDirectoryForgetOnce(t *testing.T) {
	lc := newLiveCluster(t)
	a := lc.start(t, nil)
	ch := nodeChannel(7)
	held := a.leaves.hold(ch)
	dead := []dirHolder{{process: "dead-process", user: "u", sid: "dead-session"}}
	a.cluster.dirForget(7, dead)
	require.Eventually(t, func() bool { return held.held.Load() == 1 }, testenv.Wait, testenv.Tick)
	a.cluster.dirForget(7, dead)
	close(held.release)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx)) // waits for the cluster's goroutines
	require.Equal(t, int32(1), held.held.Load(), "one removal")
}

// A cleanup of a dead process's entries held by a slow engine while the
// room is released and held again (a JOIN: a new busRoom) is not started
// a second time by the new room's syncs: one hub leave per member.
func TestLivenessCleanupOncePerChannel(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	j := na.Join("arena")
	nb.Join("arena")
	require.Eventually(t, func() bool { return remoteCount(a, "arena") == 1 }, testenv.Wait, testenv.Tick)
	const ch = ChannelPrefix + "arena"
	held := a.leaves.hold(ch)
	b.crash(t)
	lc.advanceUntil(t, func() bool { return held.held.Load() == 1 }, "a's cleanup of b's entry is held")

	old := a.cluster.room("arena")
	na.SendControl(&wire.Leave{RequestID: 7, Handle: j.Handle})
	nextSkippingPresence[*wire.Left](t, na, "LEFT")
	require.Nil(t, a.cluster.room("arena"), "released")
	na.Join("arena")
	br := a.cluster.room("arena")
	require.NotSame(t, old, br, "a new busRoom")
	require.Len(t, entriesOf(t, a, ch, a.cluster.origin), 1, "a's member's entry: a is the room's cleaner")
	n := br.syncs.Load()
	lc.advanceUntil(t, func() bool { return br.syncs.Load() >= n+2 }, "the new room syncs, reading b's entry")

	close(held.release)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx)) // waits for the cluster's goroutines
	require.Equal(t, 1, a.leaves.count(ch, nb.Welcome.SessionID), "one hub leave")
}

// A bus join handled while a check judges its process dead and drops the
// process's members (between the join's arrival and its apply) adds no
// member: the join reads the liveness under the room's news lock.
func TestLivenessJoinRacingCheckIgnored(t *testing.T) {
	lc := newLiveCluster(t)
	a := lc.start(t, nil)
	na := dialNative(t, a.testServer, 1)
	na.Join("arena")
	br := a.cluster.room("arena")
	reached, resume := make(chan struct{}), make(chan struct{})
	hook := func() { close(reached); <-resume }
	a.cluster.beforeNews.Store(&hook)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		a.cluster.handle(ChannelPrefix+"arena", busMemberFrame(busJoin, transportNative, "racing-process",
			&busMember{Node: 5, SID: "racing-session", Label: presenceTransport(transportNative)}))
	}()
	<-reached
	// The check: the process is dead now; its members (none yet) dropped.
	a.cluster.live.view.Store(&liveView{judging: true, confirmed: true, self: a.cluster.origin,
		live: map[string]struct{}{a.cluster.origin: {}}})
	require.True(t, a.cluster.liveness().dead("racing-process"))
	require.Zero(t, a.cluster.dropDead(br, a.cluster.liveness()))
	close(resume)
	<-handled
	require.Zero(t, remoteCount(a, "arena"), "the join of a process judged dead meanwhile is ignored")
}

// A directory read skips the entries of every dead process but removes
// only those of a process that did not leave cleanly: one that left
// cleanly (its relay is closing) removes its own.
func TestLivenessDirectoryKeepsCleanlyLeftEntries(t *testing.T) {
	lc := newLiveCluster(t)
	a := lc.start(t, nil)
	ch := nodeChannel(7)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	for _, p := range []string{"drained", "crashed"} {
		ci, err := json.Marshal(presenceEntry{NodeID: "7", Transport: presenceTransport(transportNative), Process: p})
		require.NoError(t, err)
		require.NoError(t, a.hub.AddPresence(ctx, ch, &hub.ClientInfo{ClientID: p + "-session", UserID: "u", ChanInfo: ci}))
	}
	a.cluster.live.view.Store(&liveView{judging: true, confirmed: true, self: a.cluster.origin,
		live: map[string]struct{}{a.cluster.origin: {}}, left: map[string]struct{}{"drained": {}}})
	got, err := a.cluster.dirRead(ctx, 7)
	require.NoError(t, err)
	require.Empty(t, got, "both are dead: skipped")
	require.NoError(t, a.Shutdown(ctx)) // waits for the removal (dirForget)
	require.Equal(t, []string{"drained-session"}, entriesOf(t, a, ch, "drained"), "the cleanly-left process's entry stays")
	require.Empty(t, entriesOf(t, a, ch, "crashed"), "the crashed process's entry is removed")
}

// A cleanup cut short by its bound (a removal held past opTimeout) has
// the room synced again at once, not at the next periodic sync: the
// entries it did not remove are removed then, one hub leave each.
func TestLivenessCutCleanupRetriedSoon(t *testing.T) {
	lc := newLiveCluster(t)
	a, b, _, nb, nb2 := arenaOnTwo(t, lc)
	const ch = ChannelPrefix + "arena"
	bOrigin := b.cluster.origin
	held := a.leaves.hold(ch)
	b.crash(t)
	lc.advanceUntil(t, func() bool { return held.held.Load() == 1 }, "a's cleanup of b's entries is held")
	// The fake clock stands still from here: no periodic sync, no check.
	require.Eventually(t, func() bool { return held.expired.Load() == 1 }, testenv.Wait, testenv.Tick,
		"the cleanup's bound ends the held removal")
	close(held.release)
	require.Eventually(t, func() bool { return len(entriesOf(t, a, ch, bOrigin)) == 0 }, testenv.Wait, testenv.Tick,
		"the room is synced again and b's entries removed")
	require.Eventually(t, func() bool {
		return a.leaves.count(ch, nb.Welcome.SessionID) == 1 && a.leaves.count(ch, nb2.Welcome.SessionID) == 1
	}, testenv.Wait, testenv.Tick, "one hub leave each")
}

// arenaOnTwo starts two processes with room "arena": one native member on
// a (NodeId 1), two on b (2 and 3), and returns once a knows b's two.
func arenaOnTwo(t *testing.T, lc *liveCluster) (a, b *liveServer, na, nb, nb2 *relaytest.Native) {
	t.Helper()
	a, b = lc.start(t, nil), lc.start(t, nil)
	na = dialNative(t, a.testServer, 1)
	nb, nb2 = dialNative(t, b.testServer, 2), dialNative(t, b.testServer, 3)
	for _, n := range []*relaytest.Native{na, nb, nb2} {
		n.Join("arena")
	}
	require.Eventually(t, func() bool { return remoteCount(a, "arena") == 2 }, testenv.Wait, testenv.Tick)
	return a, b, na, nb, nb2
}
