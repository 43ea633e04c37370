package relay

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// holdNews holds s's handling of the bus joins and leaves of other
// processes until the returned release is called (at cleanup at the
// latest): s does not learn of remote members meanwhile.
func holdNews(t *testing.T, s *testServer) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	var once atomic.Bool
	release = func() {
		if once.CompareAndSwap(false, true) {
			close(gate)
		}
	}
	hook := func() { <-gate }
	s.cluster.beforeNews.Store(&hook)
	t.Cleanup(release)
	return release
}

// Two JOINs on two processes, the second before its process has heard of
// the first: the engine's claim counts both, so the room stays within its
// cap.
func TestClusterJoinCapRaceAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	capped := func(c *Config) { c.MaxMembers, c.SyncInterval = 2, -1 }
	s1, s2 := newClusterServer(t, prefix, capped), newClusterServer(t, prefix, capped)
	w := dialNative(t, s2, 2)
	w.Join("arena")
	release := holdNews(t, s2)
	a := dialNative(t, s1, 1)
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(a.Join("arena").Members))
	require.Zero(t, s2.cluster.room("arena").remoteCount(), "s2 has not heard of a")

	c := dialNative(t, s2, 3)
	c.SendControl(&wire.Join{RequestID: 7, Room: "arena"})
	require.Equal(t, wire.ErrCodeRoomFull, nextError(t, c).Code, "the cap counts a, which s2 did not know")
	release()
	pres, err := s1.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 2, "nothing written for the refused JOIN")
	require.Eventually(t, func() bool { return s2.cluster.room("arena").remoteCount() == 1 }, testenv.Wait, testenv.Tick)

	// A slot freed on one process is free for a JOIN on the other.
	a.Close()
	require.Eventually(t, func() bool {
		pres, err := s2.hub.Presence(context.Background(), "relay:arena")
		return err == nil && len(pres) == 1 && s2.cluster.room("arena").remoteCount() == 0
	}, testenv.Wait, testenv.Tick)
	c.SendControl(&wire.Join{RequestID: 8, Room: "arena"})
	require.ElementsMatch(t, []wire.NodeID{2, 3}, nodeIDs(nextSkippingPresence[*wire.Joined](t, c, "JOINED").Members))
}

// dirDown is the hub as the relay's presence with the NodeId directory's
// claims and reads failing (Redis down for them): handshakes are
// accepted, and only the JOIN checks NodeIds.
type dirDown struct{ *hub.Hub }

var errDirDown = errors.New("redis: connection refused")

func isDirChannel(ch string) bool { return strings.HasPrefix(ch, ChannelPrefix+"\xff") }

func (d dirDown) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	if isDirChannel(ch) {
		return hub.ClaimResult{}, errDirDown
	}
	return d.Hub.ClaimPresence(ctx, ch, info, c)
}

func (d dirDown) Presence(ctx context.Context, ch string) (map[string]*hub.ClientInfo, error) {
	if isDirChannel(ch) {
		return nil, errDirDown
	}
	return d.Hub.Presence(ctx, ch)
}

// Two JOINs with one NodeId on two processes, the second before its
// process has heard of the first: the claim key refuses the second.
func TestClusterJoinNodeIDRaceAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, func(c *Config) { c.SyncInterval = -1 })
	s2 := newClusterServer(t, prefix, func(c *Config) {
		c.SyncInterval = -1
		c.Presence = dirDown{c.Presence.(*hub.Hub)}
	})
	w := dialNative(t, s2, 2)
	w.Join("arena")
	release := holdNews(t, s2)
	a := dialNative(t, s1, 5)
	a.Join("arena")
	b := dialNative(t, s2, 5) // the directory is down for s2: accepted
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	e := nextError(t, b)
	require.Equal(t, wire.ErrCodeConflict, e.Code)
	require.Contains(t, e.Message, "another process has this node id")
	release()
	pres, err := s1.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 2, "a and w only")
}

// gatedDir is the hub as the relay's presence holding the directory
// writes (adds and claims) of one channel, once armed, until release.
type gatedDir struct {
	*hub.Hub
	channel string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedDir) hold(ch string) {
	if ch == g.channel && g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.release
	}
}

func (g *gatedDir) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	g.hold(ch)
	return g.Hub.AddPresence(ctx, ch, info)
}

func (g *gatedDir) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	g.hold(ch)
	return g.Hub.ClaimPresence(ctx, ch, info, c)
}

// Two handshakes with one NodeId on two processes, the second while the
// first's directory write is in flight: one of them is refused.
func TestClusterHandshakeNodeIDRaceAcrossProcesses(t *testing.T) {
	for _, tc := range []struct {
		name string
		dial func(t *testing.T, s *testServer) error
	}{
		{"issun", func(t *testing.T, s *testServer) error { _, err := tryISSUN(t, s, 7); return err }},
		{"native", func(t *testing.T, s *testServer) error {
			_, err := relaytest.TryNative(t, s.Addr().String(), &wire.Hello{NodeID: 7}, relaytest.NativeOptions{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := clusterPrefix(t)
			var gate *gatedDir
			s1 := newClusterServer(t, prefix, func(c *Config) {
				gate = &gatedDir{Hub: c.Presence.(*hub.Hub), channel: nodeChannel(7), entered: make(chan struct{}, 1), release: make(chan struct{})}
				c.Presence = gate
			})
			s2 := newClusterServer(t, prefix, nil)
			gate.armed.Store(true)
			first := make(chan error, 1)
			go func() { first <- tc.dial(t, s1) }()
			select {
			case <-gate.entered:
			case <-time.After(testenv.Wait):
				t.Fatal("s1's handshake wrote no directory entry")
			}
			require.NoError(t, tc.dial(t, s2), "nobody holds 7 yet")
			close(gate.release)
			var err error
			select {
			case err = <-first:
			case <-time.After(testenv.Wait):
				t.Fatal("s1's handshake did not end")
			}
			if tc.name == "issun" {
				requireDuplicate(t, err)
			} else {
				refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
			}
			require.Nil(t, s1.node(7))
			require.NotNil(t, s2.node(7))
			require.Equal(t, []string{s2.cluster.origin}, dirHolders(t, s1, 7), "s1 wrote nothing")
		})
	}
}

// claimDeadlines records how long the directory claims of one channel
// had left on their context.
type claimDeadlines struct {
	*hub.Hub
	channel string
	left    chan time.Duration
}

func (r *claimDeadlines) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	if ch == r.channel {
		left := time.Duration(-1)
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		select {
		case r.left <- left:
		default:
		}
	}
	return r.Hub.ClaimPresence(ctx, ch, info, c)
}

// A handshake's directory claim ends with the handshake
// (HandshakeTimeout): with the directory's own bound made far longer, the
// claim's deadline is still the handshake's.
func TestClusterDirectoryClaimBoundedByHandshake(t *testing.T) {
	const handshake = 5 * time.Second
	var claims *claimDeadlines
	s := newClusterServer(t, clusterPrefix(t), func(c *Config) {
		claims = &claimDeadlines{Hub: c.Presence.(*hub.Hub), channel: nodeChannel(9), left: make(chan time.Duration, 2)}
		c.Presence = claims
		c.HandshakeTimeout = handshake
	})
	s.cluster.dir.handshakeWait.Store(int64(time.Hour))
	dialISSUN(t, s, 9)
	requireHandshakeBound(t, claims.left, handshake, "claim")
}

// requireHandshakeBound checks the deadline left of the directory call
// (what: "claim" or "write") a handshake made: set, and within handshake.
func requireHandshakeBound(t *testing.T, deadlines <-chan time.Duration, handshake time.Duration, what string) {
	t.Helper()
	var left time.Duration
	select {
	case left = <-deadlines:
	default:
		t.Fatalf("the handshake made no directory %s", what)
	}
	require.Positive(t, left, "the %s has a deadline", what)
	require.LessOrEqual(t, left, handshake, "the handshake's")
}

// The hub presence a dead process left in a room (not cleaned up yet)
// does not fill the room: the JOIN's claim ignores it once the claim
// says full.
func TestLivenessDeadEntriesDoNotFillTheRoom(t *testing.T) {
	lc := newLiveCluster(t)
	capped := func(c *Config) { c.MaxMembers = 2 }
	a, b := lc.startWith(t, nil, capped), lc.startWith(t, nil, capped)
	na, nb := dialNative(t, a.testServer, 1), dialNative(t, b.testServer, 2)
	na.Join("arena")
	nb.Join("arena")
	na.AwaitJoin(2)
	b.crash(t)
	lc.advanceUntil(t, func() bool { return gotLeave(na, 2) }, "b's member leaves")
	pres, err := a.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 2, "b's entry is still there")

	nc := dialNative(t, a.testServer, 3)
	require.ElementsMatch(t, []wire.NodeID{1, 3}, nodeIDs(nc.Join("arena").Members))
	nd := dialNative(t, a.testServer, 4)
	nd.SendControl(&wire.Join{RequestID: 9, Room: "arena"})
	require.Equal(t, wire.ErrCodeRoomFull, nextError(t, nd).Code, "the live members fill it")
}

// roomClaimsDown is the hub as the relay's presence with the conditional
// room claims of JOINs failing while armed (Redis down for them); the
// rewrites of admitted members (Always) go through.
type roomClaimsDown struct {
	*hub.Hub
	armed atomic.Bool
}

func (d *roomClaimsDown) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	if !isDirChannel(ch) && !c.Always && d.armed.Load() {
		return hub.ClaimResult{}, errDirDown
	}
	return d.Hub.ClaimPresence(ctx, ch, info, c)
}

// A JOIN admitted while its claim failed has its presence written by the
// repair, which makes its NodeId the entry's claim key again: a JOIN with
// that NodeId on another process is refused.
func TestClusterRepairedMemberHoldsItsNodeID(t *testing.T) {
	prefix := clusterPrefix(t)
	var down *roomClaimsDown
	s1 := newClusterServer(t, prefix, func(c *Config) {
		down = &roomClaimsDown{Hub: c.Presence.(*hub.Hub)}
		c.Presence = down
	})
	s2 := newClusterServer(t, prefix, func(c *Config) { c.Presence = dirDown{c.Presence.(*hub.Hub)} })
	down.armed.Store(true)
	a := dialNative(t, s1, 5)
	a.Join("arena") // admitted: what s1 knows allows it
	require.Eventually(t, func() bool {
		pres, err := s2.hub.Presence(context.Background(), "relay:arena")
		return err == nil && len(pres) == 1
	}, testenv.Wait, testenv.Tick, "the repair writes a's presence")
	b := dialNative(t, s2, 5) // the directory is down for s2: accepted
	w := dialNative(t, s2, 6)
	w.Join("arena")
	require.Eventually(t, func() bool { return s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	require.Equal(t, wire.ErrCodeConflict, nextError(t, b).Code)
}

// plainPresence is the hub as the relay's presence without conditional
// adds: a process of a version before claims, in a rolling upgrade.
type plainPresence struct{ h *hub.Hub }

func (p plainPresence) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	return p.h.AddPresence(ctx, ch, info)
}

func (p plainPresence) RemovePresence(ctx context.Context, ch, cid, uid string) error {
	return p.h.RemovePresence(ctx, ch, cid, uid)
}

func (p plainPresence) PublishJoin(ctx context.Context, ch string, info *hub.ClientInfo) error {
	return p.h.PublishJoin(ctx, ch, info)
}

func (p plainPresence) PublishLeave(ctx context.Context, ch string, info *hub.ClientInfo) error {
	return p.h.PublishLeave(ctx, ch, info)
}

func (p plainPresence) Presence(ctx context.Context, ch string) (map[string]*hub.ClientInfo, error) {
	return p.h.Presence(ctx, ch)
}

// A live remote member this process knows has the JOIN's NodeId but its
// entry holds no claim key (its process writes plain presence, or Redis
// lost the key hash): the claim adds, the known member refuses the JOIN
// as without a claimer, and the entry just written goes.
func TestClusterJoinRefusedByKnownMemberWithoutClaimKey(t *testing.T) {
	for _, mode := range []string{"plain process", "key hash lost"} {
		t.Run(mode, func(t *testing.T) {
			prefix := clusterPrefix(t)
			s1 := newClusterServer(t, prefix, func(c *Config) {
				if mode == "plain process" {
					c.Presence = plainPresence{c.Presence.(*hub.Hub)}
				}
			})
			s2 := newClusterServer(t, prefix, func(c *Config) { c.Presence = dirDown{c.Presence.(*hub.Hub)} })
			a := dialNative(t, s1, 5)
			a.Join("arena")
			w := dialNative(t, s2, 6)
			w.Join("arena")
			require.Eventually(t, func() bool { return s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
			if mode == "key hash lost" {
				opt, err := rueidis.ParseURL(testenv.RedisURL(t))
				require.NoError(t, err)
				cli, err := rueidis.NewClient(opt)
				require.NoError(t, err)
				defer cli.Close()
				key := prefix + ".presence.keys.{relay:arena}"
				require.NoError(t, cli.Do(context.Background(), cli.B().Del().Key(key).Build()).Error())
			}
			b := dialNative(t, s2, 5) // the directory is down for s2: accepted
			b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
			require.Equal(t, wire.ErrCodeConflict, nextError(t, b).Code)
			pres, err := s2.hub.Presence(context.Background(), "relay:arena")
			require.NoError(t, err)
			require.Len(t, pres, 2, "a and w only: the refused JOIN's entry is removed")
		})
	}
}

// On an engine without conditional presence the hub is no claimer: a
// JOIN writes its presence by a plain add, at once.
func TestClusterHubWithoutClaimingEngine(t *testing.T) {
	b, err := redis.New(redis.Config{Address: testenv.RedisURL(t), Prefix: clusterPrefix(t)})
	require.NoError(t, err)
	s := startTestServer(t, hub.Config{Broker: b, Presence: struct{ hub.PresenceManager }{b}}, true, nil)
	require.True(t, s.cluster.claimer == nil, "the hub is no claimer")
	a := dialNative(t, s, 5)
	a.Join("arena")
	pres, err := s.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 1, "written by the JOIN")
}

// unclaimable is the hub as the relay's presence with every conditional
// add answering ErrNotAvailable.
type unclaimable struct{ *hub.Hub }

func (unclaimable) ClaimPresence(context.Context, string, *hub.ClientInfo, hub.PresenceClaim) (hub.ClaimResult, error) {
	return hub.ClaimResult{}, hub.ErrNotAvailable.With("the engine has no conditional presence")
}

// A member's rewrite (a repair, a resume) falls back to a plain add when
// the claimer has no conditional presence.
func TestClusterWriteMemberWithoutClaims(t *testing.T) {
	s := newClusterServer(t, clusterPrefix(t), func(c *Config) { c.Presence = unclaimable{c.Presence.(*hub.Hub)} })
	require.NotNil(t, s.cluster.claimer)
	info := &hub.ClientInfo{ClientID: "s1", ChanInfo: []byte(`{"node_id":"5"}`)}
	require.NoError(t, s.writeMember(context.Background(), "relay:arena", info, 5))
	pres, err := s.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Contains(t, pres, "s1")
}

// claimsTimeOut is dirDown with the room claims of JOINs running in the
// engine but answering a timeout, as a reply lost after the script ran.
type claimsTimeOut struct{ dirDown }

func (d claimsTimeOut) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	if isDirChannel(ch) || c.Always {
		return d.dirDown.ClaimPresence(ctx, ch, info, c)
	}
	if _, err := d.Hub.ClaimPresence(ctx, ch, info, c); err != nil {
		return hub.ClaimResult{}, err
	}
	return hub.ClaimResult{}, context.DeadlineExceeded
}

// roomAddsFail is plainPresence with its room presence writes failing.
type roomAddsFail struct{ plainPresence }

func (p roomAddsFail) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	if !isDirChannel(ch) {
		return errDirDown
	}
	return p.plainPresence.AddPresence(ctx, ch, info)
}

// A claim that timed out may have written the entry: when what the
// process knows then refuses the JOIN, the entry is removed.
func TestClusterJoinRefusedAfterFailedClaimRemovesEntry(t *testing.T) {
	t.Run("node id", func(t *testing.T) {
		prefix := clusterPrefix(t)
		s1 := newClusterServer(t, prefix, func(c *Config) { c.Presence = plainPresence{c.Presence.(*hub.Hub)} })
		s2 := newClusterServer(t, prefix, func(c *Config) { c.Presence = claimsTimeOut{dirDown{c.Presence.(*hub.Hub)}} })
		a := dialNative(t, s1, 5)
		a.Join("arena")
		w := dialNative(t, s2, 6)
		w.Join("arena")
		require.Eventually(t, func() bool { return s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
		b := dialNative(t, s2, 5) // the directory is down for s2: accepted
		b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
		require.Equal(t, wire.ErrCodeConflict, nextError(t, b).Code)
		pres, err := s2.hub.Presence(context.Background(), "relay:arena")
		require.NoError(t, err)
		require.Len(t, pres, 2, "a and w only")
	})
	t.Run("cap", func(t *testing.T) {
		prefix := clusterPrefix(t)
		capped := func(c *Config) { c.MaxMembers = 2 }
		s1 := newClusterServer(t, prefix, func(c *Config) {
			capped(c)
			c.Presence = roomAddsFail{plainPresence{c.Presence.(*hub.Hub)}}
		})
		s2 := newClusterServer(t, prefix, func(c *Config) {
			capped(c)
			c.Presence = claimsTimeOut{dirDown{c.Presence.(*hub.Hub)}}
		})
		w := dialNative(t, s2, 6)
		w.Join("arena")
		a := dialNative(t, s1, 5) // its presence is never written
		a.Join("arena")
		require.Eventually(t, func() bool { return s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
		c := dialNative(t, s2, 7)
		c.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
		require.Equal(t, wire.ErrCodeRoomFull, nextError(t, c).Code)
		pres, err := s2.hub.Presence(context.Background(), "relay:arena")
		require.NoError(t, err)
		require.Len(t, pres, 1, "w only")
	})
}

// failRemove is the hub as the relay's presence with the room presence
// removals failing while armed, as the engine fails them (the refresh
// record dropped, the Redis call failed): a Redis blip during a leave.
type failRemove struct {
	*hub.Hub
	armed atomic.Bool
}

func (f *failRemove) RemovePresence(ctx context.Context, ch, cid, uid string) error {
	if f.armed.Load() && !isDirChannel(ch) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		return f.Hub.RemovePresence(cctx, ch, cid, uid)
	}
	return f.Hub.RemovePresence(ctx, ch, cid, uid)
}

// leaveStale has n, a member of room arena on s (presence fr), leave it
// with its presence removal failing, then close: its entry stays.
func leaveStale(t *testing.T, s *testServer, fr *failRemove, n *relaytest.Native, handle uint32, id wire.NodeID) {
	t.Helper()
	fr.armed.Store(true)
	n.SendControl(&wire.Leave{RequestID: 2, Handle: handle})
	n.Close()
	require.Eventually(t, func() bool { return s.node(id) == nil }, testenv.Wait, testenv.Tick)
	fr.armed.Store(false)
	require.Eventually(t, func() bool {
		pres, err := s.hub.Presence(context.Background(), nodeChannel(id))
		return err == nil && len(pres) == 0
	}, testenv.Wait, testenv.Tick, "the directory entry goes")
	pres, err := s.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	var ids []string
	for _, info := range pres {
		ids = append(ids, string(info.ChanInfo))
	}
	require.Contains(t, strings.Join(ids, " "), `"node_id":"`+strconv.FormatUint(uint64(id), 10)+`"`, "the stale entry stays")
}

// An entry left by a live process whose removal failed does not hold
// the NodeId: asked, that process says it no longer holds the session,
// and the entry goes.
func TestClusterStaleEntryOfLiveProcessFreesNodeID(t *testing.T) {
	prefix := clusterPrefix(t)
	var fr *failRemove
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fr = &failRemove{Hub: c.Presence.(*hub.Hub)}
		c.Presence = fr
	})
	s2 := newClusterServer(t, prefix, nil)
	w := dialNative(t, s2, 6)
	w.Join("arena")
	a := dialNative(t, s1, 5)
	j := a.Join("arena")
	leaveStale(t, s1, fr, a, j.Handle, 5)
	require.Eventually(t, func() bool { return !s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
	b := dialNative(t, s2, 5)
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	require.ElementsMatch(t, []wire.NodeID{5, 6}, nodeIDs(nextSkippingPresence[*wire.Joined](t, b, "JOINED").Members))
	pres, err := s2.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 2, "w and b: the stale entry is removed")
}

// This process's own entries whose sessions it no longer holds in the
// room (a removal that failed) do not fill it.
func TestClusterOwnStaleEntriesDoNotFillTheRoom(t *testing.T) {
	var fr *failRemove
	s := newClusterServer(t, clusterPrefix(t), func(c *Config) {
		c.MaxMembers = 2
		fr = &failRemove{Hub: c.Presence.(*hub.Hub)}
		c.Presence = fr
	})
	w := dialNative(t, s, 6)
	w.Join("arena")
	a := dialNative(t, s, 5)
	j := a.Join("arena")
	leaveStale(t, s, fr, a, j.Handle, 5)
	b := dialNative(t, s, 7)
	require.ElementsMatch(t, []wire.NodeID{6, 7}, nodeIDs(b.Join("arena").Members))
	c := dialNative(t, s, 8)
	c.SendControl(&wire.Join{RequestID: 9, Room: "arena"})
	require.Equal(t, wire.ErrCodeRoomFull, nextError(t, c).Code, "the live members fill it")
}

// sessionCalls is the hub as the relay's presence counting the removals
// and releases of session sid's entries once sid is set.
type sessionCalls struct {
	*hub.Hub
	sid               atomic.Pointer[string]
	removed, released atomic.Int32
}

func (r *sessionCalls) of(cid string) bool { p := r.sid.Load(); return p != nil && *p == cid }

func (r *sessionCalls) RemovePresence(ctx context.Context, ch, cid, uid string) error {
	if r.of(cid) {
		r.removed.Add(1)
	}
	return r.Hub.RemovePresence(ctx, ch, cid, uid)
}

func (r *sessionCalls) ReleasePresence(ctx context.Context, ch, cid, uid string) error {
	if r.of(cid) {
		r.released.Add(1)
	}
	return r.Hub.ReleasePresence(ctx, ch, cid, uid)
}

// A session handed over to another process keeps its room entry and its
// NodeId's claim key throughout: the issuer releases its entries (no
// removal), the claimer's rewrite replaces them.
func TestClusterHandoverKeepsTheClaims(t *testing.T) {
	prefix := clusterPrefix(t)
	var rec *sessionCalls
	s1 := newClusterServer(t, prefix, func(c *Config) {
		rec = &sessionCalls{Hub: c.Presence.(*hub.Hub)}
		c.Presence = rec
	})
	s2 := newClusterServer(t, prefix, nil)
	served := make(chan struct{}, 1)
	hook := func(stage string) {
		if stage == "present_served" {
			select {
			case served <- struct{}{}:
			default:
			}
		}
	}
	s2.cluster.testHandOver.Store(&hook)
	a := dialNative(t, s1, 1)
	a.Join("arena")
	sid := a.Welcome.SessionID
	rec.sid.Store(&sid)
	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
	select {
	case <-served: // the issuer's cleanup is done
	case <-time.After(testenv.Wait):
		t.Fatal("the issuer's presence notice never came")
	}
	require.Zero(t, rec.removed.Load(), "the issuer removed none of the session's entries")
	require.Equal(t, s2.cluster.origin, roomPresence(t, s2, "arena")[sid].Process)
	res, err := s2.hub.ClaimPresence(context.Background(), "relay:arena", &hub.ClientInfo{ClientID: "probe"}, hub.PresenceClaim{Key: nodeKey(1)})
	require.NoError(t, err)
	require.Equal(t, sid, res.Holder, "the NodeId is still the session's claim key")
	dir, err := s2.hub.Presence(context.Background(), nodeChannel(1))
	require.NoError(t, err)
	require.Contains(t, dir, sid, "the directory entry stays")
}

// A member's rewrite that finds its NodeId held by another entry is
// counted (and logged), and written all the same.
func TestClusterWriteMemberCountsNodeConflicts(t *testing.T) {
	s := newClusterServer(t, clusterPrefix(t), nil)
	ctx := context.Background()
	res, err := s.hub.ClaimPresence(ctx, "relay:arena", &hub.ClientInfo{ClientID: "other"}, hub.PresenceClaim{Key: nodeKey(5)})
	require.NoError(t, err)
	require.True(t, res.Added)
	info := &hub.ClientInfo{ClientID: "s1", ChanInfo: []byte(`{"node_id":"5"}`)}
	require.NoError(t, s.writeMember(ctx, "relay:arena", info, 5))
	require.Equal(t, 1.0, testutil.ToFloat64(s.cluster.nodeConflicts))
	pres, err := s.hub.Presence(ctx, "relay:arena")
	require.NoError(t, err)
	require.Contains(t, pres, "s1")
	require.NoError(t, s.writeMember(ctx, "relay:arena", &hub.ClientInfo{ClientID: "s2", ChanInfo: []byte(`{"node_id":"6"}`)}, 6))
	require.Equal(t, 1.0, testutil.ToFloat64(s.cluster.nodeConflicts), "a free NodeId is no conflict")
}

// failedClaimDeadlines fails the directory claims of one channel and
// records how long the plain writes that follow had left on their context.
type failedClaimDeadlines struct{ claimDeadlines }

func (r *failedClaimDeadlines) ClaimPresence(ctx context.Context, ch string, info *hub.ClientInfo, c hub.PresenceClaim) (hub.ClaimResult, error) {
	if ch == r.channel {
		return hub.ClaimResult{}, errDirDown
	}
	return r.Hub.ClaimPresence(ctx, ch, info, c)
}

func (r *failedClaimDeadlines) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	if ch == r.channel {
		left := time.Duration(-1)
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		select {
		case r.left <- left:
		default:
		}
	}
	return r.Hub.AddPresence(ctx, ch, info)
}

// The directory write that follows a failed directory claim in a
// handshake ends with the handshake too.
func TestClusterDirectoryWriteAfterFailedClaimBoundedByHandshake(t *testing.T) {
	const handshake = 5 * time.Second
	var w *failedClaimDeadlines
	s := newClusterServer(t, clusterPrefix(t), func(c *Config) {
		w = &failedClaimDeadlines{claimDeadlines{Hub: c.Presence.(*hub.Hub), channel: nodeChannel(9), left: make(chan time.Duration, 2)}}
		c.Presence = w
		c.HandshakeTimeout = handshake
	})
	s.cluster.dir.writeWait.Store(int64(time.Hour))
	dialISSUN(t, s, 9)
	requireHandshakeBound(t, w.left, handshake, "write")
}

// A remote member record whose process no longer holds the session (its
// leave not arrived yet) does not refuse a JOIN whose claim the engine
// added: that process, asked, says so, and the record is forgotten.
func TestClusterStaleRemoteRecordAfterClaim(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	w := dialNative(t, s2, 6)
	w.Join("arena")
	br := s2.cluster.room("arena")
	require.NotNil(t, br)
	br.mu.Lock()
	br.putRemoteLocked(remoteMember{node: 5, sid: "gone-session", process: s1.cluster.origin, transport: transportNative,
		added: s2.cfg.Clock.Now()})
	br.mu.Unlock()
	b := dialNative(t, s2, 5)
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	require.ElementsMatch(t, []wire.NodeID{5, 6}, nodeIDs(nextSkippingPresence[*wire.Joined](t, b, "JOINED").Members))
	require.False(t, br.hasOtherRemote(5, ""), "the stale record is forgotten")
}

// rewriteBeforeRemove is the hub as the relay's presence that, on the
// first removal of a room entry, first writes a fresh entry of the same
// session (another process's write landing between the read of the entry
// and its removal).
type rewriteBeforeRemove struct {
	*hub.Hub
	once  atomic.Bool
	fresh atomic.Pointer[hub.ClientInfo]
}

func (r *rewriteBeforeRemove) rewrite(ctx context.Context, ch, cid string) {
	if isDirChannel(ch) || !r.once.CompareAndSwap(false, true) {
		return
	}
	info := &hub.ClientInfo{ClientID: cid, UserID: "fresh", ChanInfo: []byte(`{"node_id":"99","process":"elsewhere"}`)}
	r.fresh.Store(info)
	_ = r.Hub.AddPresence(ctx, ch, info)
}

func (r *rewriteBeforeRemove) RemovePresence(ctx context.Context, ch, cid, uid string) error {
	r.rewrite(ctx, ch, cid)
	return r.Hub.RemovePresence(ctx, ch, cid, uid)
}

func (r *rewriteBeforeRemove) RemovePresenceIf(ctx context.Context, ch string, info *hub.ClientInfo) (bool, error) {
	r.rewrite(ctx, ch, info.ClientID)
	return r.Hub.RemovePresenceIf(ctx, ch, info)
}

// The removal of a stale entry its process no longer holds (opHolds)
// spares an entry of the same session written since.
func TestClusterStaleEntryRemovalSparesRewrite(t *testing.T) {
	prefix := clusterPrefix(t)
	var fr *failRemove
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fr = &failRemove{Hub: c.Presence.(*hub.Hub)}
		c.Presence = fr
	})
	var rw *rewriteBeforeRemove
	s2 := newClusterServer(t, prefix, func(c *Config) {
		rw = &rewriteBeforeRemove{Hub: c.Presence.(*hub.Hub)}
		c.Presence = rw
	})
	w := dialNative(t, s2, 6)
	w.Join("arena")
	a := dialNative(t, s1, 5)
	j := a.Join("arena")
	leaveStale(t, s1, fr, a, j.Handle, 5)
	require.Eventually(t, func() bool { return !s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
	b := dialNative(t, s2, 5)
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	require.ElementsMatch(t, []wire.NodeID{5, 6}, nodeIDs(nextSkippingPresence[*wire.Joined](t, b, "JOINED").Members))
	fresh := rw.fresh.Load()
	require.NotNil(t, fresh, "the stale entry's removal ran")
	pres, err := s2.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Contains(t, pres, fresh.ClientID, "the entry written since stays")
	require.Equal(t, "fresh", pres[fresh.ClientID].UserID)
}

// A session handed over and back (s1 → s2 → s1) before the first
// handover's cleanup ended on s1 (its hub session gone, its directory
// entry not yet released) keeps its entries there: the late cleanup
// releases none of them, so s1 goes on refreshing them.
func TestClusterLateHandoverCleanupSparesReturnedSession(t *testing.T) {
	prefix := clusterPrefix(t)
	var rel *sessionCalls
	s1 := newClusterServer(t, prefix, func(c *Config) {
		rel = &sessionCalls{Hub: c.Presence.(*hub.Hub)}
		c.Presence = rel
	})
	s2 := newClusterServer(t, prefix, nil)
	blocked, unblock := make(chan struct{}), make(chan struct{})
	var unblocked sync.Once
	t.Cleanup(func() { unblocked.Do(func() { close(unblock) }) }) // before the servers close
	var once atomic.Bool
	hook1 := func(stage string) {
		if stage == "session_removed" && once.CompareAndSwap(false, true) {
			close(blocked)
			<-unblock
		}
	}
	s1.cluster.testHandOver.Store(&hook1)
	served := make(chan struct{}, 1)
	hook2 := func(stage string) {
		if stage == "present_served" {
			select {
			case served <- struct{}{}:
			default:
			}
		}
	}
	s2.cluster.testHandOver.Store(&hook2)

	a := dialNative(t, s1, 1)
	a.Join("arena")
	sid := a.Welcome.SessionID
	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	nextSkippingPresence[*wire.Joined](t, a2, "JOINED")
	<-blocked
	lose(t, a2, s2)
	a3 := relaytest.DialNative(t, s1.Addr().String(), &wire.Hello{ResumeToken: a2.Welcome.ResumeToken})
	require.True(t, a3.Welcome.Resumed)
	require.Equal(t, sid, a3.Welcome.SessionID)
	nextSkippingPresence[*wire.Joined](t, a3, "JOINED")
	rel.sid.Store(&sid)
	unblocked.Do(func() { close(unblock) })
	select {
	case <-served: // s1's late cleanup is done (its notice follows it)
	case <-time.After(testenv.Wait):
		t.Fatal("the first handover's presence notice never came")
	}
	require.Zero(t, rel.released.Load(), "the late cleanup released the returned session's entries")
	dir, err := s1.hub.Presence(context.Background(), nodeChannel(1))
	require.NoError(t, err)
	require.Contains(t, dir, sid)
	require.Equal(t, s1.cluster.origin, roomPresence(t, s1, "arena")[sid].Process)
}

// A live process too busy to say whether it holds a stale entry's
// session makes the JOIN fail as retryable, not as a NodeId conflict.
func TestClusterStaleEntryBusyProcessIsRetryable(t *testing.T) {
	prefix := clusterPrefix(t)
	var fr *failRemove
	s1 := newClusterServer(t, prefix, func(c *Config) {
		fr = &failRemove{Hub: c.Presence.(*hub.Hub)}
		c.Presence = fr
	})
	s2 := newClusterServer(t, prefix, nil)
	w := dialNative(t, s2, 6)
	w.Join("arena")
	a := dialNative(t, s1, 5)
	j := a.Join("arena")
	leaveStale(t, s1, fr, a, j.Handle, 5)
	require.Eventually(t, func() bool { return !s2.cluster.room("arena").hasRemote(5) }, testenv.Wait, testenv.Tick)
	for range cap(s1.cluster.serving) { // s1 serves as many requests as it can
		s1.cluster.serving <- struct{}{}
	}
	t.Cleanup(func() {
		for range cap(s1.cluster.serving) {
			<-s1.cluster.serving
		}
	})
	b := dialNative(t, s2, 5)
	b.SendControl(&wire.Join{RequestID: 3, Room: "arena"})
	require.Equal(t, wire.ErrCodeUnavailable, nextError(t, b).Code)
}

// deliveredAnswers is a bus whose answers between processes are
// delivered but reported failed, once wait returns (the claimer's
// directory entry written by then).
type deliveredAnswers struct {
	RoomBus
	wait func()
}

func (b deliveredAnswers) Publish(ctx context.Context, msgs []hub.TopicMessage) error {
	err := b.RoomBus.Publish(ctx, msgs)
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "relay-process:") && len(m.Data) > 1 && m.Data[1] == busAnswer {
			b.wait()
			return errors.New("redis broker: publish topic: connection reset")
		}
	}
	return err
}

// An issuer whose answer publish failed although the answer arrived
// (the claimer took the session) removes neither the directory entry nor
// the room entries: the claimer's stay.
func TestClusterFailedAnswerPublishKeepsClaimerDirectoryEntry(t *testing.T) {
	prefix := clusterPrefix(t)
	var s2 *testServer
	var sid atomic.Pointer[string]
	entriesOf := func(s *testServer, channel string) map[string]presenceEntry {
		pres, err := s.hub.Presence(context.Background(), channel)
		require.NoError(t, err)
		out := map[string]presenceEntry{}
		for id, info := range pres {
			var e presenceEntry
			require.NoError(t, json.Unmarshal(info.ChanInfo, &e))
			out[id] = e
		}
		return out
	}
	dirOf := func(s *testServer) map[string]presenceEntry { return entriesOf(s, nodeChannel(1)) }
	roomOf := func(s *testServer) map[string]presenceEntry { return entriesOf(s, ChannelPrefix+"r") }
	wait := func() {
		require.Eventually(t, func() bool {
			p := sid.Load()
			return p != nil && dirOf(s2)[*p].Process == s2.cluster.origin && roomOf(s2)[*p].Process == s2.cluster.origin
		}, testenv.Wait, testenv.Tick, "the claimer's directory and room entries")
	}
	s1 := newClusterServer(t, prefix, func(c *Config) { c.Bus = deliveredAnswers{RoomBus: c.Bus, wait: wait} })
	s2 = newClusterServer(t, prefix, nil)
	cleaned := make(chan struct{})
	var once atomic.Bool
	hook := func(stage string) {
		if stage == "session_removed" && once.CompareAndSwap(false, true) {
			close(cleaned)
		}
	}
	s1.cluster.testHandOver.Store(&hook)
	a := dialNative(t, s1, 1)
	a.Join("r")
	id := a.Welcome.SessionID
	sid.Store(&id)
	lose(t, a, s1)
	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	select {
	case <-cleaned:
	case <-time.After(testenv.Wait):
		t.Fatal("the issuer's cleanup never ran")
	}
	require.Equal(t, s2.cluster.origin, dirOf(s2)[id].Process, "the claimer's directory entry stays")
	require.Equal(t, s2.cluster.origin, roomOf(s2)[id].Process, "the claimer's room entry stays")
}
