package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/node/sim"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// End to end with real processes: a scheduler (this process's Main) and
// `switchboard node` processes running the Python example worker.

// e2eLease is the scheduler.lease of these tests: short, so a killed node's
// chunk comes back quickly, long enough for a loaded machine's heartbeats.
const e2eLease = 3 * time.Second

type schedEnv struct {
	t   *testing.T
	m   *Main
	dir string
}

func startScheduler(t *testing.T) *schedEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the end-to-end scheduler tests run node processes for about a minute")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skipf("python3 is not installed (%v): the end-to-end scheduler tests run examples/workers/sim.py", err)
	}
	cfg := testConfig()
	cfg.Circles.DataDir = t.TempDir()
	cfg.Scheduler.Enabled = true
	cfg.Scheduler.Lease = config.Duration(e2eLease)
	cfg.Scheduler.MaxAttempts = 3
	cfg.Scheduler.BackoffBase = config.Duration(50 * time.Millisecond)
	cfg.Scheduler.BackoffMax = config.Duration(200 * time.Millisecond)
	cfg.Scheduler.SweepInterval = config.Duration(500 * time.Millisecond)
	return &schedEnv{t: t, m: startServer(t, cfg), dir: t.TempDir()}
}

// call sends a user API request as user and decodes the answer.
func (e *schedEnv) call(method, path, user string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(e.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.m.URL()+path, r)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+token(e.t, user, time.Hour))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	if out != nil && resp.StatusCode < 300 {
		require.NoError(e.t, json.Unmarshal(data, out), "%s %s: %s", method, path, data)
	}
	if resp.StatusCode >= 300 && out != nil {
		e.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// e2eNode is one `switchboard node` process.
type e2eNode struct {
	*program
	id      string
	keyFile string
}

func simPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "workers", "sim.py")
}

// startNode runs a node with keyFile; unless already claimed, owner claims
// it by the printed code.
func (e *schedEnv) startNode(keyFile, owner string, extra ...string) *e2eNode {
	e.t.Helper()
	return e.startNodeWorker("python3 "+simPath(e.t), keyFile, owner, extra...)
}

// startNodeWorker is startNode with another worker command.
func (e *schedEnv) startNodeWorker(worker, keyFile, owner string, extra ...string) *e2eNode {
	e.t.Helper()
	args := []string{"node", "--server", e.m.URL(), "--worker", worker,
		"--key-file", keyFile, "--parallel", "2", "--heartbeat", "500ms", "--grace", "10s", "--log-level", "debug"}
	p := startProgram(e.t, append(args, extra...)...)
	n := &e2eNode{program: p, keyFile: keyFile}
	var code string
	lines := p.readUntil(e.t, func(l string) bool {
		if id, ok := strings.CutPrefix(l, "node id: "); ok {
			n.id = id
		}
		if c, ok := strings.CutPrefix(l, "claim code: "); ok {
			code = c
		}
		return code != "" || strings.HasPrefix(l, "node claimed")
	})
	require.NotEmpty(e.t, n.id, "stdout %q", lines)
	if code != "" {
		var node map[string]any
		require.Equal(e.t, 200, e.call("POST", "/nodes/claim", owner, map[string]any{"code": code, "name": owner + "-" + n.id[:6], "maxParallel": 2}, &node))
		require.Equal(e.t, n.id, node["id"])
	}
	require.Eventually(e.t, func() bool { return e.online(owner, n.id) }, testenv.Wait, testenv.Tick, "node %s online", n.id)
	return n
}

// e2eNodeState is a node of GET /nodes, the fields the tests read.
type e2eNodeState struct {
	ID       string `json:"id"`
	Online   bool   `json:"online"`
	Draining bool   `json:"draining"`
	Status   string `json:"status"`
}

// nodeState returns owner's node id as GET /nodes lists it (false when
// the call fails or the node is not listed).
func (e *schedEnv) nodeState(owner, id string) (e2eNodeState, bool) {
	var reply struct {
		Nodes []e2eNodeState `json:"nodes"`
	}
	if e.call("GET", "/nodes", owner, nil, &reply) != 200 {
		return e2eNodeState{}, false
	}
	for _, n := range reply.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return e2eNodeState{}, false
}

func (e *schedEnv) online(owner, id string) bool {
	n, _ := e.nodeState(owner, id)
	return n.Online
}

type e2eJob struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Result     *sim.Aggregate  `json:"result"`
	Error      *string         `json:"error"`
	ConfigHash string          `json:"configHash"`
	Config     json.RawMessage `json:"config"`
	Chunks     struct {
		Total, Pending, Running, Completed, Failed int
	} `json:"chunks"`
}

func (e *schedEnv) createJob(owner string, iterations int64, access string, config map[string]any) (string, string) {
	e.t.Helper()
	var created struct {
		JobID      string `json:"jobId"`
		Chunks     int    `json:"chunks"`
		ConfigHash string `json:"configHash"`
	}
	require.Equal(e.t, 201, e.call("POST", "/jobs", owner, map[string]any{"config": config, "iterations": iterations, "accessType": access}, &created))
	require.Equal(e.t, int((iterations+999)/1000), created.Chunks)
	return created.JobID, created.ConfigHash
}

func (e *schedEnv) job(owner, id string) e2eJob {
	e.t.Helper()
	var j e2eJob
	require.Equal(e.t, 200, e.call("GET", "/jobs/"+id, owner, nil, &j))
	return j
}

// waitJob polls the job until its status is want.
func (e *schedEnv) waitJob(owner, id, want string, within time.Duration) e2eJob {
	e.t.Helper()
	var j e2eJob
	require.Eventually(e.t, func() bool {
		j = e.job(owner, id)
		return j.Status == want
	}, within, 20*time.Millisecond, "job %s %s; last %+v", id, want, &j)
	return j
}

// requireAggregate checks a completed job's result against the one
// computed directly from the seeds (every iteration simulated by the Go
// reference of the worker, statistics over all of them): counts, min and
// max exactly, mean and pooled standard deviation up to rounding.
func requireAggregate(t *testing.T, j e2eJob, iterations int64, config map[string]any) {
	t.Helper()
	cfg, err := json.Marshal(config)
	require.NoError(t, err)
	want, err := sim.Job(j.ConfigHash, cfg, iterations)
	require.NoError(t, err)
	require.NotNil(t, j.Result, "job %s has no result", j.ID)
	got := *j.Result
	require.Equal(t, want.TotalIterations, got.TotalIterations, "each iteration counted once")
	require.Equal(t, want.ChunksCompleted, got.ChunksCompleted, "each chunk counted once")
	require.Equal(t, want.MinDps, got.MinDps)
	require.Equal(t, want.MaxDps, got.MaxDps)
	require.InEpsilon(t, want.MeanDps, got.MeanDps, 1e-12)
	require.InEpsilon(t, want.StdDps, got.StdDps, 1e-10)
}

var (
	completedRe  = regexp.MustCompile(`msg="chunk completed" component=node chunk=(\S+) job=(\S+)`)
	startedRe    = regexp.MustCompile(`msg="chunk started" component=node chunk=(\S+) job=(\S+)`)
	handedBackRe = regexp.MustCompile(`msg="chunk failure reported" component=node chunk=(\S+) job=(\S+) code=SHUTTING_DOWN`)
)

// completed returns the chunk ids the node's log says it completed for job.
func (n *e2eNode) completed(job string) []string { return n.logged(completedRe, job) }

// logged returns the chunk ids of the node's log lines matching re (chunk
// and job as its two groups) for job.
func (n *e2eNode) logged(re *regexp.Regexp, job string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(n.stderr.String(), -1) {
		if m[2] == job {
			out = append(out, m[1])
		}
	}
	return out
}

// assigned returns the chunk ids the node's log says it was given for job.
func (n *e2eNode) assigned(job string) []string {
	re := regexp.MustCompile(`msg="chunk assigned" component=node chunk=(\S+) job=` + regexp.QuoteMeta(job) + `\b`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(n.stderr.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// kill sends SIGKILL and waits for the exit.
func (n *e2eNode) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGKILL))
	<-n.exited
}

// simConfig is a quick simulation: 10 attacks per iteration.
func simConfig(extra map[string]any) map[string]any {
	c := map[string]any{"duration": 10, "attacksPerSecond": 1, "critChance": 0.25}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestSchedulerNodeProcesses(t *testing.T) {
	e := startScheduler(t)
	a := e.startNode(filepath.Join(e.dir, "a.key"), "alice")
	b := e.startNode(filepath.Join(e.dir, "b.key"), "alice")
	c := e.startNode(filepath.Join(e.dir, "c.key"), "bob")
	all := []*e2eNode{a, b, c}
	logs := func() string {
		var s strings.Builder
		for i, n := range all {
			fmt.Fprintf(&s, "--- node %d (%s) ---\n%s\n", i, n.id, n.stderr.String())
		}
		return s.String()
	}
	defer func() {
		if t.Failed() {
			t.Log(logs())
		}
	}()

	t.Run("private job on the owner's nodes", func(t *testing.T) {
		cfg := simConfig(nil)
		id, _ := e.createJob("alice", 10000, "private", cfg)
		j := e.waitJob("alice", id, "completed", 90*time.Second)
		requireAggregate(t, j, 10000, cfg)
		require.Eventually(t, func() bool { return len(append(a.completed(id), b.completed(id)...)) >= 10 }, testenv.Wait, testenv.Tick)
		require.Len(t, append(a.completed(id), b.completed(id)...), 10)
		require.Empty(t, c.completed(id), "bob's node ran none of alice's private chunks")
	})

	t.Run("public job uses every node", func(t *testing.T) {
		// 12 chunks of ~1 s each on 6 slots: every node gets some.
		cfg := simConfig(map[string]any{"sleepMs": 1})
		id, _ := e.createJob("alice", 12000, "public", cfg)
		j := e.waitJob("alice", id, "completed", 90*time.Second)
		requireAggregate(t, j, 12000, cfg)
		for i, n := range all {
			require.Eventually(t, func() bool { return len(n.completed(id)) > 0 }, testenv.Wait, testenv.Tick, "node %d ran none of the public job", i)
		}
	})

	t.Run("SIGKILLed node: lease expires, chunk redone elsewhere, counted once", func(t *testing.T) {
		cfg := simConfig(map[string]any{"sleepMs": 3}) // ~3 s per chunk
		id, _ := e.createJob("bob", 6000, "public", cfg)
		require.Eventually(t, func() bool { return len(c.assigned(id)) > 0 }, 30*time.Second, testenv.Tick, "bob's node got a chunk")
		lost := c.assigned(id)
		c.kill(t)
		j := e.waitJob("bob", id, "completed", 90*time.Second)
		requireAggregate(t, j, 6000, cfg)
		// The nodes log a completion after the server has answered it.
		var redone []string
		require.Eventually(t, func() bool {
			redone = append(a.completed(id), b.completed(id)...)
			return len(redone) >= 6
		}, testenv.Wait, testenv.Tick)
		for _, ch := range lost {
			require.Contains(t, redone, ch, "chunk %s of the killed node was redone", ch)
		}
		require.Len(t, redone, 6, "the other nodes ran all six chunks once")
	})

	t.Run("restarted node resumes its chunks", func(t *testing.T) {
		cfg := simConfig(map[string]any{"sleepMs": 3})
		id, _ := e.createJob("alice", 4000, "private", cfg)
		require.Eventually(t, func() bool { return len(b.assigned(id)) > 0 }, 30*time.Second, testenv.Tick, "node b got a chunk")
		held := b.assigned(id)
		b.kill(t)
		b2 := e.startNode(b.keyFile, "alice") // same key: same node, already claimed
		require.Equal(t, b.id, b2.id)
		all = append(all, b2)
		old := b
		b = b2
		j := e.waitJob("alice", id, "completed", 90*time.Second)
		requireAggregate(t, j, 4000, cfg)
		var got []string
		require.Eventually(t, func() bool {
			got = append(a.completed(id), b2.completed(id)...)
			return len(got) >= 4
		}, testenv.Wait, testenv.Tick)
		for _, ch := range held {
			require.Contains(t, got, ch)
		}
		require.NotEmpty(t, b2.completed(id), "the restarted node ran chunks of the job")
		require.Empty(t, old.completed(id), "killed before it finished any")
	})

	t.Run("SIGTERM: running chunks finish within the grace period", func(t *testing.T) {
		d := e.startNode(filepath.Join(e.dir, "d.key"), "alice")
		all = append(all, d)
		cfg := simConfig(map[string]any{"sleepMs": 2})
		id, _ := e.createJob("alice", 6000, "private", cfg)
		require.Eventually(t, func() bool { return len(d.logged(startedRe, id)) > 0 }, 30*time.Second, testenv.Tick, "node d started a chunk")
		require.Equal(t, 0, d.stop(t), "exit status after SIGTERM")
		started, done := d.logged(startedRe, id), d.completed(id)
		require.Subset(t, done, started, "d finished every chunk it had started before exiting")
		// A chunk assigned but not started yet when SIGTERM came is handed back.
		require.ElementsMatch(t, d.assigned(id), append(done, d.logged(handedBackRe, id)...), "every chunk d held was finished or handed back")
		j := e.waitJob("alice", id, "completed", 90*time.Second)
		requireAggregate(t, j, 6000, cfg)
	})

	t.Run("SIGTERM with a short grace hands chunks back", func(t *testing.T) {
		h := e.startNode(filepath.Join(e.dir, "h.key"), "alice", "--grace", "100ms")
		all = append(all, h)
		cfg := simConfig(map[string]any{"sleepMs": 5}) // ~5 s per chunk
		id, _ := e.createJob("alice", 6000, "private", cfg)
		require.Eventually(t, func() bool { return len(h.assigned(id)) > 0 }, 30*time.Second, testenv.Tick, "node h got a chunk")
		require.Equal(t, 0, h.stop(t), "exit status after SIGTERM")
		// The server heard it drain (its heartbeat, or its first hand-back).
		st, ok := e.nodeState("alice", h.id)
		require.True(t, ok)
		require.True(t, st.Draining, "node h draining after SIGTERM")
		require.Equal(t, "draining", st.Status)
		back := h.logged(handedBackRe, id)
		// Assignments that arrive while it drains are handed back too.
		require.Subset(t, back, h.assigned(id), "every held chunk handed back")
		require.Empty(t, h.completed(id))
		j := e.waitJob("alice", id, "completed", 90*time.Second)
		requireAggregate(t, j, 6000, cfg)
		var done []string
		require.Eventually(t, func() bool {
			done = append(a.completed(id), b.completed(id)...)
			return len(done) >= 6
		}, testenv.Wait, testenv.Tick)
		for _, ch := range back {
			require.Contains(t, done, ch, "a handed-back chunk was run by another node")
		}
	})

	t.Run("crashing worker: retries, then failed after the cap", func(t *testing.T) {
		cfg := simConfig(map[string]any{"crashAt": 1500})
		id, _ := e.createJob("alice", 3000, "private", cfg)
		j := e.waitJob("alice", id, "failed", 90*time.Second)
		require.NotNil(t, j.Error)
		require.Contains(t, *j.Error, "after 3 attempt(s)")
		require.Contains(t, *j.Error, "worker")
		// A worker's stderr is logged apart from its exit: the last line may come after the job failed.
		crashes := func() int {
			return strings.Count(a.stderr.String()+b.stderr.String(), "sim: crashing at iteration 1500")
		}
		require.Eventually(t, func() bool { return crashes() >= 3 }, testenv.Wait, testenv.Tick)
		require.Equal(t, 3, crashes(), "one crash per attempt, max_attempts 3")
	})

	t.Run("a Node.js worker gives the same result", func(t *testing.T) {
		if _, err := exec.LookPath("node"); err != nil {
			t.Skipf("node is not installed (%v)", err)
		}
		js := e.startNodeWorker("node "+strings.TrimSuffix(simPath(t), ".py")+".mjs", filepath.Join(e.dir, "js.key"), "carol")
		all = append(all, js)
		cfg := simConfig(map[string]any{"baseDamage": 250})
		id, _ := e.createJob("carol", 3500, "private", cfg)
		j := e.waitJob("carol", id, "completed", 90*time.Second)
		requireAggregate(t, j, 3500, cfg)
		require.Eventually(t, func() bool { return len(js.completed(id)) == 4 }, testenv.Wait, testenv.Tick)
	})

	t.Run("cancel mid-job", func(t *testing.T) {
		cfg := simConfig(map[string]any{"sleepMs": 20}) // ~20 s per chunk
		id, _ := e.createJob("alice", 4000, "private", cfg)
		require.Eventually(t, func() bool { return e.job("alice", id).Chunks.Running > 0 }, 30*time.Second, testenv.Tick)
		var j e2eJob
		fromA, fromB := len(a.stderr.String()), len(b.stderr.String())
		require.Equal(t, 200, e.call("POST", "/jobs/"+id+"/cancel", "alice", map[string]any{}, &j))
		j = e.waitJob("alice", id, "cancelled", 10*time.Second)
		// A node stops a cancelled chunk on the cancel notice, or on the
		// 409 of a progress report that reaches the server first.
		require.Eventually(t, func() bool {
			logs := a.stderr.String()[fromA:] + b.stderr.String()[fromB:]
			return strings.Count(logs, `msg="chunk cancelled"`)+strings.Count(logs, `msg="chunk lease lost; result dropped"`) >= 1
		}, testenv.Wait, testenv.Tick, "nodes stopped the cancelled chunks")
		require.Empty(t, append(a.completed(id), b.completed(id)...))
	})
}
