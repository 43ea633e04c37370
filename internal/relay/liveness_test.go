package relay

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// liveCluster is relay processes on one Redis whose hubs announce
// themselves on a loopback control plane, all on one fake clock: the node
// registry (liveness.go) is driven by the clock.
type liveCluster struct {
	prefix string
	net    *memory.ControlNetwork
	clk    *clocktest.Fake
}

// liveAnnounce is the hubs' announce interval; the registry's TTL is 3 of
// them.
const liveAnnounce = time.Second

func newLiveCluster(t *testing.T) *liveCluster {
	return &liveCluster{prefix: clusterPrefix(t), net: memory.NewControlNetwork(), clk: clocktest.New(time.Now())}
}

// liveServer is one process of a liveCluster.
type liveServer struct {
	*testServer
	ctl    *memory.ControlNode
	deaf   *deafControl // its hub's plane: can stop delivering to it
	broker *redis.Broker
	leaves *leaveCounter // what its relay published as hub leaves
}

// deafControl is a control node that, while deaf is set, delivers nothing
// to its hub and still sends: the process's control subscription is down
// while the rest of its engine works.
type deafControl struct {
	*memory.ControlNode
	deaf atomic.Bool
	// drop, when set, is asked about each message: true loses it.
	drop atomic.Pointer[func([]byte) bool]
}

func (d *deafControl) Run(node string, h hub.ControlHandler) error {
	return d.ControlNode.Run(node, deafHandler{d, h})
}

type deafHandler struct {
	d *deafControl
	h hub.ControlHandler
}

func (h deafHandler) HandleControl(data []byte) {
	if h.d.deaf.Load() {
		return
	}
	if f := h.d.drop.Load(); f != nil && (*f)(data) {
		return
	}
	h.h.HandleControl(data)
}

// start starts a process whose hub is on network net (lc.net when nil).
func (lc *liveCluster) start(t *testing.T, net *memory.ControlNetwork) *liveServer {
	t.Helper()
	return lc.startWith(t, net, nil)
}

// startWith is start with mod applied to the relay's configuration.
func (lc *liveCluster) startWith(t *testing.T, net *memory.ControlNetwork, mod func(*Config)) *liveServer {
	t.Helper()
	return lc.startHub(t, net, liveAnnounce, mod)
}

// startHub is startWith with the hub announcing itself every announce.
func (lc *liveCluster) startHub(t *testing.T, net *memory.ControlNetwork, announce time.Duration, mod func(*Config)) *liveServer {
	t.Helper()
	if net == nil {
		net = lc.net
	}
	b, err := redis.New(redis.Config{Address: testenv.RedisURL(t), Prefix: lc.prefix})
	require.NoError(t, err)
	ls := &liveServer{ctl: net.Node(), broker: b}
	ls.deaf = &deafControl{ControlNode: ls.ctl}
	hc := hub.Config{Broker: b, Presence: b, Clock: lc.clk,
		Cluster: hub.ClusterConfig{Control: ls.deaf, AnnounceInterval: announce}}
	ls.testServer = startTestServer(t, hc, true, func(c *Config) {
		h := c.Presence.(*hub.Hub)
		ls.leaves = &leaveCounter{Hub: h, got: map[string]int{}, holds: map[string]*hold{}}
		c.Presence, c.Nodes = ls.leaves, h
		c.Clock, c.HeartbeatInterval = lc.clk, time.Hour
		if mod != nil {
			mod(c)
		}
	})
	return ls
}

// crash makes s's process die as the others see it: it stops announcing
// itself and reaching Redis (no bus leave, no presence removal, no hub
// leave gets out), then stops.
func (s *liveServer) crash(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, s.ctl.Close(ctx))
	require.NoError(t, s.broker.Close(ctx))
	_ = s.Shutdown(ctx) // its engine calls fail: nothing reaches the others
}

// advanceUntil moves the clock on by small steps until cond holds (the
// relays' goroutines run between steps).
func (lc *liveCluster) advanceUntil(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		if cond() {
			return true
		}
		lc.clk.Advance(100 * time.Millisecond)
		return false
	}, testenv.Wait, testenv.Tick, msg)
}

// leaveCounter is the hub as the relay's presence, counting the hub
// leaves published, by channel and client id, and holding the presence
// removals of a channel while told to (hold).
type leaveCounter struct {
	*hub.Hub
	mu    sync.Mutex
	got   map[string]int
	holds map[string]*hold // by channel
}

// hold holds the presence removals of a channel until release is closed
// (or their context ends); held counts those that reached it.
type hold struct {
	release chan struct{}
	held    atomic.Int32
	expired atomic.Int32 // removals whose context ended while held
}

// hold makes the removals from channel ch wait until the returned hold
// is released.
func (l *leaveCounter) hold(ch string) *hold {
	h := &hold{release: make(chan struct{})}
	l.mu.Lock()
	l.holds[ch] = h
	l.mu.Unlock()
	return h
}

func (l *leaveCounter) RemovePresence(ctx context.Context, ch, sid, user string) error {
	l.mu.Lock()
	h := l.holds[ch]
	l.mu.Unlock()
	if h != nil {
		h.held.Add(1)
		select {
		case <-h.release:
		case <-ctx.Done():
			h.expired.Add(1)
			return ctx.Err()
		}
	}
	return l.Hub.RemovePresence(ctx, ch, sid, user)
}

func (l *leaveCounter) PublishLeave(ctx context.Context, ch string, info *hub.ClientInfo) error {
	l.mu.Lock()
	l.got[ch+" "+info.ClientID]++
	l.mu.Unlock()
	return l.Hub.PublishLeave(ctx, ch, info)
}

func (l *leaveCounter) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.got {
		n += c
	}
	return n
}

func (l *leaveCounter) count(ch, sid string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[ch+" "+sid]
}

// gotLeave reports whether a PRESENCE that c has received (without
// waiting) says id left.
func gotLeave(c *relaytest.Native, id wire.NodeID) bool {
	for {
		select {
		case m := <-c.Control:
			if p, ok := m.(*wire.Presence); ok && slices.Contains(p.Leaves, id) {
				return true
			}
		default:
			return false
		}
	}
}

// entriesOf lists the session ids of channel ch's hub presence written by
// process p.
func entriesOf(t *testing.T, s *liveServer, ch, p string) []string {
	t.Helper()
	pres, err := s.hub.Presence(context.Background(), ch)
	require.NoError(t, err)
	var out []string
	for sid, info := range pres {
		var e presenceEntry
		if json.Unmarshal(info.ChanInfo, &e) == nil && e.Process == p {
			out = append(out, sid)
		}
	}
	return out
}

func remoteCount(s *liveServer, room string) int {
	return s.cluster.room(room).remoteCount()
}

// A member on a process that dies without a word leaves the room on the
// others once the node registry drops its process (within its TTL, plus
// one check), not when the engine's presence TTL ends; a client with its
// NodeId can then connect and join elsewhere.
func TestLivenessDeadProcessMembersLeave(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	require.Equal(t, a.hub.NodeID(), a.cluster.origin, "the relay names itself as the registry does")
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	na.Join("arena")
	nb.Join("arena")
	na.AwaitJoin(2)

	b.crash(t)
	crashed := lc.clk.Now()
	lc.advanceUntil(t, func() bool { return gotLeave(na, 2) }, "a sees b's member leave")
	ttl := a.hub.NodeTTL()
	require.LessOrEqual(t, lc.clk.Now().Sub(crashed), ttl+a.hub.EchoGap()+2*livenessEvery, "within the registry's TTL, the echo gap and a check")
	require.Equal(t, 0, remoteCount(a, "arena"))
	require.Equal(t, 1.0, testutil.ToFloat64(a.cluster.sessions.WithLabelValues(sessionProcessDied)))

	// The NodeId is free: the handshake passes (the directory entry of
	// the dead process does not count) and so does the JOIN.
	n2 := dialNative(t, a.testServer, 2)
	j := n2.Join("arena")
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(j.Members))
}

// A handshake with a NodeId that only a dead process's directory entry
// holds is accepted (it was refused before the process was seen dead),
// and the entry is removed.
func TestLivenessHandshakeSkipsDeadProcess(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	dialNative(t, b.testServer, 7)
	ch := nodeChannel(7)
	require.Len(t, entriesOf(t, a, ch, b.cluster.origin), 1)
	_, err := relaytest.TryNative(t, a.Addr().String(), &wire.Hello{NodeID: 7}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)

	bOrigin := b.cluster.origin
	b.crash(t)
	lc.advanceUntil(t, func() bool { return a.cluster.liveness().dead(bOrigin) }, "b is dead for a")
	n := relaytest.DialNative(t, a.Addr().String(), &wire.Hello{NodeID: 7})
	require.Equal(t, wire.NodeID(7), n.Welcome.NodeID)
	require.Eventually(t, func() bool { return len(entriesOf(t, a, ch, bOrigin)) == 0 }, testenv.Wait, testenv.Tick,
		"the dead process's directory entry is removed")
	require.Len(t, entriesOf(t, a, ch, a.cluster.origin), 1, "the new session's entry")
}

// A process this one has not heard from yet (it just started: the other
// one's announcement has not reached it) is unknown, not dead: its
// members stay, its NodeIds stay taken. Only once this process's
// registry has been complete (up for the TTL) for the echo gap does a
// process the registry does not list count as dead.
func TestLivenessUnheardProcessIsNotDead(t *testing.T) {
	lc := newLiveCluster(t)
	b := lc.start(t, memory.NewControlNetwork()) // a never hears b
	nb := dialNative(t, b.testServer, 2)
	nb.Join("arena")
	born := lc.clk.Now()
	a := lc.start(t, nil)
	require.NotContains(t, a.hub.Nodes(), b.hub.Nodes()[0], "a has not heard b")
	na := dialNative(t, a.testServer, 1)
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(na.Join("arena").Members))

	ttl := a.hub.NodeTTL()
	for lc.clk.Now().Sub(born) < ttl-200*time.Millisecond {
		lc.clk.Advance(100 * time.Millisecond)
		require.False(t, a.cluster.liveness().dead(b.cluster.origin), "not dead before a was up for the TTL")
		require.Equal(t, 1, remoteCount(a, "arena"), "b's member stays")
	}
	a.cluster.sync(a.cluster.room("arena")) // a sync keeps it too
	require.Equal(t, 1, remoteCount(a, "arena"))
	require.False(t, gotLeave(na, 2))
	_, err := relaytest.TryNative(t, a.Addr().String(), &wire.Hello{NodeID: 2}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)

	// Past the TTL, a process the registry does not list is dead.
	lc.advanceUntil(t, func() bool { return gotLeave(na, 2) }, "b's member leaves once a was up for the TTL")
}

// The hub presence of relay:R that a dead process wrote is removed by
// one of the live processes holding R, which publishes one hub leave per
// member; the other publishes none, and no later sync publishes again.
func TestLivenessHubLeaveOnce(t *testing.T) {
	lc := newLiveCluster(t)
	a, b, c := lc.start(t, nil), lc.start(t, nil), lc.start(t, nil)
	na, nc := dialNative(t, a.testServer, 1), dialNative(t, c.testServer, 4)
	nb, nb2 := dialNative(t, b.testServer, 2), dialNative(t, b.testServer, 3)
	for _, n := range []*relaytest.Native{na, nb, nb2, nc} {
		n.Join("arena")
	}
	require.Eventually(t, func() bool { return remoteCount(a, "arena") == 3 && remoteCount(c, "arena") == 3 },
		testenv.Wait, testenv.Tick)
	const ch = ChannelPrefix + "arena"
	dead := []string{nb.Welcome.SessionID, nb2.Welcome.SessionID}
	bOrigin := b.cluster.origin
	require.ElementsMatch(t, dead, entriesOf(t, a, ch, bOrigin))

	b.crash(t)
	leaves := func(sid string) int { return a.leaves.count(ch, sid) + c.leaves.count(ch, sid) }
	lc.advanceUntil(t, func() bool {
		return len(entriesOf(t, a, ch, bOrigin)) == 0 && leaves(dead[0]) == 1 && leaves(dead[1]) == 1
	}, "b's entries removed, one hub leave each")
	require.Equal(t, 1, remoteCount(a, "arena"))
	require.Equal(t, 1, remoteCount(c, "arena"))
	cleaner, other := a, c
	if c.cluster.origin < a.cluster.origin {
		cleaner, other = c, a
	}
	for _, sid := range dead {
		require.Equal(t, 1, cleaner.leaves.count(ch, sid), "the live process with the smallest id cleans")
		require.Zero(t, other.leaves.count(ch, sid))
	}
	// Later syncs and checks publish nothing more.
	end := lc.clk.Now().Add(2 * (DefaultSyncInterval + deadSettle))
	lc.advanceUntil(t, func() bool { return !lc.clk.Now().Before(end) }, "time passes")
	for _, sid := range dead {
		require.Equal(t, 1, leaves(sid))
	}
	require.ElementsMatch(t, []string{na.Welcome.SessionID}, entriesOf(t, a, ch, a.cluster.origin))
}

// A resume token naming a dead process is refused as unknown at once,
// without asking the dead process and waiting for an answer.
func TestLivenessResumeOnDeadProcessRefusedAtOnce(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	nb := dialNative(t, b.testServer, 2)
	nb.Join("arena")
	token := nb.Welcome.ResumeToken
	origin, ok := tokenOrigin(token)
	require.True(t, ok)
	require.Equal(t, b.cluster.origin, origin)
	lose(t, nb, b.testServer)

	b.crash(t)
	lc.advanceUntil(t, func() bool { return a.cluster.liveness().dead(origin) }, "b is dead for a")
	start := time.Now()
	_, err := relaytest.TryNative(t, a.Addr().String(), &wire.Hello{ResumeToken: token}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeNotFound, closeResume)
	require.Less(t, time.Since(start), claimWait, "no wait for an answer from the dead process")
}

// fakeNodes is a node registry listing a fixed set of ids.
type fakeNodes struct {
	id       string
	ids      []string
	left     []string
	complete *atomic.Bool
	reads    *atomic.Int32 // LiveIDs calls, when set
}

func (f fakeNodes) NodeID() string { return f.id }
func (f fakeNodes) LiveIDs() []string {
	if f.reads != nil {
		f.reads.Add(1)
	}
	return append([]string{f.id}, f.ids...)
}
func (f fakeNodes) LeftIDs() []string      { return f.left }
func (f fakeNodes) RegistryComplete() bool { return f.complete != nil && f.complete.Load() }
func (fakeNodes) NodeTTL() time.Duration   { return 3 * liveAnnounce }
func (fakeNodes) EchoGap() time.Duration   { return 2 * liveAnnounce }

func TestLivenessRule(t *testing.T) {
	var complete atomic.Bool
	var reads atomic.Int32
	clk := clocktest.New(time.Now())
	s := newTestServer(t, func(c *Config) {
		c.Bus, c.Nodes = nopBus{}, fakeNodes{id: "5e1f", ids: []string{"07e4"}, left: []string{"d4a1"}, complete: &complete, reads: &reads}
		c.Clock = clk
	})
	cl := s.cluster
	require.Equal(t, "5e1f", cl.origin)
	cl.refreshLiveness()
	for _, p := range []string{"60e0", "07e4", "5e1f", ""} {
		require.False(t, cl.liveness().dead(p), "%q: the registry is not complete, nobody is dead", p)
	}
	complete.Store(true)
	require.False(t, cl.liveness().dead("60e0"), "the view is the last check's")
	cl.refreshLiveness()
	require.False(t, cl.liveness().dead("60e0"), "not listed, but the registry was not complete for the echo gap yet")
	require.True(t, cl.liveness().dead("d4a1"), "left cleanly: dead at once")
	clk.Advance(2*liveAnnounce - time.Millisecond)
	cl.refreshLiveness()
	require.False(t, cl.liveness().dead("60e0"))
	clk.Advance(time.Millisecond)
	cl.refreshLiveness()
	v := cl.liveness()
	require.False(t, v.dead("60e0"), "never listed, met just now: a process that just started may not be heard from yet")
	clk.Advance(2*liveAnnounce - time.Millisecond)
	cl.refreshLiveness()
	v = cl.liveness()
	require.False(t, v.dead("60e0"), "met unlisted less than the echo gap ago")
	clk.Advance(time.Millisecond)
	cl.refreshLiveness()
	v = cl.liveness()
	require.True(t, v.dead("60e0"), "never listed, and unlisted for the echo gap since first met")
	require.True(t, v.cleanable("60e0"))
	require.True(t, v.dead("d4a1"), "left cleanly: dead")
	require.False(t, v.cleanable("d4a1"), "left cleanly: it cleans its own entries")
	require.False(t, v.dead("07e4"), "listed")
	require.False(t, v.dead("5e1f"))
	require.False(t, v.dead(""), "unknown process")
	require.False(t, v.dead("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "a relay without a registry: never judged")
	n := reads.Load()
	for range 3 {
		require.True(t, cl.liveness().dead("60e0"))
	}
	require.Equal(t, n, reads.Load(), "a reading of the view does not read the registry")

	// The cleaner vote counts only processes that can be judged: an
	// earlier version (UUID id) with entries does not take it.
	own := map[string]struct{}{"s-own": {}}
	require.True(t, cl.cleaner(own, map[string]remoteMember{
		"s1": {process: "00000000-0000-0000-0000-000000000000"}, "s2": {process: ""}, "s3": {process: "zzz"}}))
	require.False(t, cl.cleaner(own, map[string]remoteMember{"s1": {process: "07e4"}}), "a smaller live id cleans")

	s.closing.Store(true)
	require.False(t, cl.liveness().dead("60e0"), "a closing relay judges nobody")
}

func TestLivenessNodeIDMustFitTheBus(t *testing.T) {
	_, err := New(Config{Address: "127.0.0.1:0", Bus: nopBus{}, Presence: newTestServer(t, nil).hub,
		Nodes: fakeNodes{id: strings.Repeat("a", maxOrigin+1)}})
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "nodes", fe.Field)
}

// The lobby's remote members of a dead process go as a room's do, and its
// lobby presence is removed without a hub leave (the lobby publishes
// none).
func TestLivenessDeadProcessLobbyMembersGo(t *testing.T) {
	lc := newLiveCluster(t)
	a, b := lc.start(t, nil), lc.start(t, nil)
	dialISSUN(t, a.testServer, 8)
	dialISSUN(t, b.testServer, 9)
	require.Eventually(t, func() bool { return a.cluster.lobby.remoteCount() == 1 }, testenv.Wait, testenv.Tick)
	bOrigin := b.cluster.origin
	require.Len(t, entriesOf(t, a, LobbyChannel, bOrigin), 1)

	b.crash(t)
	crashed := lc.clk.Now()
	lc.advanceUntil(t, func() bool { return a.cluster.lobby.remoteCount() == 0 }, "b's lobby member is dropped")
	require.LessOrEqual(t, lc.clk.Now().Sub(crashed), a.hub.NodeTTL()+a.hub.EchoGap()+2*livenessEvery,
		"by the liveness check, within the registry's TTL, the echo gap and a check (not by a periodic sync)")
	require.Nil(t, a.cluster.issunHolder(9), "no longer a target known on another process")
	lc.advanceUntil(t, func() bool { return len(entriesOf(t, a, LobbyChannel, bOrigin)) == 0 }, "b's lobby presence is removed")
	require.Len(t, entriesOf(t, a, LobbyChannel, a.cluster.origin), 1)
	a.leaves.mu.Lock()
	defer a.leaves.mu.Unlock()
	require.Empty(t, a.leaves.got, "no hub leave for the lobby")
}

// A live process whose announcements this one lost for just under two
// intervals (a receive outage that RegistryComplete tolerates, or a full
// control queue), announcing every interval plus 1ms, drops out of the
// registry for a few milliseconds while it is complete: nobody takes it
// for dead, since it was not missing for the echo gap.
func TestLivenessShortAbsenceIsNotDeath(t *testing.T) {
	lc := newLiveCluster(t)
	a := lc.start(t, nil)
	b := lc.startHub(t, nil, liveAnnounce+time.Millisecond, nil)
	bID := b.hub.NodeID()
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	na.Join("arena")
	nb.Join("arena")
	na.AwaitJoin(2)
	lc.advanceUntil(t, func() bool { return a.cluster.liveness().confirmed }, "a's registry is complete for the echo gap")

	// At the next announcement of b that a hears (t0), a loses b's
	// messages from t0+I/2 for 2I-10ms: b's next two announcements.
	var mu sync.Mutex
	var t0 time.Time
	drop := func(data []byte) bool {
		if !strings.Contains(string(data), bID) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		now := lc.clk.Now()
		if t0.IsZero() {
			t0 = now
			return false
		}
		from := t0.Add(liveAnnounce / 2)
		return !now.Before(from) && now.Before(from.Add(2*liveAnnounce-10*time.Millisecond))
	}
	a.deaf.drop.Store(&drop)
	heardAt := func() time.Time { mu.Lock(); defer mu.Unlock(); return t0 }
	lc.advanceUntil(t, func() bool { return !heardAt().IsZero() }, "a hears b")
	expiry := heardAt().Add(a.hub.NodeTTL())
	lc.advanceUntil(t, func() bool { return !lc.clk.Now().Before(expiry.Add(-50 * time.Millisecond)) }, "near b's expiry")
	require.Contains(t, a.hub.LiveIDs(), bID)
	for slices.Contains(a.hub.LiveIDs(), bID) {
		lc.clk.Advance(time.Millisecond)
		require.True(t, lc.clk.Now().Before(expiry.Add(3*time.Millisecond)), "b drops out at its expiry")
	}
	require.True(t, a.hub.RegistryComplete(), "a heard its own announcements throughout")
	a.cluster.checkLiveness()
	require.False(t, a.cluster.liveness().dead(bID), "missing for less than the echo gap")
	require.Equal(t, 1, remoteCount(a, "arena"), "b's member stays")

	lc.advanceUntil(t, func() bool { return slices.Contains(a.hub.LiveIDs(), bID) }, "b's next announcement is heard")
	end := lc.clk.Now().Add(3 * livenessEvery)
	lc.advanceUntil(t, func() bool { return !lc.clk.Now().Before(end) }, "checks pass")
	require.Equal(t, 1, remoteCount(a, "arena"))
	require.False(t, gotLeave(na, 2), "no leave told")
	require.Zero(t, testutil.ToFloat64(a.cluster.sessions.WithLabelValues(sessionProcessDied)))
}

// A process missing for deadHorizon is forgotten even when the registry
// keeps going incomplete meanwhile (each time restarting the absence that
// counts for the verdict); so is one never listed, met once.
func TestLivenessForgetsLongGoneProcesses(t *testing.T) {
	var complete atomic.Bool
	clk := clocktest.New(time.Now())
	s := newTestServer(t, func(c *Config) {
		c.Bus, c.Nodes = nopBus{}, fakeNodes{id: "5e1f", complete: &complete}
		c.Clock = clk
	})
	cl := s.cluster
	cl.live.mu.Lock()
	cl.live.seen["01d1"] = struct{}{}
	cl.live.mu.Unlock()
	complete.Store(true)
	cl.refreshLiveness() // 01d1 is missing from now
	clk.Advance(2 * liveAnnounce)
	cl.refreshLiveness()
	require.False(t, cl.liveness().dead("e7e7"), "met just now")
	remembered := func() (missing, met bool) {
		cl.live.mu.Lock()
		defer cl.live.mu.Unlock()
		_, missing = cl.live.missing["01d1"]
		_, met = cl.live.met["e7e7"]
		return missing, met
	}
	missing, met := remembered()
	require.True(t, missing && met)
	// Incomplete for a moment every 5 minutes, for 15 minutes.
	for range 3 {
		complete.Store(false)
		cl.refreshLiveness()
		complete.Store(true)
		clk.Advance(5 * time.Minute)
		cl.refreshLiveness()
	}
	missing, met = remembered()
	require.False(t, missing, "missing for more than deadHorizon: forgotten")
	require.False(t, met, "met more than deadHorizon ago: forgotten")
}
