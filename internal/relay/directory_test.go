package relay

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// dirHolders lists the processes s's hub presence names for NodeId id.
func dirHolders(t *testing.T, s *testServer, id wire.NodeID) []string {
	t.Helper()
	pres, err := s.hub.Presence(context.Background(), nodeChannel(id))
	require.NoError(t, err)
	var out []string
	for _, info := range pres {
		var e presenceEntry
		require.NoError(t, json.Unmarshal(info.ChanInfo, &e))
		require.Equal(t, strconv.FormatUint(uint64(id), 10), e.NodeID)
		out = append(out, e.Process)
	}
	return out
}

func requireDuplicate(t *testing.T, err error) {
	t.Helper()
	var ae *quic.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, quic.ApplicationErrorCode(closeNodeInUse.Code), ae.ErrorCode)
	require.Equal(t, closeNodeInUse.Reason, ae.ErrorMessage)
}

// An ISSUN NodeId connected on s1 is refused on s2 as a duplicate (same
// close code and metric as a local one), and is free again once it left.
func TestClusterISSUNNodeIDReservedAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	a := dialISSUN(t, s1, 42)
	require.Len(t, dirHolders(t, s2, 42), 1, "the directory has a's entry")

	_, err := tryISSUN(t, s2, 42)
	requireDuplicate(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(s2.metrics.handshakes.WithLabelValues(handshakeDuplicate)))
	require.Nil(t, s2.node(42))

	a.Close()
	require.Eventually(t, func() bool { return s1.node(42) == nil && len(dirHolders(t, s2, 42)) == 0 },
		testenv.Wait, testenv.Tick, "the entry goes at disconnect")
	b := dialISSUN(t, s2, 42)
	require.NotNil(t, s2.node(42))
	_, err = tryISSUN(t, s1, 42)
	requireDuplicate(t, err)
	b.Close()
	require.Eventually(t, func() bool { return len(dirHolders(t, s1, 42)) == 0 }, testenv.Wait, testenv.Tick)
}

// A native NodeId asked for and held on another process is refused at
// the handshake; an assigned one and a free one are accepted.
func TestClusterNativeNodeIDReservedAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	dialNative(t, s1, 9)
	_, err := relaytest.TryNative(t, s2.Addr().String(), &wire.Hello{NodeID: 9}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)
	require.Equal(t, 1.0, testutil.ToFloat64(s2.metrics.handshakes.WithLabelValues(handshakeDuplicate)))
	// An ISSUN client cannot take it either.
	_, err = tryISSUN(t, s2, 9)
	requireDuplicate(t, err)
	c := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{})
	require.NotZero(t, c.Welcome.NodeID)
	require.Len(t, dirHolders(t, s1, c.Welcome.NodeID), 1, "an assigned NodeId is in the directory too")
}

// failingDirPresence is the hub as the relay's presence, failing the
// directory's presence reads (Redis down for them) and passing everything
// else to the hub.
type failingDirPresence struct {
	*hub.Hub
	reads chanCounter
}

type chanCounter chan struct{}

func (f failingDirPresence) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	if strings.HasPrefix(channel, ChannelPrefix+"\xff") {
		select {
		case f.reads <- struct{}{}:
		default:
		}
		return nil, errors.New("redis: connection refused")
	}
	return f.Hub.Presence(ctx, channel)
}

// A directory read that fails lets the handshake through (fail open):
// the local check still holds, and JOIN checks again.
func TestClusterNodeDirectoryReadFailureAccepts(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	reads := make(chanCounter, 16)
	s2 := newClusterServer(t, prefix, func(c *Config) {
		c.Presence = failingDirPresence{Hub: c.Presence.(*hub.Hub), reads: reads}
	})
	a := dialNative(t, s1, 5)
	a.Join("r")
	b := dialISSUN(t, s2, 5)
	require.NotNil(t, s2.node(5), "accepted although s1 has it")
	require.NotEmpty(t, reads, "the directory was read")
	_, err := tryISSUN(t, s2, 5)
	requireDuplicate(t, err) // the local check holds
	b.Close()
	require.Eventually(t, func() bool { return s2.node(5) == nil }, testenv.Wait, testenv.Tick)
	n := dialNative(t, s2, 5)
	n.SendControl(&wire.Join{RequestID: 2, Room: "r"})
	require.Contains(t, nextError(t, n).Message, "another process has this node id", "JOIN checks again")
}

// An ISSUN targeted event from a lobby client on s1 reaches a client in a
// room on s2 that s1 neither holds nor knows (the NodeId directory); one
// to a NodeId nobody has is dropped and counted.
func TestClusterISSUNTargetedByDirectory(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2)
	issunJoin(t, b, "match")
	require.Eventually(t, func() bool { return !knowsInLobby(s1, 2) && s1.cluster.issunHolder(2) == nil },
		testenv.Wait, testenv.Tick, "s1 does not know b")
	require.Nil(t, s1.cluster.held("match"))

	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 1, "to b"))
	require.Equal(t, "to b", string(nextGame(t, b).Payload))
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 2, "again"))
	require.Equal(t, "again", string(nextGame(t, b).Payload), "by the cache")
	require.Equal(t, 1.0, testutil.ToFloat64(s1.cluster.dir.lookups.WithLabelValues(lookupFound)))

	unknown := func() float64 { return testutil.ToFloat64(s1.metrics.drops.WithLabelValues(dropUnknownTarget)) }
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, 3, "nobody"))
	require.Eventually(t, func() bool { return unknown() == 1 }, testenv.Wait, testenv.Tick)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 77}, 4, "nobody"))
	require.Eventually(t, func() bool { return unknown() == 2 }, testenv.Wait, testenv.Tick)
	require.Equal(t, 1.0, testutil.ToFloat64(s1.cluster.dir.lookups.WithLabelValues(lookupMissing)), "the second by the cache")
	require.Zero(t, testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropUnknownTarget)))
}

// Forged or malformed directory messages on a process topic are counted
// as bus_malformed and never panic; a well-formed one for a NodeId not
// here counts unknown_target.
func TestClusterDirectoryForgedMessages(t *testing.T) {
	prefix := clusterPrefix(t)
	s1, s2 := newClusterServer(t, prefix, nil), newClusterServer(t, prefix, nil)
	b := dialISSUN(t, s2, 2)
	topic := processTopic(s2.cluster.origin)
	targeted := wire.AppendEventFrame(nil, event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, 1, "forged"))
	bcast := wire.AppendEventFrame(nil, event(broadcast, 2, "bcast"))
	bad := [][]byte{
		{busVersion, busTarget, busISSUN, 1, 'x'},                         // no frame
		busFrame(busTarget, transportISSUN, "forger", []byte("garbage!")), // not a frame
		busFrame(busTarget, transportISSUN, "forger", targeted[:len(targeted)-1]),
		busFrame(busTarget, transportISSUN, "forger", bcast),     // not targeted
		busFrame(busTarget, transportNative, "forger", targeted), // not ISSUN
	}
	msgs := make([]hub.TopicMessage, 0, len(bad)+2)
	for _, d := range bad {
		msgs = append(msgs, hub.TopicMessage{Topic: topic, Data: d})
	}
	gone := wire.AppendEventFrame(nil, event(wire.Scope{Kind: wire.ScopeTargeted, Target: 88}, 3, "gone"))
	msgs = append(msgs, hub.TopicMessage{Topic: topic, Data: busFrame(busTarget, transportISSUN, "forger", gone)},
		hub.TopicMessage{Topic: topic, Data: busFrame(busTarget, transportISSUN, "forger", targeted)})
	require.NoError(t, s1.cluster.bus.Publish(context.Background(), msgs))
	require.Equal(t, "forged", string(nextGame(t, b).Payload), "a valid one is delivered")
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropBusMalformed)) == float64(len(bad)) &&
			testutil.ToFloat64(s2.metrics.drops.WithLabelValues(dropUnknownTarget)) == 1
	}, testenv.Wait, testenv.Tick)
}

// A parked session keeps its directory entry (its NodeId stays refused
// elsewhere), a session resumed on another process moves it there, and
// the end of the grace window removes it.
func TestClusterNodeDirectoryFollowsSessions(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	s1 := newClusterServer(t, prefix, func(c *Config) { c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, -1 })
	s2 := newClusterServer(t, prefix, nil)
	a, w := dialNative(t, s1, 5), dialNative(t, s2, 6)
	a.Join("r")
	w.Join("r")
	a.AwaitJoin(6)
	require.Equal(t, []string{s1.cluster.origin}, dirHolders(t, s2, 5))
	lose(t, a, s1)
	require.Equal(t, []string{s1.cluster.origin}, dirHolders(t, s2, 5), "parked: kept")
	_, err := tryISSUN(t, s2, 5)
	requireDuplicate(t, err)

	a2 := relaytest.DialNative(t, s2.Addr().String(), &wire.Hello{ResumeToken: a.Welcome.ResumeToken})
	require.True(t, a2.Welcome.Resumed)
	require.Eventually(t, func() bool {
		h := dirHolders(t, s1, 5)
		return len(h) == 1 && h[0] == s2.cluster.origin
	}, testenv.Wait, testenv.Tick, "the entry names s2")
	_, err = tryISSUN(t, s1, 5)
	requireDuplicate(t, err)

	b := dialNative(t, s1, 9)
	b.Join("r")
	lose(t, b, s1)
	require.Len(t, dirHolders(t, s2, 9), 1)
	clk.Advance(DefaultResumeGrace)
	require.Eventually(t, func() bool { return len(dirHolders(t, s2, 9)) == 0 }, testenv.Wait, testenv.Tick, "gone at expiry")
	require.Equal(t, []string{s2.cluster.origin}, dirHolders(t, s1, 5))
}

// Events to a NodeId being looked up wait for the answer, in order, up to
// dirWaiting; more are dropped and counted (node_lookup_full).
func TestClusterISSUNTargetedWaitsForTheLookup(t *testing.T) {
	prefix := clusterPrefix(t)
	gate := make(chan struct{})
	reads := &atomic.Bool{}
	reads.Store(true)
	s1 := newClusterServer(t, prefix, func(c *Config) {
		l, _ := c.Presence.(PresenceLister)
		c.Presence = &gatedPresence{p: c.Presence, l: l, channel: nodeChannel(2), gate: gate, reads: reads}
	})
	s1.cluster.dir.lookupWait.Store(int64(2 * testenv.Wait)) // the gate, not the timeout, ends the read
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2)
	issunJoin(t, b, "match")
	require.Eventually(t, func() bool { return s1.cluster.issunHolder(2) == nil }, testenv.Wait, testenv.Tick)
	const extra = 6
	for i := range dirWaiting + extra {
		a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 2}, uint64(i+1), strconv.Itoa(i+1)))
	}
	full := s1.metrics.drops.WithLabelValues(dropLookupFull)
	require.Eventually(t, func() bool { return testutil.ToFloat64(full) == extra }, testenv.Wait, testenv.Tick)
	close(gate)
	for i := range dirWaiting {
		require.Equal(t, strconv.Itoa(i+1), string(nextGame(t, b).Payload), "in order, once the lookup answers")
	}
	require.Equal(t, 1.0, testutil.ToFloat64(s1.cluster.dir.lookups.WithLabelValues(lookupFound)))
	require.Zero(t, testutil.ToFloat64(s1.metrics.drops.WithLabelValues(dropUnknownTarget)))
}

// heldAdds holds the presence additions of one channel, once armed,
// until release is closed.
type heldAdds struct {
	writeOnly
	lister  PresenceLister
	channel string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *heldAdds) AddPresence(ctx context.Context, ch string, info *hub.ClientInfo) error {
	if ch == h.channel && h.armed.Load() {
		h.entered <- struct{}{}
		<-h.release
	}
	return h.writeOnly.AddPresence(ctx, ch, info)
}

func (h *heldAdds) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	return h.lister.Presence(ctx, channel)
}

// A directory entry removed while its write is in flight does not stay
// (the engine would keep refreshing it for the life of the process).
func TestClusterDirectoryRemoveDuringAdd(t *testing.T) {
	prefix := clusterPrefix(t)
	var held *heldAdds
	s1 := newClusterServer(t, prefix, func(c *Config) {
		held = &heldAdds{writeOnly: c.Presence, lister: c.Presence.(PresenceLister), channel: nodeChannel(5),
			entered: make(chan struct{}, 1), release: make(chan struct{})}
		c.Presence = held
	})
	s2 := newClusterServer(t, prefix, nil)
	dialISSUN(t, s1, 5)
	c := s1.node(5)
	require.NotNil(t, c)
	held.armed.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); s1.cluster.dirAdd(s1.cluster.ctx, c) }() // as opPresent does
	<-held.entered
	s1.cluster.dirRemove(c) // the client went meanwhile
	close(held.release)
	<-done
	require.Empty(t, dirHolders(t, s2, 5), "nobody holds 5")
}

// Lookups run at most dirLookups at once: a target beyond them is
// dropped and counted, with no Redis read.
func TestClusterDirectoryLookupsBounded(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	for range dirLookups {
		s1.cluster.dir.running <- struct{}{}
	}
	a := dialISSUN(t, s1, 1)
	a.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 4242}, 1, "x"))
	full := s1.metrics.drops.WithLabelValues(dropLookupFull)
	require.Eventually(t, func() bool { return testutil.ToFloat64(full) == 1 }, testenv.Wait, testenv.Tick)
	for _, o := range []string{lookupFound, lookupMissing, lookupFailed} {
		require.Zero(t, testutil.ToFloat64(s1.cluster.dir.lookups.WithLabelValues(o)))
	}
	for range dirLookups {
		<-s1.cluster.dir.running
	}
}

// readDeadlines records how long the presence reads of one channel had
// left on their context.
type readDeadlines struct {
	writeOnly
	lister  PresenceLister
	channel string
	left    chan time.Duration
}

func (r *readDeadlines) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	if channel == r.channel {
		left := time.Duration(-1) // no deadline
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		select {
		case r.left <- left:
		default:
		}
	}
	return r.lister.Presence(ctx, channel)
}

// A handshake's NodeId directory read ends with the handshake
// (HandshakeTimeout), not later: with the directory's own bound made
// far longer, the read's deadline is still the handshake's.
func TestClusterDirectoryReadBoundedByHandshake(t *testing.T) {
	const handshake = 5 * time.Second
	for _, tc := range []struct {
		name string
		dial func(t *testing.T, s *testServer)
	}{
		{"issun", func(t *testing.T, s *testServer) { dialISSUN(t, s, 9) }},
		{"native", func(t *testing.T, s *testServer) { dialNative(t, s, 9) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reads *readDeadlines
			s := newClusterServer(t, clusterPrefix(t), func(c *Config) {
				reads = &readDeadlines{writeOnly: c.Presence, lister: c.Presence.(PresenceLister), channel: nodeChannel(9),
					left: make(chan time.Duration, 1)}
				c.Presence = reads
				c.HandshakeTimeout = handshake
			})
			s.cluster.dir.handshakeWait.Store(int64(time.Hour))
			tc.dial(t, s)
			select {
			case left := <-reads.left:
				require.Positive(t, left, "the read has a deadline")
				require.LessOrEqual(t, left, handshake, "the handshake's")
			default:
				t.Fatal("the handshake read no directory entry")
			}
		})
	}
}
