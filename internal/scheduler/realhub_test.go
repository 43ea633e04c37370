package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/scheduler/schedtest"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func newHub(t *testing.T, history bool) *hub.Hub {
	t.Helper()
	kept := hub.ChannelOptions{HistorySize: 1000, HistoryTTL: 24 * time.Hour, ForceRecovery: true}
	if !history {
		kept = hub.ChannelOptions{}
	}
	nodes := kept
	nodes.Presence, nodes.JoinLeave = true, true
	h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), PositionCheckInterval: -1,
		Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{
			"chunks": kept, "nodes": nodes, "jobs": kept, "scheduler": {},
		}}})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	return h
}

func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The Service on the real hub: presence join/leave pushes through its own
// format, assignments in chunks:{id} history (what a reconnecting node
// recovers), job events in jobs:{id} history.
func TestServiceOnRealHub(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs after the hub and store cleanups
	ctx := context.Background()
	h := newHub(t, true)
	svc, err := scheduler.New(scheduler.Config{Store: newStore(t), Publisher: h, Presence: h})
	require.NoError(t, err)
	require.NoError(t, svc.Run(ctx))
	defer func() { require.NoError(t, svc.Shutdown(ctx)) }()

	key := schedtest.NewKey(t)
	reg, err := svc.RegisterNode(ctx, key, scheduler.NodeInfo{TotalCores: new(2)})
	require.NoError(t, err)
	_, err = svc.ClaimNode(ctx, "alice", *reg.ClaimCode, "rig", 2)
	require.NoError(t, err)
	info := &hub.ClientInfo{ClientID: "conn-1", UserID: reg.ID}
	require.NoError(t, h.AddPresence(ctx, scheduler.ChannelOnline, info))
	require.NoError(t, h.PublishJoin(ctx, scheduler.ChannelOnline, info))

	cr, err := svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"seed":1}`), Iterations: 1500})
	require.NoError(t, err)
	var hist hub.HistoryResult
	require.Eventually(t, func() bool {
		hist, err = h.History(ctx, scheduler.ChunksChannel(reg.ID), hub.HistoryOptions{Limit: -1})
		require.NoError(t, err)
		return len(hist.Publications) == 2
	}, testenv.Wait, testenv.Tick)
	for _, p := range hist.Publications {
		var a scheduler.Assignment
		require.NoError(t, json.Unmarshal(p.Data, &a))
		c, err := svc.CompleteChunk(ctx, key, a.ID, a.LeaseID, schedtest.Result(a))
		require.NoError(t, err)
		require.True(t, c.Success)
	}
	jh, err := h.History(ctx, scheduler.JobChannel(cr.JobID), hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.NotEmpty(t, jh.Publications) // progress is coalesced (100 ms)
	var ev scheduler.Event
	require.NoError(t, json.Unmarshal(jh.Publications[len(jh.Publications)-1].Data, &ev))
	require.Equal(t, scheduler.EventCompleted, ev.Type)

	// The node's connection leaves: offline at once.
	require.NoError(t, h.RemovePresence(ctx, scheduler.ChannelOnline, "conn-1", reg.ID))
	require.NoError(t, h.PublishLeave(ctx, scheduler.ChannelOnline, info))
	require.Eventually(t, func() bool {
		ns, err := svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
		require.NoError(t, err)
		return !ns[0].Online
	}, testenv.Wait, testenv.Tick)
}

func TestRunRefusesNamespacesWithoutHistory(t *testing.T) {
	h := newHub(t, false)
	svc, err := scheduler.New(scheduler.Config{Store: newStore(t), Publisher: h, Presence: h})
	require.NoError(t, err)
	require.ErrorContains(t, svc.Run(context.Background()), "must keep history")
	_, err = svc.CreateJob(context.Background(), "a", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
	require.ErrorIs(t, err, scheduler.ErrStopped)
	require.NoError(t, svc.Shutdown(context.Background()))
}
