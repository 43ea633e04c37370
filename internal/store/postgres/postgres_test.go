package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/scheduler/schedtest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func open(tb testing.TB, url, schema string) *Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{URL: url, Schema: schema, MaxConns: 8})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSchedulerConformance(t *testing.T) {
	url := testenv.PostgresURL(t)
	schedtest.Run(t, func(tb testing.TB) scheduler.Store {
		return open(tb, url, testenv.PostgresSchema(tb, url))
	})
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(context.Background(), Config{})
	require.ErrorContains(t, err, "no database URL")
	_, err = Open(context.Background(), Config{URL: "postgres://x", Schema: "Bad-Name"})
	require.ErrorContains(t, err, "schema")
	_, err = Open(context.Background(), Config{URL: "::"})
	require.ErrorContains(t, err, "database URL")
}

// Two Services, each on its own Store (pool, listener) over one schema,
// share 2,000 chunks: each is assigned and counted exactly once.
func TestTwoSchedulersShareOneDatabase(t *testing.T) {
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	a := schedtest.NewEnv(t, open(t, url, schema), scheduler.Config{})
	b := a.NewEnvOn(t, open(t, url, schema))
	var nodes []schedtest.SimNode
	for i := range 10 {
		env := a
		if i%2 == 1 {
			env = b
		}
		nodes = append(nodes, env.Node(t, "alice", 4, 4, true))
	}
	sim := schedtest.NewSimulator(a.Hub, nodes, 8, a.Svc, b.Svc)
	defer sim.Stop()
	var jobs []string
	for i := range 4 {
		env := a
		if i%2 == 1 {
			env = b // a job created in b wakes a through NOTIFY
		}
		cr, err := env.Svc.CreateJob(context.Background(), "alice", scheduler.JobSpec{Config: json.RawMessage(fmt.Sprintf(`{"job":%d}`, i)), Iterations: 500_000})
		require.NoError(t, err)
		require.Equal(t, 500, cr.Chunks)
		jobs = append(jobs, cr.JobID)
	}
	require.Eventually(t, func() bool { return sim.Completed() == 2000 }, 2*time.Minute, 10*time.Millisecond)
	for _, id := range jobs {
		j := a.WaitJob(t, id, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
		require.Equal(t, 500, j.Result.ChunksCompleted)
		require.Equal(t, int64(500_000), j.Result.TotalIterations)
	}
	sim.Check(t, 2000, jobs)
	nodesNow, err := a.Svc.Nodes(context.Background(), scheduler.Viewer{Admin: true})
	require.NoError(t, err)
	for _, n := range nodesNow {
		require.Equal(t, 0, n.Running)
	}
	t.Logf("assigned by a: %v, by b: %v", counter(t, a, "switchboard_scheduler_chunks_assigned_total"), counter(t, b, "switchboard_scheduler_chunks_assigned_total"))
}

// A node that hands a chunk back through one Service is draining for the
// other Service on the same schema too: with the first Service stopped,
// the other must assign the chunk, and gives it to the newer node
// although the draining one has more free capacity.
func TestDrainingSeenByEveryScheduler(t *testing.T) {
	ctx := context.Background()
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	a := schedtest.NewEnv(t, open(t, url, schema), scheduler.Config{})
	b := a.NewEnvOn(t, open(t, url, schema))
	x := a.Node(t, "alice", 2, 2, true)
	cr, err := a.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	got := a.WaitAssigned(t, x, 1)
	require.NoError(t, b.Svc.FailChunk(ctx, x.Key, got[0].ID, got[0].LeaseID,
		scheduler.Failure{Message: "node shutting down", Code: scheduler.CodeShuttingDown, Retryable: true}))
	a.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	require.NoError(t, b.Svc.Shutdown(ctx)) // from here only a assigns
	before := counter(t, b, "switchboard_scheduler_chunks_assigned_total")

	y := a.Node(t, "alice", 1, 1, true)
	onY := a.WaitAssigned(t, y, 1)
	require.Equal(t, got[0].ID, onY[0].ID)
	cr2, err := a.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"n":2}`), Iterations: 1000})
	require.NoError(t, err)
	a.Complete(t, y, onY[0])
	onY = a.WaitAssigned(t, y, 2)
	require.Equal(t, cr2.JobID, onY[1].JobID)
	require.Len(t, a.Hub.Assignments(t, x.ID), 1, "the draining node got a new assignment")
	require.Equal(t, before, counter(t, b, "switchboard_scheduler_chunks_assigned_total"), "b assigned after its shutdown")
	a.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
}

// hookStore runs a one-shot hook inside its transactions at a chosen Tx
// call (before ExtendLeases and AddRunning with a limit, after NodeByKey), so a test can
// commit another transaction at that point; failCount makes CountDraining
// fail.
type hookStore struct {
	*Store
	mu        sync.Mutex
	hooks     map[string]func(nodeID string)
	failCount atomic.Bool
}

func newHookStore(s *Store) *hookStore { return &hookStore{Store: s, hooks: map[string]func(string){}} }

// on arms fn for the next call of method.
func (h *hookStore) on(method string, fn func(nodeID string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks[method] = fn
}

func (h *hookStore) fire(method, nodeID string) {
	h.mu.Lock()
	fn := h.hooks[method]
	delete(h.hooks, method)
	h.mu.Unlock()
	if fn != nil {
		fn(nodeID)
	}
}

func (h *hookStore) InTx(ctx context.Context, fn func(scheduler.Tx) error) error {
	return h.Store.InTx(ctx, func(tx scheduler.Tx) error { return fn(hookTx{tx, h}) })
}

type hookTx struct {
	scheduler.Tx
	h *hookStore
}

func (t hookTx) ExtendLeases(ctx context.Context, nodeID string, deadline time.Time) (int, error) {
	t.h.fire("ExtendLeases", nodeID)
	return t.Tx.ExtendLeases(ctx, nodeID, deadline)
}

func (t hookTx) AddRunning(ctx context.Context, nodeID string, delta, limit int) (bool, error) {
	if limit > 0 {
		t.h.fire("AddRunning", nodeID)
	}
	return t.Tx.AddRunning(ctx, nodeID, delta, limit)
}

func (t hookTx) NodeByKey(ctx context.Context, key []byte) (scheduler.Node, error) {
	n, err := t.Tx.NodeByKey(ctx, key)
	t.h.fire("NodeByKey", n.ID) // after the read
	return n, err
}

func (t hookTx) CountDraining(ctx context.Context, ids []string) (int, error) {
	if t.h.failCount.Load() {
		return 0, errors.New("count failed (test)")
	}
	return t.Tx.CountDraining(ctx, ids)
}

// A drain another process commits while a heartbeat's transaction runs
// (after its first, unlocked read of the node) survives the heartbeat.
func TestHeartbeatKeepsConcurrentDrain(t *testing.T) {
	ctx := context.Background()
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	hs := newHookStore(open(t, url, schema))
	a := schedtest.NewEnv(t, hs, scheduler.Config{})
	b := a.NewEnvOn(t, open(t, url, schema))
	x := a.Node(t, "alice", 2, 2, true)
	hs.on("ExtendLeases", func(string) {
		_, err := b.Svc.Heartbeat(ctx, x.Key, scheduler.HeartbeatInfo{Draining: true})
		require.NoError(t, err)
	})
	st, err := a.Svc.Heartbeat(ctx, x.Key, scheduler.HeartbeatInfo{Status: "busy"})
	require.NoError(t, err)
	require.Equal(t, scheduler.StatusDraining, st.Status)
	ns, err := a.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
	require.NoError(t, err)
	require.True(t, ns[0].Draining, "drain lost by a concurrent heartbeat")
}

// A claim committed while a registration of the same key runs (after its
// first read) survives it: RegisterNode writes from a locked read.
func TestRegisterKeepsConcurrentClaim(t *testing.T) {
	ctx := context.Background()
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	hs := newHookStore(open(t, url, schema))
	a := schedtest.NewEnv(t, hs, scheduler.Config{})
	b := a.NewEnvOn(t, open(t, url, schema))
	key := schedtest.NewKey(t)
	reg, err := a.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{})
	require.NoError(t, err)
	hs.on("NodeByKey", func(string) {
		_, err := b.Svc.ClaimNode(ctx, "alice", *reg.ClaimCode, "rig", 1)
		require.NoError(t, err)
	})
	_, err = a.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Instance: "p2"})
	require.NoError(t, err)
	ns, err := a.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.NoError(t, err)
	require.Len(t, ns, 1, "the claim was lost")
	require.Equal(t, "rig", ns[0].Name)
}

// A node that drains between the plan and the lease (another process's
// commit) refuses the planned chunk; the pass plans again at once and the
// chunk goes to the other free node (the sweep is off here).
func TestRefusedPlanReplans(t *testing.T) {
	ctx := context.Background()
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	hs := newHookStore(open(t, url, schema))
	a := schedtest.NewEnv(t, hs, scheduler.Config{})
	x := a.Node(t, "alice", 2, 2, true)
	y := a.Node(t, "alice", 1, 1, true)
	var fired atomic.Bool
	hs.on("AddRunning", func(id string) {
		require.Equal(t, x.ID, id, "planned to the node with most free capacity")
		fired.Store(true)
		_, err := a.Svc.Heartbeat(ctx, x.Key, scheduler.HeartbeatInfo{Draining: true}) // its own transaction
		require.NoError(t, err)
	})
	cr, err := a.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	onY := a.WaitAssigned(t, y, 1)
	require.True(t, fired.Load())
	require.Equal(t, cr.JobID, onY[0].JobID)
	require.Empty(t, a.Hub.Assignments(t, x.ID))
}

// The draining gauge is absent, not 0, when the count fails.
func TestDrainingGaugeOmittedOnError(t *testing.T) {
	url := testenv.PostgresURL(t)
	hs := newHookStore(open(t, url, testenv.PostgresSchema(t, url)))
	a := schedtest.NewEnv(t, hs, scheduler.Config{})
	a.Node(t, "alice", 1, 1, true)
	gauge := func(name string) (float64, bool) {
		mfs, err := a.Reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	has := func() bool { _, ok := gauge("switchboard_scheduler_nodes_draining"); return ok }
	require.Eventually(t, func() bool { v, _ := gauge("switchboard_scheduler_nodes_online"); return v == 1 },
		testenv.Wait, testenv.Tick, "the node online (the count is read only then)")
	require.True(t, has())
	hs.failCount.Store(true)
	require.False(t, has(), "a failed count reported a value")
}

// A NOTIFY from one store reaches the other's Wakeups.
func TestNotifyWakesOtherStore(t *testing.T) {
	url := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, url)
	s1, s2 := open(t, url, schema), open(t, url, schema)
	require.NoError(t, s1.Notify(context.Background()))
	select {
	case <-s2.Wakeups():
	case <-time.After(testenv.Wait):
		t.Fatal("no wake-up")
	}
}

func counter(tb testing.TB, e *schedtest.Env, name string) float64 {
	mfs, err := e.Reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
