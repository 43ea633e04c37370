package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// adapterSession is a connection of another transport adapter: a
// hub.Session that is not a hub.Client. It leaves the hub when
// disconnected, as a connection does once closed.
type adapterSession struct {
	h        *hub.Hub
	id, user string
	mu       sync.Mutex
	events   []string
}

func (s *adapterSession) ID() string     { return s.id }
func (s *adapterSession) UserID() string { return s.user }
func (s *adapterSession) Disconnect(d hub.Disconnect) {
	s.record(fmt.Sprintf("disconnect %d %s", d.Code, d.Reason))
	go s.h.RemoveSession(s)
}
func (s *adapterSession) Refresh(exp int64, expired bool, info []byte) {
	s.record(fmt.Sprintf("refresh %d %v %s", exp, expired, info))
}
func (s *adapterSession) record(e string) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}
func (s *adapterSession) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func addSession(t testing.TB, h *hub.Hub, id, user string) *adapterSession {
	t.Helper()
	s := &adapterSession{h: h, id: id, user: user}
	require.NoError(t, h.AddSession(s))
	return s
}

func TestSessionsShareTheUserIndexWithClients(t *testing.T) {
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), UserConnectionLimit: 1}, "raw")
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	c := connect(t, h, "ws-1", "alice")
	s := addSession(t, h, "relay-1", "alice")
	addSession(t, h, "relay-2", "") // anonymous

	require.Equal(t, 3, h.NumClients(), "sessions count as connections")
	require.Equal(t, 2, h.NumUsers(), "alice and the anonymous user")
	require.Len(t, h.UserSessions("alice", ""), 2)
	require.Equal(t, []hub.Session{s}, h.UserSessions("alice", "relay-1"))
	require.Equal(t, []hub.Client{c}, h.UserClients("alice", ""), "UserClients lists the clients only")
	require.ErrorIs(t, h.Deliver("relay-1", []byte("x")), hub.ErrNoClient, "a session takes no pushes")
	require.Equal(t, errs.Conflict, errs.CodeOf(h.AddSession(&adapterSession{h: h, id: "relay-1", user: "bob"})),
		"an id is registered once")

	// The hub's per-user limit counts its own clients only: alice's
	// relay session does not use up her one WebSocket connection.
	h.RemoveClient(c)
	connect(t, h, "ws-2", "alice")
	require.ErrorIs(t, h.AddClient(&clusterClient{h: h, id: "ws-3", user: "alice"}), hub.ErrLimitExceeded)

	// A stale value does not remove the session registered under its id.
	h.RemoveSession(&adapterSession{h: h, id: "relay-1", user: "alice"})
	require.Len(t, h.UserSessions("alice", "relay-1"), 1)
	h.RemoveSession(s)
	require.Empty(t, h.UserSessions("alice", "relay-1"))
	require.Equal(t, 2, h.NumClients())
}

func TestUserCommandsReachSessionsOnEveryNode(t *testing.T) {
	cl := newCluster(t, "a", "b")
	a, b := cl.hubs["a"], cl.hubs["b"]
	onB := addSession(t, b, "relay-b", "alice")
	kept := addSession(t, b, "relay-kept", "alice")
	onA := addSession(t, a, "relay-a", "alice")
	client := connect(t, b, "ws-b", "alice")
	ctx := context.Background()

	// Subscriptions are for clients: the sessions are left alone.
	require.NoError(t, a.SubscribeUser(ctx, "alice", "", "chat:x", hub.ServerSubscribe{}))
	require.NoError(t, a.RefreshUser(ctx, "alice", "relay-b", 1_800_000_000, false, []byte(`{"v":2}`)))
	require.NoError(t, a.DisconnectUser(ctx, "alice", "", hub.Disconnect{Code: 4001, Reason: "banned"}, []string{"relay-kept"}))

	require.Eventually(t, func() bool { return len(onB.got()) == 2 && len(client.got()) == 2 }, testenv.Wait, testenv.Tick)
	require.Equal(t, []string{`refresh 1800000000 false {"v":2}`, "disconnect 4001 banned"}, onB.got(), "on the other node")
	require.Equal(t, []string{"disconnect 4001 banned"}, onA.got(), "on the sending node")
	require.Empty(t, kept.got(), "the whitelist holds for sessions")
	require.Equal(t, []string{"subscribe chat:x ", "disconnect 4001 banned"}, client.got())
	require.Eventually(t, func() bool { return len(b.UserSessions("alice", "")) == 1 }, testenv.Wait, testenv.Tick)

	// A command for one session id reaches that one only.
	require.NoError(t, a.DisconnectUser(ctx, "alice", "relay-kept", hub.DisconnectForceReconnect, nil))
	require.Eventually(t, func() bool { return len(kept.got()) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, []string{"disconnect 3011 force reconnect"}, kept.got())
}

func TestShutdownDisconnectsSessionsAndWaits(t *testing.T) {
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence()}, "raw")
	s := addSession(t, h, "relay-1", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	require.Equal(t, []string{"disconnect 3001 shutdown"}, s.got())
	require.Equal(t, 0, h.NumClients(), "Shutdown returned after the session left")
	require.ErrorIs(t, h.AddSession(&adapterSession{h: h, id: "late", user: "bob"}), hub.ErrNotAvailable)
}

// recordingPlane is a one-node control plane that records the types of
// the messages broadcast; gate, when set, holds announcements until it is
// closed.
type recordingPlane struct {
	mu    sync.Mutex
	types []string
	gate  chan struct{}
	held  chan struct{} // receives when an announcement waits at gate
}

func (p *recordingPlane) Run(string, hub.ControlHandler) error { return nil }
func (p *recordingPlane) Send(context.Context, string, []byte) error {
	return nil
}
func (p *recordingPlane) Broadcast(ctx context.Context, data []byte) error {
	var m struct {
		Type string `json:"t"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	if m.Type == "node" && p.gate != nil {
		p.held <- struct{}{}
		<-p.gate
	}
	p.mu.Lock()
	p.types = append(p.types, m.Type)
	p.mu.Unlock()
	return nil
}
func (p *recordingPlane) sent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.types...)
}

func TestShutdownStopsTheAnnouncer(t *testing.T) {
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	plane := &recordingPlane{}
	logs := &testenv.Buffer{}
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Clock: clk,
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Cluster: hub.ClusterConfig{Control: plane, AnnounceInterval: time.Second}}, "raw")
	clk.Advance(2 * time.Second)
	require.Equal(t, []string{"node", "node", "node"}, plane.sent(), "at start, then every interval")

	require.NoError(t, h.Shutdown(context.Background()))
	require.Equal(t, []string{"node", "node", "node", "leave"}, plane.sent())
	require.Zero(t, clk.Pending(), "no announcement timer is left")
	clk.Advance(10 * time.Second)
	require.Equal(t, []string{"node", "node", "node", "leave"}, plane.sent(), "nothing announced after Shutdown")
	require.NotContains(t, logs.String(), "announcement failed")
}

func TestShutdownWaitsForTheAnnouncementInFlight(t *testing.T) {
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	plane := &recordingPlane{}
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Clock: clk,
		Cluster: hub.ClusterConfig{Control: plane, AnnounceInterval: time.Second}}, "raw")
	plane.gate, plane.held = make(chan struct{}), make(chan struct{}, 1)
	go clk.Advance(time.Second) // the timer's announcement blocks in Broadcast
	<-plane.held

	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while an announcement was still being sent", err)
	case <-time.After(50 * time.Millisecond): // a bounded look for a wrong early return
	}
	close(plane.gate)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(testenv.Wait):
		t.Fatal("Shutdown did not return after the announcement ended")
	}
	require.Equal(t, []string{"node", "node", "leave"}, plane.sent(), "the leave comes after the last announcement")
}
