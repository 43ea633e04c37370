package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// End-to-end tests of the scheduler's HTTP API in the whole program, with a
// fake compute node written here (an Ed25519 key and centrifuge-go).

func schedulerConfig(t *testing.T) config.Config {
	cfg := testConfig()
	cfg.Scheduler.Enabled = true
	cfg.Circles.DataDir = t.TempDir()
	return cfg
}

// fakeNode signs its requests like the origin's nodes. Timestamps never
// repeat (the next second when the clock has not moved), so two identical
// requests in one second are not replays.
type fakeNode struct {
	t    *testing.T
	m    *Main
	priv ed25519.PrivateKey
	mu   sync.Mutex
	ts   int64
}

func newFakeNode(t *testing.T, m *Main, seed byte) *fakeNode {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return &fakeNode{t: t, m: m, priv: ed25519.NewKeyFromSeed(s)}
}

func (n *fakeNode) nextTs() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ts = max(n.ts+1, time.Now().Unix())
	return n.ts
}

// request builds a signed request; edit may change it after signing.
func (n *fakeNode) request(method, path, body string, ts int64) *http.Request {
	n.t.Helper()
	req, err := http.NewRequest(method, n.m.URL()+path, strings.NewReader(body))
	require.NoError(n.t, err)
	h := auth.SignNodeRequest(n.priv, ts, method, path, []byte(body))
	req.Header.Set(auth.HeaderNodeKey, h.Key)
	req.Header.Set(auth.HeaderNodeSig, h.Sig)
	req.Header.Set(auth.HeaderNodeTs, h.Ts)
	return req
}

func (n *fakeNode) call(method, path, body string) (int, map[string]any) {
	n.t.Helper()
	return send(n.t, n.request(method, path, body, n.nextTs()))
}

func send(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out), "%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, data)
	return resp.StatusCode, out
}

func userCall(t *testing.T, m *Main, tok, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, m.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	return send(t, req)
}

func TestSchedulerEndToEnd(t *testing.T) {
	schedulerFlow(t, startServer(t, schedulerConfig(t)))
}

// TestSchedulerPostgres runs the same flow on the PostgreSQL store
// (scheduler.database_url, a schema of its own).
func TestSchedulerPostgres(t *testing.T) {
	url := testenv.PostgresURL(t)
	cfg := schedulerConfig(t)
	cfg.Scheduler.DatabaseURL = url
	cfg.Scheduler.DatabaseSchema = testenv.PostgresSchema(t, url)
	schedulerFlow(t, startServer(t, cfg))
}

// schedulerFlow: a fake node registers, is claimed, connects with its hub
// token, runs a two-chunk job to completion; a late browser catches up.
func schedulerFlow(t *testing.T, m *Main) {
	alice := token(t, "alice", time.Hour)
	node := newFakeNode(t, m, 1)

	st, reg := node.call("POST", "/nodes/register", `{"hostname":"h","totalCores":8,"enabledCores":4,"platform":"linux-x86_64","version":"0.1.0"}`)
	require.Equal(t, 200, st, reg)
	require.Equal(t, false, reg["claimed"])
	code, _ := reg["claimCode"].(string)
	require.Equal(t, "MW3AM4", code, "the claim code of the PROTOCOLS.md key")
	nodeID := reg["id"].(string)

	st, out := node.call("POST", "/nodes/verify", "")
	require.Equal(t, 404, st)
	require.Equal(t, "Node not found or not claimed", out["error"])
	st, out = node.call("POST", "/nodes/token", "")
	require.Equal(t, 404, st, out)

	st, out = userCall(t, m, alice, "POST", "/nodes/claim", `{"code":"mw3-am4","name":"box","maxParallel":2}`)
	require.Equal(t, 200, st, out)
	require.Equal(t, nodeID, out["id"])
	require.Equal(t, "alice", out["ownerId"])
	st, out = userCall(t, m, token(t, "bob", time.Hour), "POST", "/nodes/claim", `{"code":"MW3AM4","name":"mine"}`)
	require.Equal(t, 409, st, "claimed already: %v", out)

	st, reg = node.call("POST", "/nodes/register", `{"hostname":"h","totalCores":8}`)
	require.Equal(t, 200, st, reg)
	require.Equal(t, map[string]any{"id": nodeID, "claimCode": nil, "claimed": true}, reg, "a claimed node gets its row back (the origin 500s)")
	st, out = node.call("POST", "/nodes/heartbeat", `{"status":"idle"}`)
	require.Equal(t, 200, st, out)
	require.Equal(t, "box", out["name"])

	st, tok := node.call("POST", "/nodes/token", "")
	require.Equal(t, 200, st, tok)
	require.Equal(t, "ws://"+m.Addr()+"/connection/websocket", tok["url"])
	require.Equal(t, []any{"nodes:" + nodeID, "chunks:" + nodeID, "nodes:online"}, tok["channels"])

	// The node connects with the token alone: its channels are server-side
	// subscriptions, in namespaces where no client may subscribe.
	c := centrifuge.NewJsonClient(tok["url"].(string), centrifuge.Config{Token: tok["token"].(string)})
	t.Cleanup(c.Close)
	var mu sync.Mutex
	var chunks []map[string]any
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) {
		if e.Channel != "chunks:"+nodeID {
			return
		}
		var a map[string]any
		if json.Unmarshal(e.Data, &a) == nil {
			mu.Lock()
			chunks = append(chunks, a)
			mu.Unlock()
		}
	})
	require.NoError(t, c.Connect())
	require.Eventually(t, func() bool {
		_, out := userCall(t, m, alice, "GET", "/nodes", "")
		ns, _ := out["nodes"].([]any)
		return len(ns) == 1 && ns[0].(map[string]any)["online"] == true
	}, 10*time.Second, 20*time.Millisecond, "the node is online through hub presence")

	st, job := userCall(t, m, alice, "POST", "/jobs", `{"config":{"spell":"fireball","rank":3},"iterations":1500,"accessType":"private"}`)
	require.Equal(t, 201, st, job)
	require.Equal(t, 2.0, job["chunks"])
	jobID := job["jobId"].(string)
	require.Len(t, job["configHash"], 64)

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(chunks) == 2 }, 10*time.Second, 10*time.Millisecond,
		"both chunks reach the node (capacity 2) on chunks:{id}")
	st, as := node.call("GET", "/chunks/assigned", "")
	require.Equal(t, 200, st, as)
	require.Len(t, as["chunks"], 2)

	mu.Lock()
	got := append([]map[string]any(nil), chunks...)
	mu.Unlock()
	results := map[float64]string{0: `{"iterations":1000,"meanDps":100,"stdDps":10,"minDps":70,"maxDps":130}`,
		1000: `{"iterations":500,"meanDps":130,"stdDps":20,"minDps":60,"maxDps":190}`}
	var last map[string]any
	for i, a := range got {
		require.Equal(t, jobID, a["jobId"])
		require.Equal(t, job["configHash"], a["configHash"])
		require.Equal(t, map[string]any{"spell": "fireball", "rank": 3.0}, a["config"])
		_, err := time.Parse(time.RFC3339, a["deadline"].(string))
		require.NoError(t, err)
		st, out := node.call("POST", "/chunks/progress", `{"chunkId":"`+a["id"].(string)+`","leaseId":"`+a["leaseId"].(string)+`","done":10}`)
		require.Equal(t, 200, st, out)
		body := `{"chunkId":"` + a["id"].(string) + `","leaseId":"` + a["leaseId"].(string) + `","result":` + results[a["seedOffset"].(float64)] + `}`
		st, last = node.call("POST", "/chunks/complete", body)
		require.Equal(t, 200, st, last)
		require.Equal(t, i == 1, last["jobComplete"], last)
		if i == 0 {
			st, again := node.call("POST", "/chunks/complete", body)
			require.Equal(t, 200, st, again)
			require.Equal(t, map[string]any{"success": true, "alreadyCompleted": true, "jobComplete": false}, again)
		}
	}

	st, j := userCall(t, m, alice, "GET", "/jobs/"+jobID, "")
	require.Equal(t, 200, st, j)
	require.Equal(t, "completed", j["status"])
	require.Equal(t, 1.0, j["progress"])
	res := j["result"].(map[string]any)
	require.Equal(t, 1500.0, res["totalIterations"])
	require.Equal(t, 2.0, res["chunksCompleted"])
	require.InDelta(t, (100*1000+130*500)/1500.0, res["meanDps"], 1e-9)
	require.Equal(t, 60.0, res["minDps"])
	require.Equal(t, 190.0, res["maxDps"])
	mean := (100*1000 + 130*500) / 1500.0
	pooled := math.Sqrt((1000*(10*10+(100-mean)*(100-mean)) + 500*(20*20+(130-mean)*(130-mean))) / 1500)
	require.InDelta(t, pooled, res["stdDps"], 0.5, "pooled standard deviation")

	// A browser arriving after the end subscribes to jobs:{id} with a
	// subscription token (the namespace refuses plain subscribes) and
	// catches up from its history.
	st, sub := userCall(t, m, alice, "POST", "/jobs/"+jobID+"/subscription", "")
	require.Equal(t, 200, st, sub)
	require.Equal(t, "jobs:"+jobID, sub["channel"])
	browser := centrifuge.NewJsonClient("ws://"+m.Addr()+"/connection/websocket", centrifuge.Config{Token: alice})
	t.Cleanup(browser.Close)
	require.NoError(t, browser.Connect())
	plain, err := browser.NewSubscription("jobs:" + jobID)
	require.NoError(t, err)
	refused := make(chan error, 1)
	plain.OnError(func(e centrifuge.SubscriptionErrorEvent) { refused <- e.Error })
	require.NoError(t, plain.Subscribe())
	select {
	case err := <-refused:
		require.ErrorContains(t, err, "permission denied")
	case <-time.After(10 * time.Second):
		t.Fatal("a subscribe without token was not refused")
	}
	require.NoError(t, plain.Unsubscribe())
	require.Eventually(t, func() bool { return browser.RemoveSubscription(plain) == nil }, 10*time.Second, 10*time.Millisecond)
	js, err := browser.NewSubscription("jobs:"+jobID, centrifuge.SubscriptionConfig{Token: sub["token"].(string)})
	require.NoError(t, err)
	subscribed := make(chan struct{}, 1)
	js.OnSubscribed(func(centrifuge.SubscribedEvent) { subscribed <- struct{}{} })
	require.NoError(t, js.Subscribe())
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("subscription with token not confirmed")
	}
	hist, err := js.History(context.Background(), centrifuge.WithHistoryLimit(100))
	require.NoError(t, err)
	var types []string
	for _, p := range hist.Publications {
		var ev struct{ Type string }
		require.NoError(t, json.Unmarshal(p.Data, &ev))
		types = append(types, ev.Type)
	}
	require.Contains(t, types, "completed", "history of jobs:{id}: %v", types)

	st, out = userCall(t, m, token(t, "bob", time.Hour), "GET", "/jobs/"+jobID, "")
	require.Equal(t, 404, st, "another user does not see the job: %v", out)
	st, out = userCall(t, m, alice, "POST", "/jobs/"+jobID+"/cancel", "")
	require.Equal(t, 409, st, out)
	st, out = userCall(t, m, alice, "GET", "/jobs", "")
	require.Equal(t, 200, st, out)
	require.Len(t, out["jobs"], 1)
}

func TestSchedulerSignedRequestFailures(t *testing.T) {
	m := startServer(t, schedulerConfig(t))
	node := newFakeNode(t, m, 1)
	other := newFakeNode(t, m, 77)
	body := `{"hostname":"h"}`
	now := time.Now().Unix()
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		msg    string
	}{
		{"wrong key", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Header.Set(auth.HeaderNodeKey, base64.StdEncoding.EncodeToString(other.priv.Public().(ed25519.PublicKey)))
			return r
		}, 401, "Invalid signature"},
		{"tampered body", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Body = io.NopCloser(strings.NewReader(`{"hostname":"x"}`))
			return r
		}, 401, "Invalid signature"},
		{"stale", func() *http.Request { return node.request("POST", "/nodes/register", body, now-400) }, 401, "Timestamp expired"},
		{"future", func() *http.Request { return node.request("POST", "/nodes/register", body, now+400) }, 401, "Timestamp expired"},
		{"missing key", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Header.Del(auth.HeaderNodeKey)
			return r
		}, 401, "Missing X-Node-Key"},
		{"missing sig", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Header.Del(auth.HeaderNodeSig)
			return r
		}, 401, "Missing X-Node-Sig"},
		{"missing ts", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Header.Del(auth.HeaderNodeTs)
			return r
		}, 401, "Missing X-Node-Ts"},
		{"key not base64", func() *http.Request {
			r := node.request("POST", "/nodes/register", body, now)
			r.Header.Set(auth.HeaderNodeKey, "!!")
			return r
		}, 401, "Invalid key encoding"},
		{"oversize", func() *http.Request {
			return node.request("POST", "/nodes/register", `{"hostname":"`+strings.Repeat("a", 1<<20)+`"}`, now)
		}, 413, "Body too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, out := send(t, c.req())
			require.Equal(t, c.status, st)
			require.Equal(t, map[string]any{"error": c.msg}, out)
		})
	}

	req := func() *http.Request { return node.request("POST", "/nodes/register", body, now) }
	st, out := send(t, req())
	require.Equal(t, 200, st, out)
	st, out = send(t, req())
	require.Equal(t, 401, st)
	require.Equal(t, "Replayed signature", out["error"])

	// User API strictness through the whole server.
	alice := token(t, "alice", time.Hour)
	for _, b := range []struct{ body, msg string }{
		{`{"config":{},"iterations":0}`, "iterations: must be a positive integer"},
		{`{"config":{}}`, "iterations: must be a positive integer"},
		{`{"iterations":10}`, "config: required"},
		{`{"config":{},"iterations":10,"accessType":"world"}`, "accessType: must be private, public or user"},
		{`{"config":{},"iterations":1.5}`, "iterations: must be an integer, got number 1.5"},
		{`{"config":{},"iterations":10,"priority":1,"color":"red"}`, `unknown field "color"`},
		{`{"config":"` + strings.Repeat("x", 70<<10) + `","iterations":10}`, "config"},
	} {
		st, out := userCall(t, m, alice, "POST", "/jobs", b.body)
		require.Equal(t, 400, st, out)
		require.Contains(t, out["error"], b.msg)
	}
	r, err := http.NewRequest("GET", m.URL()+"/jobs", bytes.NewReader(nil))
	require.NoError(t, err)
	st, out = send(t, r)
	require.Equal(t, 401, st, out)
}

// TestSchedulerTwoProcesses: two processes on one PostgreSQL schema and one
// Redis engine act as one scheduler. The node registers and takes its
// token through A, is claimed through B, connects to B's hub; a job created
// on A reaches it, and its completion through B completes the job on A.
func TestSchedulerTwoProcesses(t *testing.T) {
	pg := testenv.PostgresURL(t)
	schema := testenv.PostgresSchema(t, pg)
	start := redisNodes(t, func(cfg *config.Config) {
		cfg.Scheduler.Enabled = true
		cfg.Scheduler.DatabaseURL, cfg.Scheduler.DatabaseSchema = pg, schema
		cfg.Circles.DataDir = t.TempDir()
	})
	a, b := start(), start()
	alice := token(t, "alice", time.Hour)
	node := newFakeNode(t, a, 9)

	st, reg := node.call("POST", "/nodes/register", `{"hostname":"h","totalCores":4}`)
	require.Equal(t, 200, st, reg)
	st, out := userCall(t, b, alice, "POST", "/nodes/claim", `{"code":"`+reg["claimCode"].(string)+`","maxParallel":4}`)
	require.Equal(t, 200, st, out)
	st, tok := node.call("POST", "/nodes/token", "")
	require.Equal(t, 200, st, tok)

	c := centrifuge.NewJsonClient("ws://"+b.Addr()+"/connection/websocket", centrifuge.Config{Token: tok["token"].(string)})
	t.Cleanup(c.Close)
	chunks := make(chan map[string]any, 16)
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) {
		var m map[string]any
		if strings.HasPrefix(e.Channel, "chunks:") && json.Unmarshal(e.Data, &m) == nil {
			chunks <- m
		}
	})
	require.NoError(t, c.Connect())
	require.Eventually(t, func() bool {
		_, out := userCall(t, a, alice, "GET", "/nodes", "")
		ns, _ := out["nodes"].([]any)
		return len(ns) == 1 && ns[0].(map[string]any)["online"] == true
	}, 10*time.Second, 20*time.Millisecond, "A sees the node connected to B as online")

	st, job := userCall(t, a, alice, "POST", "/jobs", `{"config":{"k":1},"iterations":2000}`)
	require.Equal(t, 201, st, job)
	node.m = b // the node now talks to B
	for i := 0; i < 2; i++ {
		select {
		case ch := <-chunks:
			st, out := node.call("POST", "/chunks/complete", `{"chunkId":"`+ch["id"].(string)+`","leaseId":"`+ch["leaseId"].(string)+
				`","result":{"iterations":1000,"meanDps":10,"stdDps":1,"minDps":8,"maxDps":12}}`)
			require.Equal(t, 200, st, out)
		case <-time.After(10 * time.Second):
			t.Fatalf("chunk %d did not reach the node", i)
		}
	}
	st, j := userCall(t, a, alice, "GET", "/jobs/"+job["jobId"].(string), "")
	require.Equal(t, 200, st, j)
	require.Equal(t, "completed", j["status"], j)
	require.Equal(t, 2000.0, j["result"].(map[string]any)["totalIterations"])
}
