package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// clusterPrefix is a Redis key prefix of the test's own.
func clusterPrefix(t *testing.T) string {
	r := strings.NewReplacer("/", ".", " ", "_")
	return fmt.Sprintf("sbtest.%s.%d", r.Replace(t.Name()), time.Now().UnixNano())
}

// newClusterServer starts a relay on a hub of its own on the Redis engine
// under prefix: one process of a cluster.
func newClusterServer(t *testing.T, prefix string, mod func(*Config)) *testServer {
	t.Helper()
	b, err := redis.New(redis.Config{Address: testenv.RedisURL(t), Prefix: prefix})
	require.NoError(t, err)
	return startTestServer(t, hub.Config{Broker: b, Presence: b}, true, mod)
}

// nextPresence returns the next PRESENCE, skipping nothing else.
func nextPresence(t *testing.T, c *relaytest.Native) *wire.Presence {
	t.Helper()
	m := c.Next()
	p, ok := m.(*wire.Presence)
	require.True(t, ok, "got %s, want PRESENCE", m.FrameType())
	return p
}

func nodeIDs(ms []wire.Member) []wire.NodeID {
	out := make([]wire.NodeID, len(ms))
	for i, m := range ms {
		out[i] = m.NodeID
	}
	return out
}

func TestClusterNativeRoomAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, func(c *Config) { c.MaxMembers = 3 })
	s2 := newClusterServer(t, prefix, nil)
	a := dialNative(t, s1, 1)
	b, c := dialNative(t, s2, 2), dialNative(t, s2, 3)

	require.Equal(t, []wire.NodeID{1}, nodeIDs(a.Join("arena").Members))
	jb := b.Join("arena")
	require.ElementsMatch(t, []wire.NodeID{1, 2}, nodeIDs(jb.Members), "JOINED lists the members on both processes")
	require.Equal(t, []wire.NodeID{2}, nodeIDs(nextPresence(t, a).Joins), "a hears b join on the other process")

	// A NodeId connected on another process is refused at the handshake
	// (the NodeId directory).
	_, err := relaytest.TryNative(t, s1.Addr().String(), &wire.Hello{NodeID: 2}, relaytest.NativeOptions{})
	refusal(t, err, wire.ErrCodeConflict, closeNodeInUse)

	jc := c.Join("arena")
	require.Len(t, jc.Members, 3)
	require.Equal(t, []wire.NodeID{3}, nodeIDs(nextPresence(t, a).Joins))
	require.Equal(t, []wire.NodeID{3}, nodeIDs(nextPresence(t, b).Joins))

	// max_members counts every process: s1's cap of 3 is reached.
	d := dialNative(t, s1, 4)
	d.SendControl(&wire.Join{RequestID: 5, Room: "arena"})
	require.Equal(t, wire.ErrCodeRoomFull, nextError(t, d).Code)

	// Reliable events from a reach b and c on the other process, in order.
	const n = 150 // within the burst of the rate limit
	for i := range n {
		a.Send(&wire.NativeEvent{Handle: 1, Sequence: uint64(i), Payload: []byte("x")})
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpDrops(t, s1)
			dumpDrops(t, s2)
		}
	})
	for _, r := range []*relaytest.Native{b, c} {
		for i := range n {
			ev := r.NextEvent()
			require.Equal(t, uint64(i), ev.Sequence)
			require.Equal(t, wire.NodeID(1), ev.Sender)
			require.Equal(t, jb.Handle, ev.Handle, "the receiving process's handle")
		}
	}

	// b's event reaches a (remote) and c (local), not b; targeted to c
	// reaches c only.
	b.Send(&wire.NativeEvent{Handle: jb.Handle, Sequence: 1000, Targets: []wire.NodeID{3}})
	b.Send(&wire.NativeEvent{Handle: jb.Handle, Sequence: 1001})
	require.Equal(t, uint64(1000), c.NextEvent().Sequence)
	require.Equal(t, uint64(1001), c.NextEvent().Sequence)
	require.Equal(t, uint64(1001), a.NextEvent().Sequence, "the targeted event skipped a")
	a.Send(&wire.NativeEvent{Handle: 1, Sequence: 1002, Targets: []wire.NodeID{3}})
	require.Equal(t, uint64(1002), c.NextEvent().Sequence, "targeted to a member on another process")
	a.Send(&wire.NativeEvent{Handle: 1, Sequence: 1003})
	require.Equal(t, uint64(1003), b.NextEvent().Sequence, "b got no targeted event, no echo")
	select {
	case ev := <-b.Events:
		t.Fatalf("b got %d", ev.Sequence)
	default:
	}

	// Unreliable events stay unreliable across processes.
	require.Eventually(t, func() bool {
		_ = a.SendDatagram(&wire.NativeEvent{Handle: 1, Sequence: 7, Payload: []byte("dg")})
		select {
		case ev := <-b.Datagrams:
			return ev.Sequence == 7 && ev.Sender == 1 && ev.Handle == jb.Handle
		default:
			return false
		}
	}, testenv.Wait, 20*time.Millisecond)

	// The hub presence is cluster-wide; a disconnect is seen everywhere.
	pres, err := s1.hub.Presence(context.Background(), "relay:arena")
	require.NoError(t, err)
	require.Len(t, pres, 3)
	c.Close()
	require.Equal(t, []wire.NodeID{3}, nextPresence(t, a).Leaves)
	require.Eventually(t, func() bool {
		pres, err := s1.hub.Presence(context.Background(), "relay:arena")
		return err == nil && len(pres) == 2
	}, testenv.Wait, testenv.Tick)
	d.SendControl(&wire.Join{RequestID: 6, Room: "arena"})
	for {
		if j, ok := d.Next().(*wire.Joined); ok {
			require.Len(t, j.Members, 3, "room for d again")
			break
		}
	}
}

func TestClusterISSUNRoomAcrossProcesses(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, b := dialISSUN(t, s1, 1), dialISSUN(t, s2, 2)

	a.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match"}.Append(nil)))
	require.Equal(t, game("SwitchboardJoined"), a.Next().TypeName)
	b.Send(control(wire.SuffixJoin, wire.RoomRequest{Room: "match"}.Append(nil)))
	ra, err := wire.DecodeRoomAnswer(b.Next().Payload)
	require.NoError(t, err)
	require.ElementsMatch(t, []wire.NodeID{1, 2}, ra.Members)
	p := a.Next()
	require.Equal(t, game("SwitchboardPresence"), p.TypeName)
	pa, err := wire.DecodePresenceAnswer(p.Payload)
	require.NoError(t, err)
	require.Equal(t, wire.PresenceAnswer{Room: "match", Joined: []wire.NodeID{2}}, pa)

	for i := range 100 {
		a.Send(event(broadcast, uint64(i), fmt.Sprint(i)))
	}
	for i := range 100 {
		ev := b.Next()
		require.Equal(t, fmt.Sprint(i), string(ev.Payload))
		require.Equal(t, wire.NodeID(1), ev.Metadata.Sender)
	}
	b.Send(event(wire.Scope{Kind: wire.ScopeTargeted, Target: 1}, 1, "to a"))
	ev := a.Next()
	require.Equal(t, "to a", string(ev.Payload), "targeted to a NodeId on another process")
	require.Equal(t, wire.NodeID(2), ev.Metadata.Sender)

	b.Close()
	pa, err = wire.DecodePresenceAnswer(a.Next().Payload)
	require.NoError(t, err)
	require.Equal(t, []wire.NodeID{2}, pa.Left, "the disconnect is seen on the other process")
}

// The periodic sync adds members whose join the bus did not carry and
// drops them when their presence goes (a process that died).
func TestClusterSyncFromPresence(t *testing.T) {
	prefix := clusterPrefix(t)
	clk := clocktest.New(time.Now())
	s1 := newClusterServer(t, prefix, func(c *Config) {
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, time.Minute
	})
	a := dialNative(t, s1, 1)
	a.Join("lobby")
	ctx := context.Background()
	ghost, _ := json.Marshal(presenceEntry{NodeID: "77", Transport: "quic-native", Process: "dead-process"})
	require.NoError(t, s1.hub.AddPresence(ctx, "relay:lobby", &hub.ClientInfo{ClientID: "ghost", UserID: "g", ChanInfo: ghost}))
	armed := func() bool { return clk.Pending() >= 2 } // a's heartbeat and the sync loop's timer
	require.Eventually(t, armed, testenv.Wait, testenv.Tick)
	clk.Advance(time.Minute)
	p := nextPresence(t, a)
	require.Equal(t, []wire.Member{{NodeID: 77, User: "g"}}, p.Joins)

	require.NoError(t, s1.hub.RemovePresence(ctx, "relay:lobby", "ghost", "g"))
	require.Eventually(t, armed, testenv.Wait, testenv.Tick)
	clk.Advance(time.Minute)
	require.Equal(t, []wire.NodeID{77}, nextPresence(t, a).Leaves)
}

// When the engine replaces its PUB/SUB connection (joins and leaves sent
// meanwhile are lost), the rooms it resubscribed are synced from presence
// at once, not at the next periodic sync.
func TestClusterResyncAfterPubSubReconnect(t *testing.T) {
	srv := testenv.StartRedis(t)
	b, err := redis.New(redis.Config{Address: srv.URL(), Prefix: clusterPrefix(t)})
	require.NoError(t, err)
	clk := clocktest.New(time.Now())
	s1 := startTestServer(t, hub.Config{Broker: b, Presence: b}, true, func(c *Config) {
		c.Clock, c.HeartbeatInterval, c.SyncInterval = clk, time.Hour, time.Hour // the clock never moves
	})
	a := dialNative(t, s1, 1)
	a.Join("arena")
	// A member whose bus join was lost: only its presence tells of it.
	ghost, _ := json.Marshal(presenceEntry{NodeID: "77", Transport: "quic-native", Process: "other-process"})
	require.NoError(t, s1.hub.AddPresence(context.Background(), "relay:arena", &hub.ClientInfo{ClientID: "ghost", UserID: "g", ChanInfo: ghost}))
	reply, err := srv.Command("CLIENT", "KILL", "TYPE", "pubsub")
	require.NoError(t, err)
	require.NotEqual(t, ":0", reply, "a PUB/SUB connection was killed")
	p := nextPresence(t, a)
	require.Equal(t, []wire.Member{{NodeID: 77, User: "g"}}, p.Joins, "synced after the resubscribe")
}

func dumpDrops(t *testing.T, s *testServer) {
	mfs, _ := s.reg.Gather()
	for _, mf := range mfs {
		if strings.Contains(mf.GetName(), "drops") || strings.Contains(mf.GetName(), "bus") {
			for _, m := range mf.Metric {
				t.Logf("%s %v %v", mf.GetName(), m.Label, m.Counter.GetValue())
			}
		}
	}
}

// writeOnlyPresence records presence but cannot list it.
type writeOnlyPresence struct{}

func (writeOnlyPresence) AddPresence(context.Context, string, *hub.ClientInfo) error   { return nil }
func (writeOnlyPresence) RemovePresence(context.Context, string, string, string) error { return nil }
func (writeOnlyPresence) PublishJoin(context.Context, string, *hub.ClientInfo) error   { return nil }
func (writeOnlyPresence) PublishLeave(context.Context, string, *hub.ClientInfo) error  { return nil }

type nopBus struct{}

func (nopBus) Listen(func(string, []byte)) error                 { return nil }
func (nopBus) Subscribe(context.Context, string) error           { return nil }
func (nopBus) Unsubscribe(string) error                          { return nil }
func (nopBus) Publish(context.Context, []hub.TopicMessage) error { return nil }

func TestClusterNeedsListablePresence(t *testing.T) {
	_, err := New(Config{Address: "127.0.0.1:0", Bus: nopBus{}, Presence: writeOnlyPresence{}})
	require.ErrorContains(t, err, "relay: bus: needs a presence that lists channels")
	require.Nil(t, newTestServer(t, nil).cluster, "no bus, no cluster state")
}

// failingBus cannot subscribe (Redis down).
type failingBus struct{ nopBus }

func (failingBus) Subscribe(context.Context, string) error {
	return fmt.Errorf("redis broker: subscribe topic: %w", hub.ErrRetryLater)
}

func TestClusterJoinWhileTheBusIsDown(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Bus = failingBus{} })
	a := dialNative(t, s, 1)
	a.SendControl(&wire.Join{RequestID: 1, Room: "r", Create: true})
	require.Equal(t, wire.ErrCodeUnavailable, nextError(t, a).Code)
	require.Empty(t, s.Rooms(), "no room left behind")
	require.Nil(t, s.cluster.room("r"))
}

// A process publishes events only while another process has members of
// the room, and holds a room's topic only while it has members of it.
func TestClusterBusOnlyWhenNeeded(t *testing.T) {
	prefix := clusterPrefix(t)
	s1 := newClusterServer(t, prefix, nil)
	s2 := newClusterServer(t, prefix, nil)
	a, a2 := dialNative(t, s1, 1), dialNative(t, s1, 3)
	ja := a.Join("solo")
	a2.Join("solo")
	nextPresence(t, a)
	published := func() float64 { return testutil.ToFloat64(s1.cluster.published) }
	require.Eventually(t, func() bool { return published() == 2 }, testenv.Wait, testenv.Tick, "the two joins")
	for i := range 20 {
		a.Send(&wire.NativeEvent{Handle: ja.Handle, Sequence: uint64(i)})
		require.Equal(t, uint64(i), a2.NextEvent().Sequence)
	}
	require.Equal(t, 2.0, published(), "no other process has members: no event published")
	// Targeted to a local member only: not published even with a remote member.
	b := dialNative(t, s2, 2)
	b.Join("solo")
	require.Equal(t, []wire.NodeID{2}, nodeIDs(nextPresence(t, a).Joins))
	a.Send(&wire.NativeEvent{Handle: ja.Handle, Sequence: 100, Targets: []wire.NodeID{3}})
	require.Equal(t, uint64(100), a2.NextEvent().Sequence)
	a.Send(&wire.NativeEvent{Handle: ja.Handle, Sequence: 101})
	require.Equal(t, uint64(101), b.NextEvent().Sequence)
	// Counted once Redis answered the publish, which may be after b got it.
	require.Eventually(t, func() bool { return published() == 3 }, testenv.Wait, testenv.Tick, "only the untargeted event")

	require.NotNil(t, s2.cluster.room("solo"))
	b.Close()
	require.Eventually(t, func() bool { return s2.cluster.room("solo") == nil }, testenv.Wait, testenv.Tick,
		"s2 let go of the topic with its last member")
}

// stuckBus holds every Publish until released: Redis that does not answer.
type stuckBus struct {
	nopBus
	entered chan struct{}
	release chan struct{}
}

func (b stuckBus) Publish(ctx context.Context, _ []hub.TopicMessage) error {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// While the engine does not take messages, the events waiting for it are
// capped by bytes (relay.bus_queue_bytes) as well as by count; what is
// beyond is dropped and counted, and the budget comes back as the queue
// drains.
func TestClusterBusQueueBytes(t *testing.T) {
	bus := stuckBus{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := newTestServer(t, func(c *Config) { c.Bus = bus; c.BusQueueBytes = 1000 })
	cl := s.cluster
	full := func() float64 { return testutil.ToFloat64(cl.dropFull) }
	event := make([]byte, 300)
	require.True(t, cl.enqueue("relay:r", event))
	<-bus.entered // the publisher holds the first, outside the budget
	for range 3 {
		require.True(t, cl.enqueue("relay:r", event))
	}
	require.False(t, cl.enqueue("relay:r", event), "1,200 bytes would be over 1,000")
	require.Equal(t, 1.0, full())
	require.Equal(t, int64(900), cl.queued.Load())
	close(bus.release)
	require.Eventually(t, func() bool { return cl.queued.Load() == 0 }, testenv.Wait, testenv.Tick)
	require.True(t, cl.enqueue("relay:r", event), "room again once drained")
}
