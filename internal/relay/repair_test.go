package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// failingAdds fails the presence additions of one channel while failing
// is set, as a Redis that is briefly down does. Once hold is set, the
// next addition of the channel signals entered and waits for release
// (a write in flight), and hold is cleared; after runs once it is written.
type failingAdds struct {
	writeOnly
	lister  PresenceLister
	channel string
	failing atomic.Bool
	failed  atomic.Int32
	adds    atomic.Int32 // additions of the channel tried
	hold    atomic.Bool
	entered chan struct{}
	release chan struct{}
	// after, when set, runs once the held addition was written (before it
	// returns).
	after func()
	// ended receives how the held addition's context ended, when it did
	// before release.
	ended chan error
}

// failAdds makes c's presence fail the additions of channel until the
// returned failingAdds' failing is cleared.
func failAdds(c *Config, channel string) *failingAdds {
	f := &failingAdds{writeOnly: c.Presence, lister: c.Presence.(PresenceLister), channel: channel,
		entered: make(chan struct{}, 1), release: make(chan struct{}), ended: make(chan error, 1)}
	f.failing.Store(true)
	c.Presence = f
	return f
}

func (f *failingAdds) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	if ch == f.channel {
		f.adds.Add(1)
	}
	if ch == f.channel && f.failing.Load() {
		f.failed.Add(1)
		return fmt.Errorf("%w: the test's engine is down", hub.ErrRetryLater)
	}
	if ch == f.channel && f.hold.CompareAndSwap(true, false) {
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			f.ended <- ctx.Err()
			return ctx.Err()
		}
		err := f.writeOnly.AddPresence(ctx, ch, info)
		if f.after != nil {
			f.after()
		}
		return err
	}
	return f.writeOnly.AddPresence(ctx, ch, info)
}

func (f *failingAdds) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	return f.lister.Presence(ctx, channel)
}

func repairs(s *testServer, outcome string) float64 {
	return testutil.ToFloat64(s.cluster.repair.outcomes.WithLabelValues(outcome))
}

// advanceUntil advances clk by repairEvery until cond holds.
func advanceUntil(t *testing.T, clk *clocktest.Fake, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		clk.Advance(repairEvery)
		return cond()
	}, testenv.Wait, testenv.Tick, msg)
}

// roomHas reports whether s's hub presence of room lists session sid.
func roomHas(t *testing.T, s *testServer, room, sid string) bool {
	pres, err := s.hub.Presence(context.Background(), ChannelPrefix+room)
	require.NoError(t, err)
	_, ok := pres[sid]
	return ok
}

// A JOIN whose room presence write failed is written again once the
// engine answers, so another process's sync keeps the member (without
// the repair the entry never comes back, and the sync drops it).
func TestClusterRoomPresenceRepaired(t *testing.T) {
	prefix := clusterPrefix(t)
	clk1, clk2 := clocktest.New(time.Now()), clocktest.New(time.Now())
	var fail *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, ChannelPrefix+"arena")
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk1, time.Hour, -1
	})
	s2 := newClusterServer(t, prefix, func(c *Config) {
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk2, time.Hour, time.Second
	})
	b := dialNative(t, s2, 2)
	b.Join("arena")
	a := dialNative(t, s1, 1)
	a.Join("arena")
	require.Equal(t, []wire.NodeID{1}, nodeIDs(nextPresence(t, b).Joins), "b hears a join by the bus")
	sid := s1.node(1).sid
	require.Positive(t, fail.failed.Load())
	require.False(t, roomHas(t, s2, "arena", sid))

	// While the engine still fails, a repair fails and a stays marked.
	advanceUntil(t, clk1, func() bool { return repairs(s1, repairFailed) > 0 }, "a repair was tried")
	require.True(t, s1.cluster.repairPending())
	require.False(t, roomHas(t, s2, "arena", sid))

	fail.failing.Store(false)
	advanceUntil(t, clk1, func() bool { return roomHas(t, s2, "arena", sid) }, "a's room presence is written again")
	require.Eventually(t, func() bool { return !s1.cluster.repairPending() }, testenv.Wait, testenv.Tick)
	require.Equal(t, 1.0, repairs(s1, repairRepaired))

	// s2's periodic sync finds a, so b hears nothing about it.
	br := s2.cluster.room("arena")
	syncs := br.syncs.Load()
	require.Eventually(t, func() bool {
		clk2.Advance(time.Second)
		return br.syncs.Load() > syncs
	}, testenv.Wait, testenv.Tick, "s2 synced arena")
	require.True(t, br.hasRemote(1), "s2 still knows a")
	c := dialNative(t, s2, 3)
	require.ElementsMatch(t, []wire.NodeID{1, 2, 3}, nodeIDs(c.Join("arena").Members))
	p := nextPresence(t, b)
	require.Empty(t, p.Leaves, "no leave of a came before c's join")
	require.Equal(t, []wire.NodeID{3}, nodeIDs(p.Joins))
}

// A failed NodeId directory write is written again once the engine
// answers: a handshake with the same NodeId on another process is then
// refused as a duplicate.
func TestClusterDirectoryEntryRepaired(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	var fail *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, nodeChannel(7))
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1
	})
	s2 := newClusterServer(t, prefix, nil)
	dialISSUN(t, s1, 7)
	require.Positive(t, fail.failed.Load())
	require.Empty(t, dirHolders(t, s2, 7), "the write failed")

	advanceUntil(t, clk, func() bool { return repairs(s1, repairFailed) > 0 }, "a repair was tried")
	require.Empty(t, dirHolders(t, s2, 7))

	fail.failing.Store(false)
	advanceUntil(t, clk, func() bool { return len(dirHolders(t, s2, 7)) == 1 }, "the directory entry is written again")
	_, err := tryISSUN(t, s2, 7)
	requireDuplicate(t, err)
	require.Eventually(t, func() bool { return !s1.cluster.repairPending() }, testenv.Wait, testenv.Tick)
	require.Equal(t, 1.0, repairs(s1, repairRepaired))
}

// A connection that unregisters before its repair is dropped from the
// set, and its presence is not written again.
func TestClusterRepairDropsGoneConnection(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	var fail *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, nodeChannel(8))
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1
	})
	a := dialISSUN(t, s1, 8)
	require.True(t, s1.cluster.repairPending())
	a.Close()
	require.Eventually(t, func() bool { return s1.node(8) == nil }, testenv.Wait, testenv.Tick)
	fail.failing.Store(false)
	adds := fail.adds.Load()
	advanceUntil(t, clk, func() bool { return !s1.cluster.repairPending() }, "the set forgets it")
	require.Equal(t, 1.0, repairs(s1, repairGone))
	require.Zero(t, repairs(s1, repairRepaired))
	require.Equal(t, adds, fail.adds.Load(), "no write of the gone connection's entry")
	require.Empty(t, dirHolders(t, s1, 8))
}

// holdRepair lets f's engine answer again and holds the repair's next
// write of f's channel in flight (awaitHeld).
func holdRepair(t *testing.T, clk *clocktest.Fake, f *failingAdds) {
	t.Helper()
	f.failing.Store(false)
	f.hold.Store(true)
	awaitHeld(t, clk, f)
}

// awaitHeld advances clk by repairEvery until f holds an addition.
func awaitHeld(t *testing.T, clk *clocktest.Fake, f *failingAdds) {
	t.Helper()
	advanceUntil(t, clk, func() bool {
		select {
		case <-f.entered:
			return true
		default:
			return false
		}
	}, "the repair's write is in flight")
}

// Shutdown ends a repair's write the engine does not answer at once (as
// the syncs' reads), rather than at its deadline or the write's timeout.
func TestClusterRepairEndsAtShutdown(t *testing.T) {
	clk := clocktest.New(time.Now())
	var fail *failingAdds
	s1 := newClusterServer(t, clusterPrefix(t), func(c *Config) {
		fail = failAdds(c, nodeChannel(6))
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1
	})
	s1.cluster.dir.writeWait.Store(int64(time.Hour)) // only close ends the held write
	dialISSUN(t, s1, 6)
	require.True(t, s1.cluster.repairPending())
	holdRepair(t, clk, fail)
	requireShutdownCancels(t, s1, fail.ended, "the held write")
}

// Two directory writes of one connection landing out of order leave the
// newer state: a rewrite that read "live" landing after the entry was
// marked parked writes "parked" again.
func TestClusterDirectoryWritesOutOfOrder(t *testing.T) {
	prefix := clusterPrefix(t)
	var fail *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, nodeChannel(5))
		fail.failing.Store(false)
	})
	s2 := newClusterServer(t, prefix, nil)
	dialISSUN(t, s1, 5)
	c := s1.node(5)
	require.NotNil(t, c)
	fail.hold.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); s1.cluster.dirAdd(s1.cluster.ctx, c) }() // reads "live"
	<-fail.entered
	s1.cluster.dirMarkParked(c, true) // lands first
	close(fail.release)
	<-done
	hs, err := s2.cluster.dirRead(context.Background(), 5)
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.True(t, hs[0].parked, "the newer state stays")
}

// repairResumeSetup starts s1 (whose room "arena" presence writes fail)
// and s2, with b on s2 and a on s1 in arena, a's write failed and a
// parked on s1.
func repairResumeSetup(t *testing.T) (s1, s2 *testServer, clk1, clk2 *clocktest.Fake, fail *failingAdds, a, b *relaytest.Native) {
	prefix := clusterPrefix(t)
	clk1, clk2 = clocktest.New(time.Now()), clocktest.New(time.Now())
	s1 = newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, ChannelPrefix+"arena")
		c.Clock, c.HeartbeatInterval, c.SyncInterval, c.ResumeGrace = clk1, time.Hour, -1, time.Hour
	})
	s2 = newClusterServer(t, prefix, func(c *Config) {
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk2, time.Hour, time.Second
	})
	b = dialNative(t, s2, 2)
	b.Join("arena")
	a = dialNative(t, s1, 1)
	a.Join("arena")
	require.Equal(t, []wire.NodeID{1}, nodeIDs(nextPresence(t, b).Joins))
	require.Positive(t, fail.failed.Load())
	require.True(t, s1.cluster.repairPending())
	lose(t, a, s1)
	return s1, s2, clk1, clk2, fail, a, b
}

// requireKeptBySync checks that s2's next sync of arena keeps a (NodeId
// 1, session sid): its entry is in the hub, and b hears no leave.
func requireKeptBySync(t *testing.T, s2 *testServer, clk2 *clocktest.Fake, b *relaytest.Native, sid string) {
	t.Helper()
	br := s2.cluster.room("arena")
	syncs := br.syncs.Load()
	require.Eventually(t, func() bool {
		clk2.Advance(time.Second)
		return br.syncs.Load() > syncs
	}, testenv.Wait, testenv.Tick, "s2 synced arena")
	require.True(t, roomHas(t, s2, "arena", sid), "the entry stays")
	require.True(t, br.hasRemote(1), "s2 still knows a")
	c := dialNative(t, s2, 3)
	c.Join("arena")
	p := nextPresence(t, b)
	require.Empty(t, p.Leaves, "no leave of a came before c's join")
	require.Equal(t, []wire.NodeID{3}, nodeIDs(p.Joins))
}

// A repair of a parked session whose room write is in flight when the
// client resumes on the same process (a new connection, the same session
// id) keeps the entry: the session is still in the room.
func TestClusterRepairInFlightAcrossResumeHere(t *testing.T) {
	s1, s2, clk1, clk2, fail, a, b := repairResumeSetup(t)
	sid := a.Welcome.SessionID
	holdRepair(t, clk1, fail)
	a2 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	require.Equal(t, sid, a2.Welcome.SessionID)
	close(fail.release)
	require.Eventually(t, func() bool { return repairs(s1, repairRepaired) >= 1 }, testenv.Wait, testenv.Tick)
	require.True(t, roomHas(t, s2, "arena", sid), "the repair did not remove the live session's entry")
	advanceUntil(t, clk1, func() bool { return !s1.cluster.repairPending() }, "the repair is done")
	requireKeptBySync(t, s2, clk2, b, sid)
}

// A mark still pending when a parked session resumes on the same process
// moves onto the new connection: its room entry is written once the
// engine answers.
func TestClusterRepairPendingAcrossResumeHere(t *testing.T) {
	s1, s2, clk1, clk2, fail, a, b := repairResumeSetup(t)
	sid := a.Welcome.SessionID
	a2 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	require.True(t, s1.cluster.repairPending())
	fail.failing.Store(false)
	advanceUntil(t, clk1, func() bool { return roomHas(t, s2, "arena", sid) }, "the room entry is written")
	require.Zero(t, repairs(s1, repairGone))
	requireKeptBySync(t, s2, clk2, b, sid)
}

// An opPresent notice that finds the serving pool full is not dropped:
// the repair writes the session's presence.
func TestClusterPresenceNoticeWhileBusyRepaired(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	s1 := newClusterServer(t, prefix, func(c *Config) {
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1
	})
	a := dialNative(t, s1, 3)
	a.Join("arena")
	c := s1.node(3)
	// Gone as after a handover's removal at the issuer.
	require.NoError(t, s1.cfg.Presence.RemovePresence(context.Background(), ChannelPrefix+"arena", c.sid, c.user))
	require.False(t, roomHas(t, s1, "arena", c.sid))

	for range maxServing {
		s1.cluster.serving <- struct{}{}
	}
	t.Cleanup(func() {
		for range maxServing {
			<-s1.cluster.serving
		}
	})
	body, err := json.Marshal(&busRequest{ID: "notice", Op: opPresent, Node: 3, SID: c.sid})
	require.NoError(t, err)
	s1.cluster.handleProcess(&busMessage{kind: busAsk, origin: "another-process", body: body})
	advanceUntil(t, clk, func() bool { return roomHas(t, s1, "arena", c.sid) }, "the presence is written again")
	require.Equal(t, 1.0, repairs(s1, repairRepaired))
}

// failingSubscribe fails the subscriptions of one topic.
type failingSubscribe struct {
	RoomBus
	topic string
}

func (f failingSubscribe) Subscribe(ctx context.Context, topic string) error {
	if topic == f.topic {
		return fmt.Errorf("%w: the test's bus refuses %s", hub.ErrRetryLater, topic)
	}
	return f.RoomBus.Subscribe(ctx, topic)
}

// A resume from another process that fails at a room join (here the
// claimer cannot subscribe the room's topic) leaves no presence entry behind: a rewrite of the
// session's presence (an opPresent) between the session's end and its
// connection's unregistering writes none.
func TestClusterAbandonedResumeLeavesNoPresence(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, func(c *Config) { c.Bus = failingSubscribe{RoomBus: c.Bus, topic: ChannelPrefix + "y"} })
	a := dialNative(t, s1, 1)
	a.Join("x")
	a.Join("y")
	sid := a.Welcome.SessionID
	lose(t, a, s1)
	var rewrote atomic.Bool
	hook := func(stage string) {
		if stage == "abandoned" {
			_, ok := s2.writePresence(s2.cluster.ctx, 1, sid)
			rewrote.Store(ok)
		}
	}
	s2.cluster.testHandOver.Store(&hook)
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken}, relaytest.NativeOptions{})
	require.Error(t, err, "the second room cannot be joined")
	require.True(t, rewrote.Load(), "the rewrite ran")
	require.Eventually(t, func() bool { return s2.node(1) == nil }, testenv.Wait, testenv.Tick)
	for _, room := range []string{"x", "y"} {
		require.False(t, roomHas(t, s2, room, sid), "no entry in %s", room)
	}
}

// A repair on the issuer whose room write is in flight while the parked
// session is handed over to another process removes the late entry and
// tells the claimer to write its own again: the entry is back at once,
// not only at the claimer's next presence refresh.
func TestClusterRepairInFlightAcrossHandover(t *testing.T) {
	prefix := clusterPrefix(t)
	clk1 := clocktest.New(time.Now())
	var fail, adds2 *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, ChannelPrefix+"arena")
		// awaitHeld advances clk1: the session must outlive it parked.
		c.Clock, c.HeartbeatInterval, c.SyncInterval, c.ResumeGrace = clk1, time.Hour, -1, time.Hour
	})
	s2 := newClusterServer(t, prefix, func(c *Config) {
		adds2 = failAdds(c, ChannelPrefix+"arena")
		adds2.failing.Store(false)
	})
	served := presentServed(s2)
	a := dialNative(t, s1, 1)
	a.Join("arena")
	sid := a.Welcome.SessionID
	require.True(t, s1.cluster.repairPending())
	lose(t, a, s1)
	holdRepair(t, clk1, fail)

	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	// The claimer's own write and its rewrite on the issuer's notice.
	awaitSignal(t, served, "the claimer served the handover's notice")
	require.Positive(t, adds2.adds.Load())
	require.True(t, roomHas(t, s2, "arena", sid))
	close(fail.release)
	require.Eventually(t, func() bool { return repairs(s1, repairRepaired)+repairs(s1, repairGone) >= 1 },
		testenv.Wait, testenv.Tick, "the issuer's repair ended")
	require.Eventually(t, func() bool { return roomHas(t, s2, "arena", sid) }, testenv.Wait, testenv.Tick,
		"the claimer wrote its entry again")
}

// heldDirWrites wraps s's presence in a failingAdds of id's directory
// channel that fails nothing (writes are held when hold is set).
func heldDirWrites(c *Config, id wire.NodeID) *failingAdds {
	f := failAdds(c, nodeChannel(id))
	f.failing.Store(false)
	return f
}

// dirWriting reports whether a directory write of c is in flight.
func dirWriting(c *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirWriting
}

// A parked session's directory write ("parked") in flight while the
// client resumes on the same process, and the resumed session then ends,
// leaves no entry: it landed after the session's removal, and the engine
// would refresh it for the life of the process (another process would
// refuse the NodeId).
func TestClusterDirectoryLateWriteAfterResumeHereEnds(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = heldDirWrites(c, 1)
		c.ResumeGrace = time.Hour
	})
	s2 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	a.Join("arena") // a session with no room is not parked
	old := s1.node(1)
	require.NotNil(t, old)
	held.hold.Store(true)
	lose(t, a, s1)
	<-held.entered // the parked mark's write is in flight
	a2 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	a2.Close() // ends the session (close code 0)
	require.Eventually(t, func() bool { return s1.node(1) == nil && len(dirHolders(t, s2, 1)) == 0 },
		testenv.Wait, testenv.Tick, "the session's end removed its entry")
	close(held.release)
	require.Eventually(t, func() bool { return !dirWriting(old) && len(dirHolders(t, s2, 1)) == 0 },
		testenv.Wait, testenv.Tick, "the late write's entry is removed")
	_, err := tryISSUN(t, s2, 1)
	require.NoError(t, err, "another process takes the NodeId")
}

// A directory write of a parked session in flight on the issuer when the
// session is handed over deletes its late entry — under the session id,
// so the claimer's too — and tells the claimer, which writes its own
// again: the NodeId stays known.
func TestClusterDirectoryLateWriteOnIssuerTellsClaimer(t *testing.T) {
	prefix := clusterPrefix(t)
	var held, adds2 *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = heldDirWrites(c, 1)
		c.ResumeGrace = time.Hour
	})
	s2 := newClusterServer(t, prefix, func(c *Config) { adds2 = heldDirWrites(c, 1) })
	served := presentServed(s2)
	s3 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	a.Join("arena") // a session with no room is not parked
	old := s1.node(1)
	require.NotNil(t, old)
	held.hold.Store(true)
	lose(t, a, s1)
	<-held.entered // the parked mark's write is in flight
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	awaitSignal(t, served, "the claimer served the handover's notice")
	require.Eventually(t, func() bool {
		old.mu.Lock()
		defer old.mu.Unlock()
		return old.dirGone
	}, testenv.Wait, testenv.Tick, "the issuer removed its entry")
	require.Eventually(t, func() bool { return slices.Equal(dirHolders(t, s3, 1), []string{s2.cluster.origin}) },
		testenv.Wait, testenv.Tick)
	close(held.release)
	awaitSignal(t, served, "the claimer served the notice after the late entry was deleted")
	require.Eventually(t, func() bool {
		return adds2.adds.Load() >= 2 && slices.Equal(dirHolders(t, s3, 1), []string{s2.cluster.origin})
	}, testenv.Wait, testenv.Tick, "the claimer wrote its entry again")
	_, err := tryISSUN(t, s3, 1)
	requireDuplicate(t, err)
}

// One connection's directory writes never overlap: a rewrite asked for
// while one is in flight returns at once (a resume's handshake does not
// wait for the engine), and the writer in flight writes the newest state
// once more, rather than both rewriting each other.
func TestClusterDirectoryWritesSerialized(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) { held = heldDirWrites(c, 5) })
	s2 := newClusterServer(t, prefix, nil)
	dialISSUN(t, s1, 5)
	c := s1.node(5)
	require.NotNil(t, c)
	before := held.adds.Load()
	held.hold.Store(true)
	done := make(chan bool, 1)
	go func() { done <- s1.cluster.dirAdd(s1.cluster.ctx, c) }()
	<-held.entered
	s1.cluster.dirMarkParked(c, true) // returns while the first is held
	require.Equal(t, before+1, held.adds.Load(), "no second write alongside the one in flight")
	close(held.release)
	require.True(t, <-done)
	require.Equal(t, before+2, held.adds.Load(), "the writer wrote the newest state once more")
	hs, err := s2.cluster.dirRead(context.Background(), 5)
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.True(t, hs[0].parked, "the newest state stays")
}

// A presence rewrite's room entry landing after the session left the room
// is removed even when the rewrite's context (the repair's, which close
// cancels) ends right after the addition: the entry must not linger until
// the presence TTL.
func TestClusterLateRoomEntryUndoneAfterCancel(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = failAdds(c, ChannelPrefix+"arena")
		held.failing.Store(false)
	})
	a := dialNative(t, s1, 1)
	j := a.Join("arena")
	sid := a.Welcome.SessionID
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	held.after = cancel
	held.hold.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); s1.writePresence(base, 1, sid) }()
	<-held.entered
	a.SendControl(&wire.Leave{RequestID: 3, Handle: j.Handle})
	require.Eventually(t, func() bool { n := s1.node(1); return n != nil && n.roomNamed("arena") == nil },
		testenv.Wait, testenv.Tick, "a left arena")
	require.Eventually(t, func() bool { return !roomHas(t, s1, "arena", sid) }, testenv.Wait, testenv.Tick)
	close(held.release)
	<-done
	require.Error(t, base.Err())
	require.False(t, roomHas(t, s1, "arena", sid), "the late entry is removed")
}

// A directory rewrite that leaves its turn to a write in flight reports
// success, and the writer in flight, whose write of the newest state
// fails, marks the connection for repair: the failure is not lost.
func TestClusterDirectoryWriteInFlightFailureMarksRepair(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = heldDirWrites(c, 5)
		c.HeartbeatInterval, c.SyncInterval = time.Hour, -1
	})
	dialISSUN(t, s1, 5)
	c := s1.node(5)
	require.NotNil(t, c)
	require.False(t, s1.cluster.repairPending())
	held.hold.Store(true)
	done := make(chan bool, 1)
	go func() { done <- s1.cluster.dirAdd(s1.cluster.ctx, c) }()
	<-held.entered
	here, ok := s1.writePresence(s1.cluster.ctx, 5, c.sid) // as the repair does
	require.True(t, here)
	require.True(t, ok, "the write in flight has the turn")
	require.False(t, s1.cluster.repairPending())
	held.failing.Store(true) // the writer's next write (the newest state) fails
	close(held.release)
	require.False(t, <-done)
	require.True(t, s1.cluster.repairPending(), "the writer's failure marked c")
}

// A mark a round listed that moves onto a resumed connection before the
// round reaches it (moveRepairLocked) is not counted gone: the session is
// still here, and its repair follows on the new connection.
func TestClusterRepairMovedMarkNotCountedGone(t *testing.T) {
	s1, s2, clk1, clk2, fail, a, b := repairResumeSetup(t)
	sid := a.Welcome.SessionID
	listed, resumed := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	hook := func(stage string) {
		if stage == "repair_listed" && once.CompareAndSwap(false, true) {
			close(listed)
			<-resumed
		}
	}
	s1.cluster.testHandOver.Store(&hook)
	advanceUntil(t, clk1, func() bool {
		select {
		case <-listed:
			return true
		default:
			return false
		}
	}, "a round listed a's mark")
	a2 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	close(resumed)
	fail.failing.Store(false)
	advanceUntil(t, clk1, func() bool { return roomHas(t, s2, "arena", sid) }, "the room entry is written")
	require.Eventually(t, func() bool { return !s1.cluster.repairPending() }, testenv.Wait, testenv.Tick)
	require.Zero(t, repairs(s1, repairGone), "the moved mark is not gone")
	require.Equal(t, 1.0, repairs(s1, repairRepaired))
	requireKeptBySync(t, s2, clk2, b, sid)
}

// A presence rewrite during which the session resumes on this process
// writes the room entries with the info of the connection holding the
// session now, not the one it began with.
func TestClusterRewriteAcrossResumeHereUsesNewInfo(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = heldDirWrites(c, 1)
		c.ResumeGrace = time.Hour
	})
	a := dialNative(t, s1, 1)
	a.Join("arena")
	sid := a.Welcome.SessionID
	before := held.adds.Load()
	lose(t, a, s1)
	require.Eventually(t, func() bool { return held.adds.Load() > before && !dirWriting(s1.node(1)) },
		testenv.Wait, testenv.Tick, "the parked mark's write landed")
	held.hold.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); s1.writePresence(s1.cluster.ctx, 1, sid) }() // as opPresent does
	// Its directory write, of the parked connection, is in flight.
	<-held.entered
	a2 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	n := s1.node(1)
	n.setMemberMeta([]byte("new")) // the resumed connection's state moved on
	close(held.release)
	<-done
	pres, err := s1.hub.Presence(context.Background(), ChannelPrefix+"arena")
	require.NoError(t, err)
	require.Contains(t, pres, sid)
	var e presenceEntry
	require.NoError(t, json.Unmarshal(pres[sid].ChanInfo, &e))
	require.Equal(t, []byte("new"), e.Metadata, "the room entry has the holder's info")
}

// heldPublish holds, once armed, the next publication to topic until its
// context ends, and sends how it ended on ended.
type heldPublish struct {
	RoomBus
	topic atomic.Pointer[string]
	armed atomic.Bool
	ended chan error
}

func (h *heldPublish) Publish(ctx context.Context, msgs []hub.TopicMessage) error {
	if t := h.topic.Load(); t != nil && len(msgs) == 1 && msgs[0].Topic == *t && h.armed.CompareAndSwap(true, false) {
		<-ctx.Done()
		h.ended <- ctx.Err()
		return ctx.Err()
	}
	return h.RoomBus.Publish(ctx, msgs)
}

// The repair's notice to a claimer (after it removed a late room entry on
// the issuer) ends at close, rather than keeping Shutdown waiting for the
// bus until its own timeout.
func TestClusterRepairNoticeEndsAtShutdown(t *testing.T) {
	prefix := clusterPrefix(t)
	clk1 := clocktest.New(time.Now())
	var fail, adds2 *failingAdds
	bus := &heldPublish{ended: make(chan error, 1)}
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fail = failAdds(c, ChannelPrefix+"arena")
		bus.RoomBus = c.Bus
		c.Bus = bus
		c.Clock, c.HeartbeatInterval, c.SyncInterval, c.ResumeGrace = clk1, time.Hour, -1, time.Hour
	})
	s2 := newClusterServer(t, prefix, func(c *Config) {
		adds2 = failAdds(c, ChannelPrefix+"arena")
		adds2.failing.Store(false)
	})
	served := presentServed(s2)
	to := processTopic(s2.cluster.origin)
	bus.topic.Store(&to)
	a := dialNative(t, s1, 1)
	a.Join("arena")
	require.True(t, s1.cluster.repairPending())
	lose(t, a, s1)
	holdRepair(t, clk1, fail)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	awaitSignal(t, served, "the handover is done (the claimer served its notice)")
	bus.armed.Store(true) // the repair's notice, once its late entry is removed
	close(fail.release)
	require.Eventually(t, func() bool { return !bus.armed.Load() }, testenv.Wait, testenv.Tick, "the notice is in flight")
	requireShutdownCancels(t, s1, bus.ended, "the held notice")
}

// presentServed returns a channel that gets a value each time s serves a
// presence notice from another process (opPresent).
func presentServed(s *testServer) chan struct{} {
	ch := make(chan struct{}, 16)
	hook := func(stage string) {
		if stage == "present_served" {
			ch <- struct{}{}
		}
	}
	s.cluster.testHandOver.Store(&hook)
	return ch
}

// awaitSignal waits for a value on ch.
func awaitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testenv.Wait):
		t.Fatal(what)
	}
}

// A late directory write of a session handed away lands after the session
// came back to this process (handed back under the same session id): the
// undo deletes the entry under that session id, the returned connection's
// too, and that one is written again, so the NodeId stays in the directory.
func TestClusterDirectoryUndoKeepsReturnedSession(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *failingAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = heldDirWrites(c, 1)
		c.ResumeGrace = time.Hour
	})
	s1.cluster.dir.writeWait.Store(int64(time.Hour)) // only release ends the held write
	served := presentServed(s1)
	s2 := newClusterServer(t, prefix, func(c *Config) { c.ResumeGrace = time.Hour })
	served2 := presentServed(s2)
	s3 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	a.Join("arena") // a session with no room is not parked
	old := s1.node(1)
	held.hold.Store(true)
	lose(t, a, s1)
	<-held.entered // the parked mark's write is in flight

	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	awaitSignal(t, served2, "s2 served s1's notice after the handover")
	lose(t, a2, s2)
	a3 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a2.Welcome.ResumeToken})
	require.True(t, a3.Welcome.Resumed, "back on s1")
	back := s1.node(1)
	require.NotSame(t, old, back)
	require.Equal(t, old.sid, back.sid)
	awaitSignal(t, served, "s1 served s2's notice after the handover back")
	require.Eventually(t, func() bool { return slices.Equal(dirHolders(t, s3, 1), []string{s1.cluster.origin}) },
		testenv.Wait, testenv.Tick, "the returned session's entry")

	close(held.release)
	awaitSignal(t, served2, "s2 told to write again after the undo")
	require.Eventually(t, func() bool { return slices.Equal(dirHolders(t, s3, 1), []string{s1.cluster.origin}) },
		testenv.Wait, testenv.Tick, "the returned session's entry is written again after the undo")
	_, err := tryISSUN(t, s3, 1)
	requireDuplicate(t, err)
}

// requireShutdownCancels shuts s down with no deadline to speak of and
// requires that the engine call held open (reporting how it ended on
// ended) was cancelled by close, and that Shutdown then succeeded.
func requireShutdownCancels(t *testing.T, s *testServer, ended <-chan error, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	select {
	case err := <-ended:
		require.ErrorIs(t, err, context.Canceled, "close cancelled %s", what)
	case <-time.After(testenv.Wait):
		t.Fatalf("%s did not end", what)
	}
	require.NoError(t, <-done)
}
