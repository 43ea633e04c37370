package node

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/node/sim"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// The whole life cycle: register, claim code printed, verify polled until
// claimed, token, hub connection, a chunk published on chunks:{id} runs in
// the Python worker, progress extends the lease, the result is the
// reference's; heartbeats flow.
func TestNodeRunsPublishedChunk(t *testing.T) {
	f := newFakeServer(t)
	_, out := startNode(t, f, nil)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "claim code: MW3AM4") }, testenv.Wait, testenv.Tick)
	require.NotContains(t, out.String(), "node claimed")
	f.claim()
	f.connected(t)
	require.Contains(t, out.String(), `node claimed: name "test node", max parallel 4`)

	// 300 iterations at 5 ms each: long enough for progress reports.
	cfg := map[string]any{"sleepMs": 5}
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("c1", "l1", 300, 5000, cfg, 3*time.Second))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
	c := f.of("/chunks/complete")[0]
	require.Equal(t, "c1", str(c.Body["chunkId"]))
	require.Equal(t, "l1", str(c.Body["leaseId"]))
	var got sim.Result
	require.NoError(t, json.Unmarshal(c.Body["result"], &got))
	cj, _ := json.Marshal(cfg)
	want, err := sim.Chunk(fakeHash, cj, 5000, 300)
	require.NoError(t, err)
	require.Equal(t, want, got)

	progress := f.of("/chunks/progress")
	require.NotEmpty(t, progress, "a running chunk reports progress")
	require.Equal(t, "l1", str(progress[0].Body["leaseId"]))
	forwarded := false
	for _, p := range progress {
		forwarded = forwarded || (string(p.Body["done"]) != "0" && string(p.Body["done"]) != "")
	}
	require.True(t, forwarded, "the worker's progress calls reach /chunks/progress: %v", progress)
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.heartbeats >= 2
	}, testenv.Wait, testenv.Tick, "heartbeats")

	// A duplicate of the finished lease (recovery, /chunks/assigned) is ignored.
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("c1", "l1", 300, 5000, cfg, 3*time.Second))
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("c2", "l2", 10, 0, nil, 3*time.Second))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 2 }, testenv.Wait, testenv.Tick)
	require.Equal(t, "c2", str(f.of("/chunks/complete")[1].Body["chunkId"]))
}

// On connect the node fetches GET /chunks/assigned and runs what it
// holds, once even when the same chunk is also published.
func TestNodeResumesAssignedChunks(t *testing.T) {
	f := newFakeServer(t)
	a, _ := json.Marshal(chunkMsg("held", "l9", 200, 1000, map[string]any{"sleepMs": 1}, time.Minute))
	f.assigned = []json.RawMessage{a}
	f.claim()
	startNode(t, f, nil)
	f.connected(t)
	f.publish(t, "chunks:"+fakeNodeID, json.RawMessage(a))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
	var got sim.Result
	require.NoError(t, json.Unmarshal(f.of("/chunks/complete")[0].Body["result"], &got))
	want, _ := sim.Chunk(fakeHash, json.RawMessage(`{"sleepMs":1}`), 1000, 200)
	require.Equal(t, want, got)
	// Give a duplicate run the time to show up: the next chunk completes after it would have.
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("after", "l10", 5, 0, nil, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) >= 2 }, testenv.Wait, testenv.Tick)
	require.Len(t, f.of("/chunks/complete"), 2)
}

// After a forced reconnect the node recovers what was published while it
// was away (history recovery) and asks for its assigned chunks again.
func TestNodeReconnectRecovers(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	startNode(t, f, nil)
	f.connected(t)
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.assignedCalls == 1
	}, testenv.Wait, testenv.Tick)
	require.NoError(t, f.hub.DisconnectUser(context.Background(), fakeNodeID, "", hub.DisconnectForceReconnect, nil))
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("while-away", "l1", 5, 0, nil, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, "while-away", str(f.of("/chunks/complete")[0].Body["chunkId"]))
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.assignedCalls == 2
	}, testenv.Wait, testenv.Tick, "GET /chunks/assigned after each connect")
}

// A config message on nodes:{id} (the node was renamed or its maxParallel
// changed) adjusts the parallelism, never above --parallel.
func TestNodeConfigMessage(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	n, _ := startNode(t, f, func(c *Config) { c.Parallel = 3 })
	f.connected(t)
	limit := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.limit
	}
	require.Equal(t, 3, limit(), "claimed with maxParallel 4: --parallel 3 wins")
	setMax := func(v int) { f.mu.Lock(); f.maxPar = v; f.mu.Unlock() } // heartbeats answer it too
	setMax(1)
	f.publish(t, "nodes:"+fakeNodeID, map[string]any{"type": "config", "userId": "u", "name": "renamed", "totalCores": 8, "maxParallel": 1})
	require.Eventually(t, func() bool { return limit() == 1 }, testenv.Wait, testenv.Tick)
	setMax(16)
	f.publish(t, "nodes:"+fakeNodeID, map[string]any{"type": "config", "maxParallel": 16})
	require.Eventually(t, func() bool { return limit() == 3 }, testenv.Wait, testenv.Tick)
}

// A cancel on nodes:{id} stops the chunk; nothing is reported.
func TestNodeCancel(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	startNode(t, f, nil)
	f.connected(t)
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("slow", "l1", 1000, 0, map[string]any{"sleepMs": 20}, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/progress")) >= 1 }, testenv.Wait, testenv.Tick, "running")
	f.publish(t, "nodes:"+fakeNodeID, map[string]any{"type": "cancel", "jobId": "j1", "chunkIds": []string{"slow"}})
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("next", "l2", 5, 0, nil, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, "next", str(f.of("/chunks/complete")[0].Body["chunkId"]))
	require.Empty(t, f.of("/chunks/fail"))
}

// A 409 on progress (lease lost) stops the chunk without a report.
func TestNodeLeaseLost(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	f.progress["lost"] = 409
	startNode(t, f, nil)
	f.connected(t)
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("lost", "l1", 1000, 0, map[string]any{"sleepMs": 20}, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/progress")) >= 1 }, testenv.Wait, testenv.Tick)
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("next", "l2", 5, 0, nil, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
	require.Equal(t, "next", str(f.of("/chunks/complete")[0].Body["chunkId"]))
	require.Empty(t, f.of("/chunks/fail"))
	lost := 0
	for _, r := range f.of("/chunks/progress") {
		if str(r.Body["chunkId"]) == "lost" {
			lost++
		}
	}
	require.Equal(t, 1, lost, "no progress after the lease was lost")
}

// A crashing worker is a retryable failure; a bad config is not.
func TestNodeFailures(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	startNode(t, f, nil)
	f.connected(t)
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("crash", "l1", 10, 0, map[string]any{"crashAt": 3}, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/fail")) == 1 }, testenv.Wait, testenv.Tick)
	fail := f.of("/chunks/fail")[0]
	require.Equal(t, "crash", str(fail.Body["chunkId"]))
	require.Equal(t, "true", string(fail.Body["retryable"]))
	require.Contains(t, string(fail.Body["error"]), "WORKER_CRASHED")

	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("bad", "l2", 10, 0, map[string]any{"duration": -1}, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/fail")) == 2 }, testenv.Wait, testenv.Tick)
	fail = f.of("/chunks/fail")[1]
	require.Equal(t, "false", string(fail.Body["retryable"]))
	require.Contains(t, string(fail.Body["error"]), "config.duration must be positive")
	require.Contains(t, string(fail.Body["error"]), "INVALID_CONFIG")
}

// Shutdown lets a chunk that finishes within the grace period report its
// result and hands back one that does not; a chunk still waiting for a
// slot is handed back at once.
func TestNodeShutdown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		sleepMs int
		report  string
	}{
		{"finishes", 30 * time.Second, 3, "/chunks/complete"},
		{"hands back", 200 * time.Millisecond, 50, "/chunks/fail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.claim()
			n, _ := startNode(t, f, func(c *Config) { c.ShutdownGrace = tc.grace; c.Parallel = 1 })
			f.connected(t)
			f.publish(t, "chunks:"+fakeNodeID, chunkMsg("c", "l1", 400, 0, map[string]any{"sleepMs": tc.sleepMs}, time.Minute))
			require.Eventually(t, func() bool { return len(f.of("/chunks/progress")) >= 1 }, testenv.Wait, testenv.Tick, "running")
			f.publish(t, "chunks:"+fakeNodeID, chunkMsg("waiting", "l2", 10, 0, nil, time.Minute))
			require.Eventually(t, func() bool { return n.activeChunks() == 2 }, testenv.Wait, testenv.Tick, "second chunk held")
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			require.NoError(t, n.Shutdown(ctx))
			f.requireDrainFirst(t, n)
			fails := map[string]string{}
			for _, r := range f.of("/chunks/fail") {
				require.Equal(t, "true", string(r.Body["retryable"]))
				require.Contains(t, string(r.Body["error"]), "node shutting down")
				fails[str(r.Body["chunkId"])] = str(r.Body["leaseId"])
			}
			require.Equal(t, "l2", fails["waiting"], "the waiting chunk is handed back")
			if tc.report == "/chunks/fail" {
				require.Equal(t, "l1", fails["c"])
				require.Empty(t, f.of("/chunks/complete"))
			} else {
				require.Len(t, fails, 1)
				require.Len(t, f.of("/chunks/complete"), 1)
				require.Equal(t, "c", str(f.of("/chunks/complete")[0].Body["chunkId"]))
			}
		})
	}
}

// requireDrainFirst checks that the scheduler heard the draining
// heartbeat, naming the instance the node registered with, before the
// first hand-back.
func (f *fakeServer) requireDrainFirst(t *testing.T, n *Node) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	drained, firstFail, instance := -1, -1, ""
	for i, r := range f.reports {
		switch {
		case r.Path == "/nodes/register" && instance == "":
			instance = str(r.Body["instance"])
		case r.Path == "/nodes/heartbeat" && string(r.Body["draining"]) == "true" && drained < 0:
			drained = i
			require.Equal(t, n.instance, str(r.Body["instance"]), "draining heartbeat instance")
		case r.Path == "/chunks/fail" && firstFail < 0:
			firstFail = i
		}
	}
	require.NotEmpty(t, instance, "register sends the instance")
	require.Equal(t, n.instance, instance)
	require.GreaterOrEqual(t, drained, 0, "no draining heartbeat")
	require.Less(t, drained, firstFail, "draining heartbeat after a hand-back")
}

// While the draining heartbeat is on its way, the node starts no new
// chunk: an assignment arriving then is handed back, after the heartbeat.
func TestNodeShutdownStartsNothingWhileAnnouncing(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	f.mu.Lock()
	f.drainGate = gate
	f.mu.Unlock()
	n, _ := startNode(t, f, nil)
	t.Cleanup(release) // runs before startNode's cleanup: a failed check does not hang
	f.connected(t)
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.drainSeen
	}, testenv.Wait, testenv.Tick, "draining heartbeat sent")
	late := chunkMsg("late", "l1", 400, 0, map[string]any{"sleepMs": 20}, time.Minute)
	f.publish(t, "chunks:"+fakeNodeID, late)
	require.Eventually(t, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		_, handed := n.finished["late\x00l1"]
		return handed || len(n.running) > 0
	}, testenv.Wait, testenv.Tick, "assignment received")
	require.Zero(t, n.activeChunks(), "a chunk started while the node announced its drain")
	require.Empty(t, f.of("/chunks/fail"), "hand-back before the draining heartbeat")
	release()
	require.NoError(t, <-done)
	f.requireDrainFirst(t, n)
	require.Len(t, f.of("/chunks/fail"), 1)
	require.Empty(t, f.of("/chunks/progress"))
}

// A short-lived hub token is refreshed through /nodes/token.
func TestNodeTokenRefresh(t *testing.T) {
	f := newFakeServer(t)
	f.claim()
	f.tokenTTL = 2 * time.Second
	startNode(t, f, nil)
	f.connected(t)
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.tokens >= 2
	}, testenv.Wait, testenv.Tick, "token refreshed")
	f.publish(t, "chunks:"+fakeNodeID, chunkMsg("c", "l1", 5, 0, nil, time.Minute))
	require.Eventually(t, func() bool { return len(f.of("/chunks/complete")) == 1 }, testenv.Wait, testenv.Tick)
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{})
	require.ErrorContains(t, err, "--server")
	require.ErrorContains(t, err, "--worker")
	_, key, _ := ed25519GenerateKey()
	_, err = New(Config{Server: "ftp://x", Key: key, Worker: []string{"w"}})
	require.ErrorContains(t, err, "http://HOST:PORT")
	_, err = New(Config{Server: "http://x", Key: key, Worker: []string{"w"}, Parallel: -1})
	require.ErrorContains(t, err, "--parallel")
}

func FuzzDecodeChunk(f *testing.F) {
	good, _ := json.Marshal(chunkMsg("c", "l", 10, 0, map[string]any{"a": 1}, time.Minute))
	f.Add(good)
	f.Add([]byte(`{"id":1,"leaseId":2,"iterations":1}`))
	f.Add([]byte(`{"id":"x","leaseId":"","iterations":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeChunk(data)
		if err == nil && (c.ID.IsZero() || c.LeaseID.IsZero() || c.Iterations <= 0) {
			t.Fatalf("accepted %q", data)
		}
		_, _, _ = decodeAssigned(data)
		_, _ = decodeControl(data)
	})
}

// While unclaimed the node polls /nodes/verify with backoff on its clock:
// 1 s, 2 s, 4 s, then capped at ClaimPollMax.
func TestClaimPollBackoff(t *testing.T) {
	f := newFakeServer(t)
	clk := clocktest.New(time.Now())
	startNode(t, f, func(c *Config) {
		c.Clock = clk
		c.ClaimPollMin, c.ClaimPollMax = time.Second, 4*time.Second
	})
	verifies := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.verifyCalls
	}
	waitTimer := func() {
		require.Eventually(t, func() bool { return clk.Pending() > 0 }, testenv.Wait, testenv.Tick, "node sleeping on its clock")
	}
	require.Eventually(t, func() bool { return verifies() == 1 }, testenv.Wait, testenv.Tick)
	for i, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		waitTimer()
		clk.Advance(d - time.Millisecond)
		require.Equal(t, i+1, verifies(), "poll %d not before %s", i+2, d)
		clk.Advance(time.Millisecond)
		require.Eventually(t, func() bool { return verifies() == i+2 }, testenv.Wait, testenv.Tick, "poll %d after %s", i+2, d)
	}
	f.claim()
	waitTimer()
	clk.Advance(4 * time.Second)
	f.connected(t)
}

// 429 on register (the server's per-address limit) is retried with
// backoff, not final.
func TestNodeRetriesRateLimitedRegister(t *testing.T) {
	f := newFakeServer(t)
	f.limitRegister = 3
	_, out := startNode(t, f, nil)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "claim code: MW3AM4") }, testenv.Wait, testenv.Tick)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, 4, f.registers)
}
