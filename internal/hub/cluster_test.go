package hub_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// cluster is hubs sharing one loopback control plane and one fake clock.
type cluster struct {
	net   *memory.ControlNetwork
	clock *clocktest.Fake
	hubs  map[string]*hub.Hub
	ctl   map[string]*memory.ControlNode
	logs  *testenv.Buffer
}

const announceEvery = time.Second

func newCluster(t testing.TB, names ...string) *cluster {
	t.Helper()
	c := &cluster{net: memory.NewControlNetwork(), clock: clocktest.New(time.Unix(1_700_000_000, 0)),
		hubs: map[string]*hub.Hub{}, ctl: map[string]*memory.ControlNode{}, logs: &testenv.Buffer{}}
	for _, n := range names {
		c.add(t, n)
	}
	return c
}

func (c *cluster) add(t testing.TB, name string) *hub.Hub {
	t.Helper()
	ctl := c.net.Node()
	h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Namespaces: chatNamespaces(),
		Clock: c.clock, Logger: slog.New(slog.NewTextHandler(c.logs, nil)).With("node", name),
		Cluster: hub.ClusterConfig{Control: ctl, NodeID: "id-" + name, NodeName: name, Version: "v1",
			AnnounceInterval: announceEvery}})
	require.NoError(t, err)
	_, err = h.RegisterFormat("raw", rawCodec{"raw"})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	c.hubs[name], c.ctl[name] = h, ctl
	return h
}

func nodeNames(h *hub.Hub) []string {
	var out []string
	for _, n := range h.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// clusterClient records what the server API does to it.
type clusterClient struct {
	h        *hub.Hub
	id, user string
	mu       sync.Mutex
	events   []string
}

func (c *clusterClient) record(s string) {
	c.mu.Lock()
	c.events = append(c.events, s)
	c.mu.Unlock()
}

func (c *clusterClient) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events...)
}

func (c *clusterClient) ID() string                     { return c.id }
func (c *clusterClient) UserID() string                 { return c.user }
func (c *clusterClient) Format() hub.FormatID           { return 0 }
func (c *clusterClient) Send(frame []byte) error        { return nil }
func (c *clusterClient) Deliver(string, uint64, []byte) {}
func (c *clusterClient) Disconnect(d hub.Disconnect) {
	c.record(fmt.Sprintf("disconnect %d %s", d.Code, d.Reason))
	c.h.RemoveClient(c)
}
func (c *clusterClient) ServerSubscribe(_ context.Context, ch string, o hub.ServerSubscribe) error {
	c.record(fmt.Sprintf("subscribe %s %s", ch, o.ChanInfo))
	return c.h.AddSubscriber(ch, c, false)
}
func (c *clusterClient) ServerUnsubscribe(_ context.Context, ch string, _ uint32, _ string) {
	c.record("unsubscribe " + ch)
	c.h.RemoveSubscriber(ch, c)
}
func (c *clusterClient) Refresh(exp int64, expired bool, info []byte) {
	c.record(fmt.Sprintf("refresh %d %v %s", exp, expired, info))
}

func connect(t testing.TB, h *hub.Hub, id, user string) *clusterClient {
	t.Helper()
	c := &clusterClient{h: h, id: id, user: user}
	require.NoError(t, h.AddClient(c))
	return c
}

func TestNodesAnnounceAndListEachOther(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	connect(t, cl.hubs["b"], "b1", "bob")
	cl.clock.Advance(announceEvery) // b's next announcement carries its client
	for name, h := range cl.hubs {
		names := nodeNames(h)
		require.Equal(t, name, names[0], "this node first")
		sort.Strings(names)
		require.Equal(t, []string{"a", "b", "c"}, names)
	}
	var b hub.NodeInfo
	for _, n := range cl.hubs["a"].Nodes() {
		if n.Name == "b" {
			b = n
		}
	}
	require.Equal(t, hub.NodeInfo{ID: "id-b", Name: "b", Version: "v1", NumClients: 1, NumUsers: 1, Uptime: announceEvery}, b)
}

func TestCleanLeaveRemovesNodeAtOnce(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	require.NoError(t, cl.hubs["c"].Shutdown(context.Background()))
	require.Equal(t, []string{"a", "b"}, nodeNames(cl.hubs["a"]))
	require.Equal(t, []string{"b", "a"}, nodeNames(cl.hubs["b"]))
	cl.clock.Advance(10 * announceEvery)
	require.Equal(t, []string{"a", "b"}, nodeNames(cl.hubs["a"]), "a left node does not come back")
}

func TestSilentNodeDropsAfterTTL(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	require.NoError(t, cl.ctl["c"].Close(context.Background())) // c's process dies
	cl.clock.Advance(2 * announceEvery)
	require.Equal(t, []string{"a", "b", "c"}, nodeNames(cl.hubs["a"]), "still within the TTL (3 intervals)")
	cl.clock.Advance(2 * announceEvery)
	require.Equal(t, []string{"a", "b"}, nodeNames(cl.hubs["a"]))
	require.Equal(t, []string{"b", "a"}, nodeNames(cl.hubs["b"]))
	require.Contains(t, cl.logs.String(), "node dropped: not heard from within the TTL")
}

func TestNewNodeIsAnsweredAtOnce(t *testing.T) {
	cl := newCluster(t, "a")
	cl.add(t, "b")
	require.Equal(t, []string{"b", "a"}, nodeNames(cl.hubs["b"]), "a answered b's first announcement")
	require.Equal(t, []string{"a", "b"}, nodeNames(cl.hubs["a"]))
}

func TestCommandsReachUserOnOtherNode(t *testing.T) {
	cl := newCluster(t, "a", "b")
	a1 := connect(t, cl.hubs["a"], "a1", "alice")
	a2 := connect(t, cl.hubs["a"], "a2", "alice")
	other := connect(t, cl.hubs["a"], "o1", "olga")
	b := cl.hubs["b"]
	ctx := context.Background()

	require.NoError(t, b.SubscribeUser(ctx, "alice", "", "chat:x", hub.ServerSubscribe{ChanInfo: []byte(`{"r":1}`)}))
	require.Eventually(t, func() bool { return cl.hubs["a"].Channels()["chat:x"] == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, b.UnsubscribeUser(ctx, "alice", "a2", "chat:x"))
	require.Eventually(t, func() bool { return cl.hubs["a"].Channels()["chat:x"] == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, b.RefreshUser(ctx, "alice", "", 1_800_000_000, false, []byte(`{"v":2}`)))
	require.NoError(t, b.DisconnectUser(ctx, "alice", "", hub.Disconnect{Code: 4000, Reason: "bye"}, []string{"a2"}))

	require.Eventually(t, func() bool { return len(a1.got()) == 3 && len(a2.got()) == 3 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []string{`subscribe chat:x {"r":1}`, `refresh 1800000000 false {"v":2}`, "disconnect 4000 bye"}, a1.got())
	require.Equal(t, []string{`subscribe chat:x {"r":1}`, "unsubscribe chat:x", `refresh 1800000000 false {"v":2}`}, a2.got(),
		"client-targeted unsubscribe and the disconnect whitelist")
	require.Empty(t, other.got(), "another user is untouched")
	require.Len(t, cl.hubs["a"].UserClients("alice", ""), 1)
	require.ErrorIs(t, b.DisconnectUser(ctx, "alice", "", hub.Disconnect{Code: 1000}, nil), hub.ErrBadRequest)
}

func TestChannelsSurveyMergesCounts(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	for i, name := range []string{"a", "b", "b", "c"} {
		require.NoError(t, cl.hubs[name].AddSubscriber("chat:all", &fakeSub{}, false))
		require.NoError(t, cl.hubs[name].AddSubscriber(fmt.Sprintf("chat:only-%s-%d", name, i), &fakeSub{}, false))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.Equal(t, map[string]int{"chat:all": 4, "chat:only-a-0": 1, "chat:only-b-1": 1, "chat:only-b-2": 1, "chat:only-c-3": 1},
		cl.hubs["b"].ClusterChannels(ctx))
}

// muteNode announces itself on the network and then never answers.
type muteNode struct{}

func (muteNode) HandleControl([]byte) {}

func TestSurveyIsPartialWhenANodeDoesNotAnswer(t *testing.T) {
	cl := newCluster(t, "a", "b")
	mute := cl.net.Node()
	require.NoError(t, mute.Run("id-mute", muteNode{}))
	require.NoError(t, mute.Broadcast(context.Background(), []byte(`{"t":"node","n":"id-mute","i":{"id":"id-mute","name":"mute"}}`)))
	require.Equal(t, []string{"a", "b", "mute"}, nodeNames(cl.hubs["a"]))
	require.NoError(t, cl.hubs["b"].AddSubscriber("chat:x", &fakeSub{}, false))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.Equal(t, map[string]int{"chat:x": 1}, cl.hubs["a"].ClusterChannels(ctx))
	require.Contains(t, cl.logs.String(), "survey incomplete")
	require.Contains(t, cl.logs.String(), "id-mute")
}

func TestMalformedControlMessagesAreDropped(t *testing.T) {
	cl := newCluster(t, "a")
	for _, m := range []string{`nope`, `{"t":"node","n":"x"}`, `{"t":"disconnect","n":"x","c":{"u":"alice","code":1}}`, `{"t":"what","n":"x"}`} {
		cl.hubs["a"].HandleControl([]byte(m))
	}
	require.Equal(t, []string{"a"}, nodeNames(cl.hubs["a"]))
	require.Contains(t, cl.logs.String(), "control message dropped")
}

func TestSingleNodeWithoutControlPlane(t *testing.T) {
	h := newHub(t, chatNamespaces())
	require.Len(t, h.Nodes(), 1)
	require.NotEmpty(t, h.NodeID())
	c := connect(t, h, "c1", "alice")
	require.NoError(t, h.DisconnectUser(context.Background(), "alice", "", hub.DisconnectForceNoReconnect, nil))
	require.Equal(t, []string{"disconnect 3503 force disconnect"}, c.got())
}

func TestCommandsFromOneNodeKeepTheirOrder(t *testing.T) {
	cl := newCluster(t, "a", "b")
	c := connect(t, cl.hubs["a"], "a1", "alice")
	ctx := context.Background()
	for range 20 {
		require.NoError(t, cl.hubs["b"].SubscribeUser(ctx, "alice", "", "chat:o", hub.ServerSubscribe{}))
		require.NoError(t, cl.hubs["b"].UnsubscribeUser(ctx, "alice", "", "chat:o"))
	}
	require.NoError(t, cl.hubs["b"].SubscribeUser(ctx, "alice", "", "chat:o", hub.ServerSubscribe{}))
	require.Eventually(t, func() bool { return len(c.got()) == 41 }, 5*time.Second, time.Millisecond)
	for i, e := range c.got() {
		if i%2 == 0 {
			require.Equal(t, "subscribe chat:o ", e, i)
		} else {
			require.Equal(t, "unsubscribe chat:o", e, i)
		}
	}
	// The last subscribe is recorded before the hub has added it.
	require.Eventually(t, func() bool { return cl.hubs["a"].Channels()["chat:o"] == 1 }, 5*time.Second, time.Millisecond,
		"the last command (subscribe) wins")
}

func TestClusterMetrics(t *testing.T) {
	net := memory.NewControlNetwork()
	reg := prometheus.NewRegistry()
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Registerer: reg,
		Cluster: hub.ClusterConfig{Control: net.Node(), NodeName: "a"}}, "raw")
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	other := net.Node()
	require.NoError(t, other.Run("id-b", muteNode{}))
	require.NoError(t, other.Broadcast(context.Background(), []byte(`{"t":"node","n":"id-b","i":{"id":"id-b","name":"b"}}`)))
	h.HandleControl([]byte("garbage"))
	want := map[string]float64{"switchboard_nodes": 2,
		`switchboard_control_messages_total{type="node",result="received"}`:     1,
		`switchboard_control_messages_total{type="unknown",result="malformed"}`: 1}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) == 2 {
				name += fmt.Sprintf(`{type=%q,result=%q}`, m.GetLabel()[1].GetValue(), m.GetLabel()[0].GetValue())
			}
			if m.GetGauge() != nil {
				got[name] = m.GetGauge().GetValue()
			} else if m.GetCounter() != nil {
				got[name] = m.GetCounter().GetValue()
			}
		}
	}
	for k, v := range want {
		require.Equal(t, v, got[k], k)
	}
}

func TestNodeTTLIsThreeAnnounceIntervals(t *testing.T) {
	cl := newCluster(t, "a")
	require.Equal(t, 3*announceEvery, cl.hubs["a"].NodeTTL(), "the default")
	require.Equal(t, 2*announceEvery, cl.hubs["a"].EchoGap(), "two intervals")
}

// RegistryComplete holds once a node has heard its own announcements come
// back for the TTL without a gap of more than two intervals; it ends when
// the plane stops delivering to it and when it shuts down. LiveIDs and
// LeftIDs tell live nodes from nodes that left cleanly.
func TestRegistryCompleteFollowsOwnEchoes(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	a := cl.hubs["a"]
	require.False(t, a.RegistryComplete(), "just started: a node not heard yet may be live")
	cl.clock.Advance(2 * announceEvery)
	require.False(t, a.RegistryComplete())
	cl.clock.Advance(announceEvery)
	require.True(t, a.RegistryComplete(), "its own announcements came back for the TTL")
	require.ElementsMatch(t, []string{"id-a", "id-b", "id-c"}, a.LiveIDs())
	require.Empty(t, a.LeftIDs())

	require.NoError(t, cl.hubs["c"].Shutdown(context.Background()))
	require.False(t, cl.hubs["c"].RegistryComplete(), "shutting down")
	require.ElementsMatch(t, []string{"id-a", "id-b"}, a.LiveIDs())
	require.Equal(t, []string{"id-c"}, a.LeftIDs(), "c left cleanly")

	b := cl.hubs["b"]
	require.NoError(t, cl.ctl["b"].Close(context.Background())) // b hears nothing more
	cl.clock.Advance(2 * announceEvery)
	require.True(t, b.RegistryComplete(), "a gap of two intervals still counts")
	cl.clock.Advance(announceEvery)
	require.False(t, b.RegistryComplete(), "b no longer hears its own announcements")
	cl.clock.Advance(announceEvery)
	require.Equal(t, []string{"id-b"}, b.LiveIDs(), "b's registry lists only itself")
	require.True(t, a.RegistryComplete())
	require.Empty(t, a.LeftIDs(), "c's leave is forgotten after the TTL")
	require.NotContains(t, a.LeftIDs(), "id-b", "b went silent: it did not leave")

	require.False(t, newHub(t, chatNamespaces()).RegistryComplete(), "no control plane: never complete")
}
