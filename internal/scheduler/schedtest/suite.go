package schedtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// Run runs the conformance suite: the Service's behaviour on a store from
// f (each test gets a fresh one).
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"RegisterAndClaim", testRegisterAndClaim},
		{"SplitAssignCompleteAggregate", testSplitAssignComplete},
		{"CapacityAndMostFree", testCapacity},
		{"Eligibility", testEligibility},
		{"OnlineOnly", testOnlineOnly},
		{"LeaseExpiryBackoffLeaseLost", testLeaseExpiry},
		{"HeartbeatAndProgressExtendLeases", testExtend},
		{"AttemptCap", testAttemptCap},
		{"HandBackIsNoAttempt", testHandBack},
		{"HandBackDrainsNode", testHandBackDrains},
		{"DrainingOnlyNodeLeavesChunkPending", testDrainingOnlyNode},
		{"DrainingHeartbeat", testDrainingHeartbeat},
		{"LateDrainOfOldProcessIgnored", testLateDrain},
		{"RegisterResetsDrainingStatus", testRegisterResetsDrainingStatus},
		{"FailRetryableAndNot", testFail},
		{"Cancel", testCancel},
		{"ConcurrentCompletionsAggregateOnce", testConcurrentCompletions},
		{"PublishFailureRollsBack", testPublishFailure},
		{"Validation", testValidation},
		{"AssignedChunksAndRestart", testAssignedChunks},
		{"Priority", testPriority},
		{"OtherShapeResults", testOtherShapes},
		{"SweepRepairsPresence", testSweepPresence},
		{"CoalescedProgress", testCoalescedProgress},
		{"ConcurrentRegisterOneNode", testConcurrentRegister},
		{"RowVersions", testRowVersions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

var ctx = context.Background()

func requireReason(t *testing.T, err error, reason string) {
	t.Helper()
	require.Error(t, err)
	e := errs.Find(err)
	require.NotNil(t, e, "%v is not an *errs.Error", err)
	require.Equal(t, reason, e.Reason, "%v", err)
}

// requireCode checks err's code and that its text contains contains
// exactly once (a field named twice, "result: result: …", is a bug).
func requireCode(t *testing.T, err error, code errs.Code, contains string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, errs.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), contains)
	if contains != "" {
		require.Equal(t, 1, strings.Count(err.Error(), contains), "%q names %q more than once", err.Error(), contains)
	}
}

func testRegisterAndClaim(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	key := NewKey(t)
	reg, err := e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: new("box"), TotalCores: new(8), EnabledCores: new(4), Platform: new("linux"), Version: new("1.0")})
	require.NoError(t, err)
	require.False(t, reg.Claimed)
	require.Equal(t, scheduler.ClaimCode(key), *reg.ClaimCode)
	again, err := e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: new("box2"), TotalCores: new(8), EnabledCores: new(2)})
	require.NoError(t, err)
	require.Equal(t, reg.ID, again.ID)

	_, err = e.Svc.Heartbeat(ctx, key, scheduler.HeartbeatInfo{})
	requireReason(t, err, scheduler.ReasonNodeNotClaimed)
	_, err = e.Svc.NodeForToken(ctx, key)
	requireReason(t, err, scheduler.ReasonNodeNotClaimed)
	_, err = e.Svc.ClaimNode(ctx, "alice", "AAAAAA", "x", 0)
	requireReason(t, err, scheduler.ReasonUnknownCode)
	_, err = e.Svc.ClaimNode(ctx, "alice", "A1", "x", 0)
	requireCode(t, err, errs.Invalid, "code")

	code := *reg.ClaimCode
	typed := fmt.Sprintf("%s-%s", code[:3], code[3:])
	n, err := e.Svc.ClaimNode(ctx, "alice", typed, "rig", 0)
	require.NoError(t, err)
	require.Equal(t, "alice", n.OwnerID)
	require.Equal(t, 2, n.EnabledCores) // the second register's
	require.Equal(t, 2, n.MaxParallel)
	_, err = e.Svc.ClaimNode(ctx, "bob", code, "mine", 0)
	requireReason(t, err, scheduler.ReasonAlreadyClaimed)

	reg, err = e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{})
	require.NoError(t, err)
	require.True(t, reg.Claimed)
	require.Nil(t, reg.ClaimCode)
	// Omitted fields keep their stored values.
	ns, err := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.NoError(t, err)
	require.Len(t, ns, 1)
	require.Equal(t, [5]any{"box2", 8, 2, "linux", "1.0"}, [5]any{ns[0].Hostname, ns[0].TotalCores, ns[0].EnabledCores, ns[0].Platform, ns[0].Version})
	_, err = e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Version: new("1.1"), TotalCores: new(6)})
	require.NoError(t, err)
	ns, err = e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.NoError(t, err)
	require.Equal(t, [5]any{"box2", 6, 2, "linux", "1.1"}, [5]any{ns[0].Hostname, ns[0].TotalCores, ns[0].EnabledCores, ns[0].Platform, ns[0].Version})
	st, err := e.Svc.Heartbeat(ctx, key, scheduler.HeartbeatInfo{Status: "busy"})
	require.NoError(t, err)
	require.Equal(t, scheduler.NodeStatus{ID: n.ID, Name: "rig", MaxParallel: 2, Status: "busy"}, st)
	tok, err := e.Svc.NodeForToken(ctx, key)
	require.NoError(t, err)
	require.Equal(t, n.ID, tok.ID)

	cfg := e.Hub.Events(t, scheduler.NodeChannel(n.ID))
	require.Len(t, cfg, 1)
	require.Equal(t, map[string]any{"type": "config", "userId": "alice", "name": "rig", "totalCores": 8.0, "maxParallel": 2.0}, cfg[0])

	nodes, err := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	nodes, _ = e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "bob"})
	require.Empty(t, nodes)
	nodes, _ = e.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
	require.Len(t, nodes, 1)
	var js map[string]any
	b, _ := json.Marshal(nodes[0])
	require.NoError(t, json.Unmarshal(b, &js))
	for _, k := range []string{"id", "name", "hostname", "platform", "version", "totalCores", "enabledCores", "maxParallel", "claimed", "ownerId", "online", "running", "capacity", "status", "draining", "lastSeenAt", "createdAt", "updatedAt", "rowVersion"} {
		require.Contains(t, js, k)
	}
	require.Len(t, js, 19)

	require.ErrorIs(t, e.Svc.GrantNode(ctx, scheduler.Viewer{UserID: "bob"}, n.ID, "carol"), scheduler.ErrNotYours)
	require.ErrorIs(t, e.Svc.GrantNode(ctx, scheduler.Viewer{UserID: "alice"}, "nope", "carol"), scheduler.ErrNodeNotFound)
	require.NoError(t, e.Svc.GrantNode(ctx, scheduler.Viewer{UserID: "alice"}, n.ID, "carol"))
	require.NoError(t, e.Svc.GrantNode(ctx, scheduler.Viewer{UserID: "alice"}, n.ID, "carol"))
}

func testSplitAssignComplete(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	node := e.Node(t, "alice", 4, 0, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"b":2, "a":1}`), Iterations: 2500})
	require.NoError(t, err)
	require.Equal(t, 3, cr.Chunks)
	h, _ := scheduler.ConfigHash([]byte(`{"a":1,"b":2}`))
	require.Equal(t, h, cr.ConfigHash)

	as := e.WaitAssigned(t, node, 3)
	sort.Slice(as, func(i, j int) bool { return as[i].SeedOffset < as[j].SeedOffset })
	for i, want := range []int64{1000, 1000, 500} {
		require.Equal(t, want, as[i].Iterations)
		require.Equal(t, int64(i*1000), as[i].SeedOffset)
		require.Equal(t, cr.JobID, as[i].JobID)
		require.Equal(t, h, as[i].ConfigHash)
		require.JSONEq(t, `{"a":1,"b":2}`, string(as[i].Config))
		require.Equal(t, Start.Add(scheduler.DefaultLease), as[i].Deadline)
		require.NotEmpty(t, as[i].LeaseID)
	}
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobRunning })
	require.Equal(t, scheduler.ChunkCounts{Total: 3, Running: 3}, j.Chunks)

	var rs []scheduler.ChunkResult
	for i, a := range as {
		c := e.Complete(t, node, a)
		require.Equal(t, i == 2, c.JobComplete)
		var r scheduler.ChunkResult
		require.NoError(t, json.Unmarshal(Result(a), &r))
		rs = append(rs, r)
	}
	again := e.Complete(t, node, as[0])
	require.Equal(t, scheduler.Completion{Success: true, AlreadyCompleted: true}, again)
	again, err = e.Svc.CompleteChunk(ctx, node.Key, as[1].ID, "", Result(as[1]))
	require.NoError(t, err)
	require.True(t, again.AlreadyCompleted)

	j, err = e.Svc.Job(ctx, scheduler.Viewer{UserID: "alice"}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, scheduler.JobCompleted, j.Status)
	require.Equal(t, 1.0, j.Progress())
	require.Equal(t, scheduler.AggregateResults(rs), j.Result)
	require.Equal(t, int64(2500), j.Result.TotalIterations)
	_, err = e.Svc.Job(ctx, scheduler.Viewer{UserID: "bob"}, cr.JobID)
	require.ErrorIs(t, err, scheduler.ErrJobNotFound)

	ev := e.Hub.Events(t, scheduler.JobChannel(cr.JobID))
	require.Len(t, ev, 4) // leased (running), 1 and 2 chunks done, completed
	require.Equal(t, []any{"progress", "progress", "progress", "completed"}, []any{ev[0]["type"], ev[1]["type"], ev[2]["type"], ev[3]["type"]})
	require.Equal(t, "running", ev[0]["payload"].(map[string]any)["status"])
	payload := ev[3]["payload"].(map[string]any)
	require.Equal(t, "completed", payload["status"])
	require.Equal(t, float64(2500), payload["result"].(map[string]any)["totalIterations"])
	require.Nil(t, payload["error"])
	require.NotNil(t, payload["finishedAt"])
	requireVersionsRise(t, ev, true)
	require.Equal(t, float64(j.RowVersion), payload["rowVersion"], "the last event carries the stored version")
	feed := e.Hub.Events(t, scheduler.OwnerJobsChannel("alice"))
	requireVersionsRise(t, feed, false)
	requireVersionsRise(t, e.Hub.Events(t, scheduler.ChannelAdminNode), false)
	require.NotEmpty(t, feed)
	require.Equal(t, "job", feed[0]["type"])
	require.NotEmpty(t, e.Hub.Events(t, scheduler.ChannelAdminJobs))

	jobs, err := e.Svc.Jobs(ctx, scheduler.Viewer{UserID: "alice"}, scheduler.JobQuery{})
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	jobs, _ = e.Svc.Jobs(ctx, scheduler.Viewer{UserID: "bob"}, scheduler.JobQuery{})
	require.Empty(t, jobs)
	n, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.Equal(t, 0, n[0].Running)
	require.True(t, n[0].Online)
}

func testCapacity(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	small := e.Node(t, "alice", 8, 2, true) // min(2, 8) = 2
	big := e.Node(t, "alice", 3, 16, true)  // min(16, 3) = 3
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 10_000})
	require.NoError(t, err)
	a1 := e.WaitAssigned(t, small, 2)
	a2 := e.WaitAssigned(t, big, 3)
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Running == 5 })
	require.Equal(t, 5, j.Chunks.Pending)
	require.Len(t, e.Hub.Assignments(t, small.ID), 2)
	require.Len(t, e.Hub.Assignments(t, big.ID), 3)
	e.Complete(t, small, a1[0])
	e.WaitAssigned(t, small, 3)
	e.Complete(t, big, a2[0])
	e.WaitAssigned(t, big, 4)
	j = e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Running == 5 })
	require.Equal(t, 3, j.Chunks.Pending)
}

func testEligibility(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	bobs := e.Node(t, "bob", 1, 1, true)
	priv, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1, AccessType: scheduler.AccessPrivate})
	require.NoError(t, err)
	usr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1, AccessType: scheduler.AccessUser})
	require.NoError(t, err)
	// Neither runs on bob's node (a pass ran for each creation).
	e.Clock.Advance(time.Second)
	require.Never(t, func() bool { return len(e.Hub.Assignments(t, bobs.ID)) > 0 }, 100*time.Millisecond, 10*time.Millisecond)
	// Bob grants alice: her user job runs there, the private one does not.
	require.NoError(t, e.Svc.GrantNode(ctx, scheduler.Viewer{UserID: "bob"}, bobs.ID, "alice"))
	as := e.WaitAssigned(t, bobs, 1)
	require.Equal(t, usr.JobID, as[0].JobID)
	e.Complete(t, bobs, as[0])
	pub, err := e.Svc.CreateJob(ctx, "carol", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1, AccessType: scheduler.AccessPublic})
	require.NoError(t, err)
	as = e.WaitAssigned(t, bobs, 2)
	require.Equal(t, pub.JobID, as[1].JobID)
	e.Complete(t, bobs, as[1])
	j, _ := e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, priv.JobID)
	require.Equal(t, scheduler.JobPending, j.Status)
	alices := e.Node(t, "alice", 1, 1, true)
	as = e.WaitAssigned(t, alices, 1)
	require.Equal(t, priv.JobID, as[0].JobID)
}

func testOnlineOnly(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	n := e.Node(t, "alice", 2, 2, false)
	_, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1500})
	require.NoError(t, err)
	require.Never(t, func() bool { return len(e.Hub.Assignments(t, n.ID)) > 0 }, 100*time.Millisecond, 10*time.Millisecond)
	e.Hub.Join(n.ID, n.Client) // no clock advance: the join itself wakes the assigner
	e.WaitAssigned(t, n, 2)
	nodes, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.True(t, nodes[0].Online)
	// A second connection of the same node, then the first leaves: still online.
	e.Hub.Join(n.ID, "other")
	e.Hub.Leave(n.ID, n.Client)
	require.Eventually(t, func() bool {
		ev := e.Hub.Events(t, scheduler.OwnerNodesChannel("alice"))
		return len(ev) > 0
	}, testenv.Wait, testenv.Tick)
	e.Hub.Leave(n.ID, "other")
	require.Eventually(t, func() bool {
		nodes, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
		return !nodes[0].Online
	}, testenv.Wait, testenv.Tick)
}

func testLeaseExpiry(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second})
	first := e.Node(t, "alice", 1, 1, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	a := e.WaitAssigned(t, first, 1)[0]
	second := e.Node(t, "alice", 1, 1, true)
	outsider := e.Node(t, "alice", 1, 1, false)

	e.Clock.Advance(scheduler.DefaultLease + time.Second)
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	require.Equal(t, scheduler.JobRunning, j.Status)
	require.Eventually(t, func() bool { return len(e.Hub.Published(scheduler.NodeChannel(first.ID))) == 2 }, testenv.Wait, testenv.Tick)
	cancel := e.Hub.Events(t, scheduler.NodeChannel(first.ID))[1]
	require.Equal(t, map[string]any{"type": "cancel", "jobId": cr.JobID, "chunkIds": []any{a.ID}}, cancel)
	// Backoff: nothing before it ends (equal jitter: at least half of 2s).
	require.Len(t, e.Hub.Assignments(t, second.ID), 0)
	e.Clock.Advance(2 * time.Second)
	var b scheduler.Assignment
	require.Eventually(t, func() bool {
		n := len(e.Hub.Assignments(t, first.ID)) + len(e.Hub.Assignments(t, second.ID))
		return n == 2
	}, testenv.Wait, testenv.Tick)
	holder := second
	if as := e.Hub.Assignments(t, second.ID); len(as) == 1 {
		b = as[0]
	} else {
		b, holder = e.Hub.Assignments(t, first.ID)[1], first
	}
	require.Equal(t, a.ID, b.ID)
	require.NotEqual(t, a.LeaseID, b.LeaseID)

	// The first holder's late completion loses; an outsider is refused.
	_, err = e.Svc.CompleteChunk(ctx, first.Key, a.ID, a.LeaseID, Result(a))
	requireReason(t, err, scheduler.ReasonLeaseLost)
	_, err = e.Svc.CompleteChunk(ctx, outsider.Key, a.ID, "", Result(a))
	requireReason(t, err, scheduler.ReasonNotOwner)
	_, err = e.Svc.CompleteChunk(ctx, outsider.Key, a.ID, b.LeaseID, Result(a))
	requireReason(t, err, scheduler.ReasonNotOwner)
	_, err = e.Svc.CompleteChunk(ctx, first.Key, "no-such-chunk", "", Result(a))
	require.ErrorIs(t, err, scheduler.ErrChunkNotFound)
	c := e.Complete(t, holder, b)
	require.True(t, c.JobComplete)
	j, _ = e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.Equal(t, int64(1000), j.Result.TotalIterations)
	require.Equal(t, 1, j.Result.ChunksCompleted)
}

func testExtend(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	n := e.Node(t, "alice", 2, 2, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2000})
	require.NoError(t, err)
	as := e.WaitAssigned(t, n, 2)
	for range 3 {
		e.Clock.Advance(20 * time.Second)
		_, err := e.Svc.Heartbeat(ctx, n.Key, scheduler.HeartbeatInfo{})
		require.NoError(t, err)
	}
	d, err := e.Svc.ProgressChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, 400)
	require.NoError(t, err)
	require.Equal(t, e.Clock.Now().Add(scheduler.DefaultLease), d)
	e.Clock.Advance(20 * time.Second)
	_, err = e.Svc.ProgressChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, 900)
	require.NoError(t, err)
	// 80 s after assignment, both still held.
	j := e.WaitJob(t, cr.JobID, func(scheduler.Job) bool { return true })
	require.Equal(t, 2, j.Chunks.Running)
	ev := e.Hub.Events(t, scheduler.JobChannel(cr.JobID))
	last := ev[len(ev)-1]["payload"].(map[string]any)["chunk"].(map[string]any)
	require.Equal(t, map[string]any{"id": as[0].ID, "done": 900.0, "iterations": 1000.0}, last)
	// Without heartbeats the second chunk expires, the first (progress) not yet.
	e.Clock.Advance(11 * time.Second)
	j = e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Running == 1 })
	_, err = e.Svc.ProgressChunk(ctx, n.Key, as[1].ID, as[1].LeaseID, 1)
	requireReason(t, err, scheduler.ReasonLeaseLost)
	_, err = e.Svc.ProgressChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, -1)
	requireCode(t, err, errs.Invalid, "done")
	_ = j
}

func testAttemptCap(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{MaxAttempts: 2, BackoffBase: time.Second, BackoffMax: time.Second})
	n := e.Node(t, "alice", 1, 1, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	e.WaitAssigned(t, n, 1)
	e.Clock.Advance(scheduler.DefaultLease)
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	e.Clock.Advance(time.Second)
	e.WaitAssigned(t, n, 2)
	e.Clock.Advance(scheduler.DefaultLease)
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobFailed })
	require.Equal(t, scheduler.ChunkCounts{Total: 1, Failed: 1}, j.Chunks)
	require.Contains(t, j.Error, "lease expired")
	require.Contains(t, j.Error, "2 attempt")
	require.Nil(t, j.Result)
	require.Eventually(t, func() bool {
		ev := e.Hub.Events(t, scheduler.JobChannel(cr.JobID))
		return ev[len(ev)-1]["type"] == "failed"
	}, testenv.Wait, testenv.Tick)
	e.Clock.Advance(time.Minute)
	require.Len(t, e.Hub.Assignments(t, n.ID), 2)
}

// handBack hands a back as node, the way a node shutting down does.
func (e *Env) handBack(tb testing.TB, node SimNode, a scheduler.Assignment) {
	tb.Helper()
	require.NoError(tb, e.Svc.FailChunk(ctx, node.Key, a.ID, a.LeaseID,
		scheduler.Failure{Message: "node shutting down", Code: scheduler.CodeShuttingDown, Retryable: true}))
}

// reRegister registers node's key again, as a restarted node process does.
func (e *Env) reRegister(tb testing.TB, node SimNode) {
	tb.Helper()
	reg, err := e.Svc.RegisterNode(ctx, node.Key, scheduler.NodeInfo{})
	require.NoError(tb, err)
	require.Equal(tb, node.ID, reg.ID)
}

// nodeOf returns node as the user API lists it.
func (e *Env) nodeOf(tb testing.TB, node SimNode) scheduler.Node {
	tb.Helper()
	ns, err := e.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
	require.NoError(tb, err)
	for _, n := range ns {
		if n.ID == node.ID {
			return n
		}
	}
	tb.Fatalf("node %s not listed", node.ID)
	return scheduler.Node{}
}

// gauge returns the value of the unlabelled gauge name (0 when absent).
func (e *Env) gauge(tb testing.TB, name string) float64 {
	tb.Helper()
	mfs, err := e.Reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// A chunk handed back by a node that is shutting down (retryable,
// CodeShuttingDown) is pending again without its attempt counting: more
// hand-backs than MaxAttempts do not fail the job. (The node registers
// again between hand-backs, a restart: a draining node gets nothing.)
func testHandBack(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{MaxAttempts: 2, BackoffBase: time.Second, BackoffMax: time.Second})
	n := e.Node(t, "alice", 1, 1, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		as := e.WaitAssigned(t, n, i)
		e.handBack(t, n, as[len(as)-1])
		j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
		require.Equal(t, scheduler.JobRunning, j.Status, "hand-back %d", i)
		e.reRegister(t, n)
	}
	as := e.WaitAssigned(t, n, 4)
	e.Complete(t, n, as[3])
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
}

// The first SHUTTING_DOWN hand-back marks the node draining: the chunk
// goes to the other node (though the draining one has more free
// capacity), and the draining node is offered nothing more, until it
// registers again.
func testHandBackDrains(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{BackoffBase: time.Second, BackoffMax: time.Second})
	a := e.Node(t, "alice", 2, 2, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	got := e.WaitAssigned(t, a, 1)
	b := e.Node(t, "alice", 1, 1, true)
	e.handBack(t, a, got[0])

	onB := e.WaitAssigned(t, b, 1)
	require.Equal(t, got[0].ID, onB[0].ID, "the handed-back chunk")
	na := e.nodeOf(t, a)
	require.True(t, na.Draining)
	require.Equal(t, scheduler.StatusDraining, na.Status)
	require.Zero(t, na.Running)
	require.Equal(t, 1.0, e.gauge(t, "switchboard_scheduler_nodes_draining"))
	require.Eventually(t, func() bool {
		ev := e.Hub.Events(t, scheduler.OwnerNodesChannel("alice"))
		for _, x := range ev {
			if p, _ := x["payload"].(map[string]any); p["id"] == a.ID && p["draining"] == true && p["status"] == scheduler.StatusDraining {
				return true
			}
		}
		return false
	}, testenv.Wait, testenv.Tick, "the feed shows the node draining")

	// More work while b is busy waits for b, not for the draining a.
	cr2, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"n":2}`), Iterations: 1000})
	require.NoError(t, err)
	e.Complete(t, b, onB[0])
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
	onB = e.WaitAssigned(t, b, 2)
	require.Equal(t, cr2.JobID, onB[1].JobID)
	require.Len(t, e.Hub.Assignments(t, a.ID), 1, "the draining node got a new assignment")
	j, err := e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, scheduler.ChunkCounts{Total: 1, Completed: 1}, j.Chunks)

	// Registering again (a restarted node) ends the drain.
	e.reRegister(t, a)
	na = e.nodeOf(t, a)
	require.False(t, na.Draining)
	require.Equal(t, scheduler.StatusIdle, na.Status)
	require.Equal(t, 0.0, e.gauge(t, "switchboard_scheduler_nodes_draining"))
	_, err = e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"n":3}`), Iterations: 1000})
	require.NoError(t, err)
	e.WaitAssigned(t, a, 2)
}

// With only the draining node online, the handed-back chunk stays
// pending (the job does not fail) and goes to a node that comes later.
func testDrainingOnlyNode(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{MaxAttempts: 1, BackoffBase: time.Second, BackoffMax: time.Second})
	a := e.Node(t, "alice", 2, 2, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	got := e.WaitAssigned(t, a, 1)
	e.handBack(t, a, got[0])
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	require.Equal(t, scheduler.JobRunning, j.Status)
	e.Clock.Advance(time.Minute) // past any backoff
	require.Never(t, func() bool { return len(e.Hub.Assignments(t, a.ID)) > 1 }, 100*time.Millisecond, 10*time.Millisecond,
		"the draining node was offered a chunk")
	j, err = e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, scheduler.ChunkCounts{Total: 1, Pending: 1}, j.Chunks)

	b := e.Node(t, "alice", 1, 1, true)
	onB := e.WaitAssigned(t, b, 1)
	require.Equal(t, got[0].ID, onB[0].ID)
	e.Complete(t, b, onB[0])
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
	require.Len(t, e.Hub.Assignments(t, a.ID), 1)
}

// A heartbeat with draining set (sent before any hand-back) takes the
// node out of assignment at once; later statuses do not bring it back,
// and the store refuses to lease to it (the guard another process's
// stale plan meets); registering again does. The status text "draining"
// alone is just a status.
func testDrainingHeartbeat(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	a := e.Node(t, "alice", 2, 2, true)
	st, err := e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Status: scheduler.StatusDraining})
	require.NoError(t, err)
	require.False(t, e.nodeOf(t, a).Draining, "a status text drained the node")
	require.Equal(t, scheduler.StatusDraining, st.Status)
	st, err = e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Draining: true})
	require.NoError(t, err)
	require.Equal(t, scheduler.StatusDraining, st.Status)
	require.Equal(t, 1.0, e.gauge(t, "switchboard_scheduler_nodes_draining"))
	st, err = e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Status: "busy"})
	require.NoError(t, err)
	require.Equal(t, scheduler.StatusDraining, st.Status, "draining ends only by registering")
	require.True(t, e.nodeOf(t, a).Draining)
	require.NoError(t, e.Store.InTx(ctx, func(tx scheduler.Tx) error {
		ok, err := tx.AddRunning(ctx, a.ID, 1, 2)
		require.False(t, ok, "AddRunning leased a draining node")
		free, ferr := tx.FreeNodes(ctx, []string{a.ID})
		require.Empty(t, free)
		return errors.Join(err, ferr)
	}))

	b := e.Node(t, "alice", 1, 1, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2000})
	require.NoError(t, err)
	e.WaitAssigned(t, b, 1)
	require.Never(t, func() bool { return len(e.Hub.Assignments(t, a.ID)) > 0 }, 100*time.Millisecond, 10*time.Millisecond,
		"the draining node was offered a chunk")
	e.reRegister(t, a)
	e.WaitAssigned(t, a, 1)
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Running == 2 })
}

// registerAs registers node's key as the node process instance.
func (e *Env) registerAs(tb testing.TB, node SimNode, instance string) {
	tb.Helper()
	reg, err := e.Svc.RegisterNode(ctx, node.Key, scheduler.NodeInfo{Instance: instance})
	require.NoError(tb, err)
	require.Equal(tb, node.ID, reg.ID)
}

// A node restarts while the old process still drains: the old process's
// draining heartbeat (its instance) and its hand-back of a chunk leased
// before the new process registered land after the registration, and
// neither drains the new process; the new process's own drain does, and
// so does a draining heartbeat without an instance.
func testLateDrain(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	a := e.Node(t, "alice", 2, 2, true)
	e.registerAs(t, a, "old")
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	got := e.WaitAssigned(t, a, 1)

	e.Clock.Advance(time.Second)
	e.registerAs(t, a, "new")
	_, err = e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Draining: true, Instance: "old"})
	require.NoError(t, err)
	require.False(t, e.nodeOf(t, a).Draining, "the old process's draining heartbeat drained the new one")
	e.handBack(t, a, got[0])
	na := e.nodeOf(t, a)
	require.False(t, na.Draining, "the old process's hand-back drained the new one")
	require.Equal(t, scheduler.StatusIdle, na.Status)
	again := e.WaitAssigned(t, a, 2)
	require.Equal(t, got[0].ID, again[1].ID, "the handed-back chunk goes to the new process")

	_, err = e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Draining: true, Instance: "new"})
	require.NoError(t, err)
	require.True(t, e.nodeOf(t, a).Draining, "the new process's drain")
	e.handBack(t, a, again[1]) // leased since "new" registered
	e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })

	e.registerAs(t, a, "") // an older node: no instance
	require.False(t, e.nodeOf(t, a).Draining)
	e.WaitAssigned(t, a, 3)
	_, err = e.Svc.Heartbeat(ctx, a.Key, scheduler.HeartbeatInfo{Draining: true})
	require.NoError(t, err)
	require.True(t, e.nodeOf(t, a).Draining, "a draining heartbeat without an instance")
}

// A node row with the status text "draining" but no drain (written by an
// older server, or a status a node reported) reads "idle" once the node
// registers again.
func testRegisterResetsDrainingStatus(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	a := e.Node(t, "alice", 2, 2, true)
	require.NoError(t, e.Store.InTx(ctx, func(tx scheduler.Tx) error {
		n, err := tx.NodeForUpdate(ctx, a.ID)
		if err != nil {
			return err
		}
		n.Status = scheduler.StatusDraining
		return tx.UpdateNode(ctx, &n)
	}))
	e.reRegister(t, a)
	na := e.nodeOf(t, a)
	require.False(t, na.Draining)
	require.Equal(t, scheduler.StatusIdle, na.Status)
}

func testFail(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{BackoffBase: time.Second, BackoffMax: time.Second})
	n := e.Node(t, "alice", 3, 3, true)
	other := e.Node(t, "alice", 1, 1, false)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 3 * scheduler.DefaultChunkSize})
	require.NoError(t, err)
	as := e.WaitAssigned(t, n, 3)
	requireReason(t, e.Svc.FailChunk(ctx, other.Key, as[0].ID, as[0].LeaseID, scheduler.Failure{Message: "x", Retryable: true}), scheduler.ReasonNotOwner)
	require.NoError(t, e.Svc.FailChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, scheduler.Failure{Message: "worker crashed", Code: "EXECUTION_ERROR", Retryable: true}))
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	require.Equal(t, scheduler.JobRunning, j.Status)
	requireReason(t, e.Svc.FailChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, scheduler.Failure{Message: "again"}), scheduler.ReasonLeaseLost)
	e.Clock.Advance(time.Second)
	as = e.WaitAssigned(t, n, 4)
	require.Equal(t, as[0].ID, as[3].ID)
	e.Complete(t, n, as[1])
	require.NoError(t, e.Svc.FailChunk(ctx, n.Key, as[2].ID, "", scheduler.Failure{Message: "bad config", Code: "INVALID_REQUEST", Retryable: false}))
	j = e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobFailed })
	require.Equal(t, scheduler.ChunkCounts{Total: 3, Completed: 1, Failed: 1, Cancelled: 1}, j.Chunks)
	require.Contains(t, j.Error, "INVALID_REQUEST: bad config")
	// The retried chunk's holder is told to stop.
	require.Eventually(t, func() bool {
		for _, m := range e.Hub.Events(t, scheduler.NodeChannel(n.ID)) {
			if m["type"] == "cancel" && fmt.Sprint(m["chunkIds"]) == fmt.Sprint([]any{as[3].ID}) {
				return true
			}
		}
		return false
	}, testenv.Wait, testenv.Tick)
	_, err = e.Svc.CompleteChunk(ctx, n.Key, as[3].ID, as[3].LeaseID, Result(as[3]))
	requireReason(t, err, scheduler.ReasonLeaseLost)
	nodes, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	for _, nd := range nodes {
		require.Equal(t, 0, nd.Running, nd.ID)
	}
}

func testCancel(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	n := e.Node(t, "alice", 2, 2, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 5000})
	require.NoError(t, err)
	as := e.WaitAssigned(t, n, 2)
	_, err = e.Svc.CancelJob(ctx, scheduler.Viewer{UserID: "bob"}, cr.JobID)
	require.ErrorIs(t, err, scheduler.ErrJobNotFound)
	j, err := e.Svc.CancelJob(ctx, scheduler.Viewer{UserID: "alice"}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, scheduler.JobCancelled, j.Status)
	require.Equal(t, scheduler.ChunkCounts{Total: 5, Cancelled: 5}, j.Chunks)
	ids := []any{as[0].ID, as[1].ID}
	ev := e.Hub.Events(t, scheduler.NodeChannel(n.ID))
	got := ev[len(ev)-1]
	require.Equal(t, "cancel", got["type"])
	require.ElementsMatch(t, ids, got["chunkIds"])
	_, err = e.Svc.CancelJob(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.ErrorIs(t, err, scheduler.ErrNotCancellable)
	_, err = e.Svc.CompleteChunk(ctx, n.Key, as[0].ID, as[0].LeaseID, Result(as[0]))
	requireReason(t, err, scheduler.ReasonLeaseLost)
	jev := e.Hub.Events(t, scheduler.JobChannel(cr.JobID))
	require.Equal(t, "cancelled", jev[len(jev)-1]["type"])
	nodes, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
	require.Equal(t, 0, nodes[0].Running)
	// The freed node takes the next job at once.
	next, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
	require.NoError(t, err)
	as = e.WaitAssigned(t, n, 3)
	require.Equal(t, next.JobID, as[2].JobID)
}

func testConcurrentCompletions(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{ChunkSize: 10})
	var nodes []SimNode
	for range 8 {
		nodes = append(nodes, e.Node(t, "alice", 4, 4, true))
	}
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 10 * 32})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	completes := 0
	var rs []scheduler.ChunkResult
	// Every chunk is out before any completes: a completion frees its
	// node, which would then take chunks meant for a node not served yet.
	require.Eventually(t, func() bool {
		total := 0
		for _, n := range nodes {
			total += len(e.Hub.Assignments(t, n.ID))
		}
		return total == 32
	}, testenv.Wait, testenv.Tick, "all 32 chunks assigned")
	for _, n := range nodes {
		as := e.WaitAssigned(t, n, 4)
		for _, a := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := Result(a)
				c, err := e.Svc.CompleteChunk(ctx, n.Key, a.ID, a.LeaseID, r)
				if !errors.Is(err, nil) {
					t.Error(err)
					return
				}
				var cr scheduler.ChunkResult
				_ = json.Unmarshal(r, &cr)
				mu.Lock()
				defer mu.Unlock()
				rs = append(rs, cr)
				if c.JobComplete {
					completes++
				}
			}()
		}
	}
	wg.Wait()
	require.Equal(t, 1, completes)
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Status == scheduler.JobCompleted })
	require.Equal(t, 32, j.Result.ChunksCompleted)
	require.Equal(t, int64(320), j.Result.TotalIterations)
	want := scheduler.AggregateResults(rs)
	require.InDelta(t, want.MeanDps, j.Result.MeanDps, 1e-9)
	require.InDelta(t, want.StdDps, j.Result.StdDps, 1e-9)
	require.Equal(t, want.MinDps, j.Result.MinDps)
	require.Equal(t, want.MaxDps, j.Result.MaxDps)
	completed := 0
	for _, ev := range e.Hub.Events(t, scheduler.JobChannel(cr.JobID)) {
		if ev["type"] == "completed" {
			completed++
		}
	}
	require.Equal(t, 1, completed)
}

func testPublishFailure(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{BackoffBase: time.Second, BackoffMax: time.Second})
	n := e.Node(t, "alice", 1, 1, true)
	e.Hub.FailPublish(scheduler.ChunksChannel(n.ID), true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		e.Hub.mu.Lock()
		defer e.Hub.mu.Unlock()
		return e.Hub.failures > 0
	}, testenv.Wait, testenv.Tick)
	// Rolled back: pending, no attempt used, the node holds nothing.
	j := e.WaitJob(t, cr.JobID, func(j scheduler.Job) bool { return j.Chunks.Pending == 1 })
	require.Equal(t, 0, j.Chunks.Running)
	as, err := e.Svc.AssignedChunks(ctx, n.Key)
	require.NoError(t, err)
	require.Empty(t, as)
	e.Hub.FailPublish(scheduler.ChunksChannel(n.ID), false)
	e.Clock.Advance(time.Second)
	a := e.WaitAssigned(t, n, 1)[0]
	require.True(t, e.Complete(t, n, a).JobComplete)
}

func testValidation(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{MaxConfigBytes: 64, MaxIterations: 1_000_000})
	for _, tc := range []struct {
		spec  scheduler.JobSpec
		field string
	}{
		{scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 0}, "iterations"},
		{scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: -5}, "iterations"},
		{scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1_000_001}, "iterations"},
		{scheduler.JobSpec{Iterations: 1}, "config"},
		{scheduler.JobSpec{Config: json.RawMessage(`{"a":`), Iterations: 1}, "config"},
		{scheduler.JobSpec{Config: json.RawMessage(`{"a":1,"a":2}`), Iterations: 1}, "config"},
		{scheduler.JobSpec{Config: json.RawMessage(`{"big":"` + string(make([]byte, 80)) + `"}`), Iterations: 1}, "config"},
		{scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1, AccessType: "friends"}, "accessType"},
		{scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1, Priority: 1 << 40}, "priority"},
	} {
		_, err := e.Svc.CreateJob(ctx, "alice", tc.spec)
		requireCode(t, err, errs.Invalid, tc.field+":")
	}
	_, err := e.Svc.CreateJob(ctx, "", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
	requireCode(t, err, errs.Unauthorized, "")
	_, err = e.Svc.Jobs(ctx, scheduler.Viewer{UserID: "a"}, scheduler.JobQuery{Status: "odd"})
	requireCode(t, err, errs.Invalid, "status")
	_, err = e.Svc.RegisterNode(ctx, NewKey(t), scheduler.NodeInfo{TotalCores: new(-1)})
	requireCode(t, err, errs.Invalid, "totalCores")
	_, err = e.Svc.RegisterNode(ctx, []byte{1, 2}, scheduler.NodeInfo{})
	requireCode(t, err, errs.Unauthorized, "key")
	n := e.Node(t, "alice", 1, 1, false)
	_, err = e.Svc.CompleteChunk(ctx, n.Key, "", "", json.RawMessage(`{}`))
	requireCode(t, err, errs.Invalid, "chunkId")
	_, err = e.Svc.CompleteChunk(ctx, n.Key, "c", "", json.RawMessage(`{`))
	requireCode(t, err, errs.Invalid, "result")
	require.EqualError(t, err, "result: not a JSON value")
	_, err = e.Svc.CompleteChunk(ctx, n.Key, "c", "", make(json.RawMessage, scheduler.MaxResultBytes+1))
	require.EqualError(t, err, fmt.Sprintf("result: larger than %d bytes", scheduler.MaxResultBytes))
	_, err = e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"a":1,"a":2}`), Iterations: 1})
	require.EqualError(t, err, `config: duplicate member name "a"`)
	_, err = e.Svc.CompleteChunk(ctx, NewKey(t), "c", "", json.RawMessage(`{}`))
	require.ErrorIs(t, err, scheduler.ErrNodeNotFound)
}

func testAssignedChunks(t *testing.T, f Factory) {
	store := f(t)
	e := NewEnv(t, store, scheduler.Config{})
	n := e.Node(t, "alice", 2, 2, true)
	_, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{"x":1}`), Iterations: 3 * scheduler.DefaultChunkSize})
	require.NoError(t, err)
	pub := e.WaitAssigned(t, n, 2)
	got, err := e.Svc.AssignedChunks(ctx, n.Key)
	require.NoError(t, err)
	require.ElementsMatch(t, pub, got)
	// A restarted scheduler on the same store keeps the leases.
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, e.Svc.Shutdown(ctx2))
	_, err = e.Svc.AssignedChunks(ctx, n.Key)
	require.ErrorIs(t, err, scheduler.ErrStopped)
	e2 := e.NewEnvOn(t, store)
	got, err = e2.Svc.AssignedChunks(ctx, n.Key)
	require.NoError(t, err)
	require.ElementsMatch(t, pub, got)
	// The node is online from the initial presence read.
	require.True(t, e2.Complete(t, n, pub[0]).Success)
	e2.WaitAssigned(t, n, 3)
}

func testPriority(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	low, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2000})
	require.NoError(t, err)
	e.Clock.Advance(time.Millisecond)
	high, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2000, Priority: 5})
	require.NoError(t, err)
	e.Clock.Advance(time.Millisecond)
	_, err = e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1000})
	require.NoError(t, err)
	n := e.Node(t, "alice", 3, 3, true)
	as := e.WaitAssigned(t, n, 3)
	jobs := []string{as[0].JobID, as[1].JobID, as[2].JobID}
	sort.Strings(jobs)
	want := []string{high.JobID, high.JobID, low.JobID}
	sort.Strings(want)
	require.Equal(t, want, jobs)
}

func testOtherShapes(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	n := e.Node(t, "alice", 2, 2, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2000})
	require.NoError(t, err)
	as := e.WaitAssigned(t, n, 2)
	e.Complete(t, n, as[0])
	c, err := e.Svc.CompleteChunk(ctx, n.Key, as[1].ID, as[1].LeaseID, json.RawMessage(`{"answer":42}`))
	require.NoError(t, err)
	require.True(t, c.JobComplete)
	j, _ := e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.Equal(t, 1, j.Result.ChunksCompleted)
	require.Equal(t, int64(1000), j.Result.TotalIterations)
	require.Equal(t, 1.0, j.Progress())
	// All of another shape: completed without an aggregate.
	cr, _ = e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 5})
	a := e.WaitAssigned(t, n, 3)[2]
	_, err = e.Svc.CompleteChunk(ctx, n.Key, a.ID, a.LeaseID, json.RawMessage(`"done"`))
	require.NoError(t, err)
	j, _ = e.Svc.Job(ctx, scheduler.Viewer{Admin: true}, cr.JobID)
	require.Equal(t, scheduler.JobCompleted, j.Status)
	require.Nil(t, j.Result)
}

func testSweepPresence(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{SweepInterval: 10 * time.Second})
	n := e.Node(t, "alice", 1, 1, true)
	ghost := e.Node(t, "alice", 1, 1, false)
	// A crashed process's presence entry of n expires with no leave push;
	// another process's node shows up without a join we saw.
	e.Hub.SetPresenceQuietly(n.ID, n.Client, false)
	e.Hub.SetPresenceQuietly(ghost.ID, ghost.Client, true)
	e.Clock.Advance(10 * time.Second)
	require.Eventually(t, func() bool {
		nodes, _ := e.Svc.Nodes(ctx, scheduler.Viewer{UserID: "alice"})
		on := map[string]bool{}
		for _, x := range nodes {
			on[x.ID] = x.Online
		}
		return !on[n.ID] && on[ghost.ID]
	}, testenv.Wait, testenv.Tick)
	_, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
	require.NoError(t, err)
	e.WaitAssigned(t, ghost, 1)
	require.Empty(t, e.Hub.Assignments(t, n.ID))
}

func testCoalescedProgress(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{ProgressInterval: time.Second})
	n := e.Node(t, "alice", 3, 3, true)
	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 2999})
	require.NoError(t, err)
	as := e.WaitAssigned(t, n, 3)
	e.Complete(t, n, as[0])
	e.Complete(t, n, as[1])
	require.Empty(t, e.Hub.Published(scheduler.JobChannel(cr.JobID)))
	e.Clock.Advance(time.Second)
	require.Eventually(t, func() bool { return len(e.Hub.Published(scheduler.JobChannel(cr.JobID))) == 1 }, testenv.Wait, testenv.Tick)
	ev := e.Hub.Events(t, scheduler.JobChannel(cr.JobID))[0]
	require.Equal(t, "progress", ev["type"])
	require.Equal(t, 2.0, ev["payload"].(map[string]any)["chunks"].(map[string]any)["completed"])
	require.Eventually(t, func() bool { // the flush publishes the node after the job
		feed := e.Hub.Events(t, scheduler.OwnerNodesChannel("alice"))
		return feed[len(feed)-1]["payload"].(map[string]any)["running"] == 1.0 // one chunk still held
	}, testenv.Wait, testenv.Tick)
	e.Complete(t, n, as[2])
	e.Clock.Advance(time.Second)
	e.Clock.Advance(time.Second)
	ev = e.Hub.Events(t, scheduler.JobChannel(cr.JobID))[1]
	require.Equal(t, "completed", ev["type"])
	require.Never(t, func() bool { return len(e.Hub.Published(scheduler.JobChannel(cr.JobID))) > 2 }, 100*time.Millisecond, 10*time.Millisecond)
}

func testConcurrentRegister(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	key := NewKey(t)
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: new("h")})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = r.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	nodes, err := e.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
	require.NoError(t, err)
	require.Len(t, nodes, 1)
}

// requireVersionsRise checks that the rowVersion of each row's payloads
// in evs goes up (strictly, or never down), as a page relies on.
func requireVersionsRise(t *testing.T, evs []map[string]any, strict bool) {
	t.Helper()
	last := map[string]float64{}
	for _, ev := range evs {
		p := ev["payload"].(map[string]any)
		id, v := p["id"].(string), p["rowVersion"].(float64)
		require.Positive(t, v, "%v", p)
		if prev, ok := last[id]; ok {
			if strict {
				require.Greater(t, v, prev, "row %s: %v", id, evs)
			} else {
				require.GreaterOrEqual(t, v, prev, "row %s: %v", id, evs)
			}
		}
		last[id] = v
	}
}

// Every change of a node or job row adds one to its rowVersion, stored
// and in the JSON, with updatedAt in milliseconds.
func testRowVersions(t *testing.T, f Factory) {
	e := NewEnv(t, f(t), scheduler.Config{})
	key := NewKey(t)
	reg, err := e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: new("h"), TotalCores: new(2)})
	require.NoError(t, err)
	version := func() int64 {
		ns, err := e.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
		require.NoError(t, err)
		require.Len(t, ns, 1)
		return ns[0].RowVersion
	}
	require.Equal(t, int64(1), version())
	_, err = e.Svc.ClaimNode(ctx, "alice", *reg.ClaimCode, "rig", 0)
	require.NoError(t, err)
	require.Equal(t, int64(2), version())
	_, err = e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{})
	require.NoError(t, err)
	require.Equal(t, int64(3), version())
	st, err := e.Svc.Heartbeat(ctx, key, scheduler.HeartbeatInfo{Status: "busy"})
	require.NoError(t, err)
	require.Equal(t, "busy", st.Status)
	require.Equal(t, int64(4), version())
	ns, err := e.Svc.Nodes(ctx, scheduler.Viewer{Admin: true})
	require.NoError(t, err)
	require.Equal(t, Start, ns[0].UpdatedAt.UTC())
	b, err := json.Marshal(ns[0])
	require.NoError(t, err)
	require.Contains(t, string(b), `"updatedAt":"`+Start.UTC().Format("2006-01-02T15:04:05.000Z07:00")+`"`)
	require.Contains(t, string(b), `"rowVersion":4`)

	cr, err := e.Svc.CreateJob(ctx, "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 10})
	require.NoError(t, err)
	j, err := e.Svc.Job(ctx, scheduler.Viewer{UserID: "alice"}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, int64(1), j.RowVersion)
	j, err = e.Svc.CancelJob(ctx, scheduler.Viewer{UserID: "alice"}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, int64(2), j.RowVersion)
	stored, err := e.Svc.Job(ctx, scheduler.Viewer{UserID: "alice"}, cr.JobID)
	require.NoError(t, err)
	require.Equal(t, int64(2), stored.RowVersion)
}
