package schedtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// Factory returns a fresh, empty store; the test closes it (t.Cleanup).
type Factory func(t testing.TB) scheduler.Store

// Env is a running Service on a store, a FakeHub and a fake clock.
type Env struct {
	Store scheduler.Store
	Hub   *FakeHub
	Clock *clocktest.Fake
	Svc   *scheduler.Service
	Reg   *prometheus.Registry
	Cfg   scheduler.Config
}

// Start is the fake clock's start.
var Start = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// NewEnv starts a Service on store with cfg (Store, Publisher, Presence,
// Clock and Registerer are filled in; the sweep is off unless set).
func NewEnv(tb testing.TB, store scheduler.Store, cfg scheduler.Config) *Env {
	tb.Helper()
	e := &Env{Store: store, Hub: NewFakeHub(), Clock: clocktest.New(Start), Reg: prometheus.NewRegistry()}
	if cfg.Clock == nil {
		cfg.Clock = e.Clock
	}
	return e.start(tb, cfg)
}

// NewEnvOn starts another Service on the same store and hub (several
// processes sharing a database).
func (e *Env) NewEnvOn(tb testing.TB, store scheduler.Store) *Env {
	tb.Helper()
	o := &Env{Store: store, Hub: e.Hub, Clock: e.Clock, Reg: prometheus.NewRegistry()}
	cfg := e.Cfg
	return o.start(tb, cfg)
}

func (e *Env) start(tb testing.TB, cfg scheduler.Config) *Env {
	tb.Helper()
	cfg.Store, cfg.Publisher, cfg.Presence, cfg.Registerer = e.Store, e.Hub, e.Hub, e.Reg
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = -1 // events at once, unless a test sets it
	}
	svc, err := scheduler.New(cfg)
	require.NoError(tb, err)
	require.NoError(tb, svc.Run(context.Background()))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(tb, svc.Shutdown(ctx))
	})
	e.Svc, e.Cfg = svc, cfg
	return e
}

// SimNode is a registered node's key and id.
type SimNode struct {
	Key    ed25519.PublicKey
	ID     string
	Client string
}

var clientSeq atomic.Int64

// NewKey returns a fresh Ed25519 public key.
func NewKey(tb testing.TB) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	return pub
}

// Node registers a node with cores, claims it for owner with maxParallel
// and, when online, joins it to nodes:online.
func (e *Env) Node(tb testing.TB, owner string, cores, maxParallel int, online bool) SimNode {
	tb.Helper()
	ctx := context.Background()
	key := NewKey(tb)
	reg, err := e.Svc.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: new("h"), TotalCores: new(cores), EnabledCores: new(cores), Platform: new("linux-x86_64"), Version: new("0.1.0")})
	require.NoError(tb, err)
	require.NotNil(tb, reg.ClaimCode)
	_, err = e.Svc.ClaimNode(ctx, owner, *reg.ClaimCode, "n-"+reg.ID[:8], maxParallel)
	require.NoError(tb, err)
	n := SimNode{Key: key, ID: reg.ID, Client: fmt.Sprintf("c%d", clientSeq.Add(1))}
	if online {
		e.Hub.Join(n.ID, n.Client)
	}
	return n
}

// WaitAssigned waits until node has received n assignments in total and
// returns them.
func (e *Env) WaitAssigned(tb testing.TB, node SimNode, n int) []scheduler.Assignment {
	tb.Helper()
	var got []scheduler.Assignment
	require.Eventually(tb, func() bool {
		got = e.Hub.Assignments(tb, node.ID)
		return len(got) >= n
	}, testenv.Wait, testenv.Tick, "node %s: want %d assignments", node.ID, n)
	return got
}

// WaitJob waits until the job satisfies cond and returns it.
func (e *Env) WaitJob(tb testing.TB, id string, cond func(scheduler.Job) bool) scheduler.Job {
	tb.Helper()
	var j scheduler.Job
	require.Eventually(tb, func() bool {
		var err error
		j, err = e.Svc.Job(context.Background(), scheduler.Viewer{Admin: true}, id)
		require.NoError(tb, err)
		return cond(j)
	}, testenv.Wait, testenv.Tick, "job %s", id)
	return j
}

// Result returns a chunk result of the aggregatable shape.
func Result(a scheduler.Assignment) json.RawMessage {
	mean := 1000 + float64(a.SeedOffset%7000)/7
	b, _ := json.Marshal(scheduler.ChunkResult{Iterations: a.Iterations, MeanDps: mean, StdDps: 50 + float64(a.SeedOffset%13), MinDps: mean - 300, MaxDps: mean + 400})
	return b
}

// Complete completes an assignment as node with Result(a).
func (e *Env) Complete(tb testing.TB, node SimNode, a scheduler.Assignment) scheduler.Completion {
	tb.Helper()
	c, err := e.Svc.CompleteChunk(context.Background(), node.Key, a.ID, a.LeaseID, Result(a))
	require.NoError(tb, err)
	return c
}
