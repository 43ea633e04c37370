package postgres

import (
	"context"
	"encoding/json"
	"fmt"
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
// other Service on the same schema too: the chunk and later work go to
// the other node, whichever process assigns them.
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
	y := a.Node(t, "alice", 1, 1, true)
	require.NoError(t, b.Svc.FailChunk(ctx, x.Key, got[0].ID, got[0].LeaseID,
		scheduler.Failure{Message: "node shutting down", Code: scheduler.CodeShuttingDown, Retryable: true}))
	onY := a.WaitAssigned(t, y, 1)
	require.Equal(t, got[0].ID, onY[0].ID)

	cr2, err := b.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"n":2}`), Iterations: 1000})
	require.NoError(t, err)
	a.Complete(t, y, onY[0])
	onY = a.WaitAssigned(t, y, 2)
	require.Equal(t, cr2.JobID, onY[1].JobID)
	require.Len(t, a.Hub.Assignments(t, x.ID), 1, "the draining node got a new assignment")
	a.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
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
