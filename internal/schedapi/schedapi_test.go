package schedapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

const (
	testSecret = "test-secret"
	testAPIKey = "test-api-key"
)

var testNow = time.Unix(1_700_000_000, 0)

// fakeService records calls and answers from its fields.
type fakeService struct {
	mu       sync.Mutex
	calls    []string
	keys     []string
	owners   []string
	viewers  []scheduler.Viewer
	spec     scheduler.JobSpec
	err      error // returned by every method when set
	node     scheduler.Node
	complete scheduler.Completion
}

func (f *fakeService) rec(name string, key ed25519.PublicKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if key != nil {
		f.keys = append(f.keys, base64.StdEncoding.EncodeToString(key))
	}
	return f.err
}

func (f *fakeService) view(name string, v scheduler.Viewer) error {
	f.mu.Lock()
	f.viewers = append(f.viewers, v)
	f.mu.Unlock()
	return f.rec(name, nil)
}

func (f *fakeService) RegisterNode(_ context.Context, key ed25519.PublicKey, info scheduler.NodeInfo) (scheduler.Registration, error) {
	code := "MW3AM4"
	return scheduler.Registration{ID: "n1", ClaimCode: &code}, f.rec(fmt.Sprintf("register:%s/%s/%s/%s/%s/%s", show(info.Hostname), show(info.TotalCores),
		show(info.EnabledCores), show(info.Platform), show(info.Version), info.Instance), key)
}

// show prints *v, or "-" for nil (an omitted field).
func show[T any](v *T) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}
func (f *fakeService) Heartbeat(_ context.Context, key ed25519.PublicKey, hb scheduler.HeartbeatInfo) (scheduler.NodeStatus, error) {
	return scheduler.NodeStatus{ID: "n1", Name: "box", MaxParallel: 2, Status: hb.Status},
		f.rec(fmt.Sprintf("heartbeat:%s/%v/%s", hb.Status, hb.Draining, hb.Instance), key)
}
func (f *fakeService) Verify(_ context.Context, key ed25519.PublicKey) (scheduler.NodeStatus, error) {
	return scheduler.NodeStatus{ID: "n1", Name: "box", MaxParallel: 2, Status: "online"}, f.rec("verify", key)
}
func (f *fakeService) NodeForToken(_ context.Context, key ed25519.PublicKey) (scheduler.Node, error) {
	return f.node, f.rec("token", key)
}
func (f *fakeService) CompleteChunk(_ context.Context, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage) (scheduler.Completion, error) {
	return f.complete, f.rec("complete:"+chunkID+":"+leaseID+":"+string(result), key)
}
func (f *fakeService) FailChunk(_ context.Context, key ed25519.PublicKey, chunkID, leaseID string, fl scheduler.Failure) error {
	return f.rec("fail:"+chunkID+":"+leaseID+":"+fl.Message+":"+fl.Code, key)
}
func (f *fakeService) ProgressChunk(_ context.Context, key ed25519.PublicKey, chunkID, leaseID string, done int64) (time.Time, error) {
	return testNow.Add(30 * time.Second), f.rec("progress:"+chunkID, key)
}
func (f *fakeService) AssignedChunks(_ context.Context, key ed25519.PublicKey) ([]scheduler.Assignment, error) {
	return nil, f.rec("assigned", key)
}
func (f *fakeService) CreateJob(_ context.Context, owner string, spec scheduler.JobSpec) (scheduler.Created, error) {
	f.mu.Lock()
	f.owners, f.spec = append(f.owners, owner), spec
	f.mu.Unlock()
	return scheduler.Created{JobID: "j1", Chunks: 3, ConfigHash: "abc"}, f.rec("create", nil)
}
func (f *fakeService) Job(_ context.Context, v scheduler.Viewer, id string) (scheduler.Job, error) {
	return scheduler.Job{ID: id, OwnerID: v.UserID, Status: scheduler.JobRunning}, f.view("job:"+id, v)
}
func (f *fakeService) Jobs(_ context.Context, v scheduler.Viewer, q scheduler.JobQuery) ([]scheduler.Job, error) {
	return nil, f.view("jobs:"+string(q.Status), v)
}
func (f *fakeService) CancelJob(_ context.Context, v scheduler.Viewer, id string) (scheduler.Job, error) {
	return scheduler.Job{ID: id, Status: scheduler.JobCancelled}, f.view("cancel:"+id, v)
}
func (f *fakeService) ClaimNode(_ context.Context, user, code, name string, maxParallel int) (scheduler.Node, error) {
	f.mu.Lock()
	f.owners = append(f.owners, user)
	f.mu.Unlock()
	return scheduler.Node{ID: "n1", Name: name, OwnerID: user, MaxParallel: maxParallel}, f.rec("claim:"+code, nil)
}
func (f *fakeService) Nodes(_ context.Context, v scheduler.Viewer) ([]scheduler.Node, error) {
	return []scheduler.Node{{ID: "n1", OwnerID: v.UserID}}, f.view("nodes", v)
}
func (f *fakeService) GrantNode(_ context.Context, v scheduler.Viewer, nodeID, userID string) error {
	return f.view("grant:"+nodeID+":"+userID, v)
}

type fixture struct {
	t     *testing.T
	svc   *fakeService
	h     *Handler
	clk   *clocktest.Fake
	priv  ed25519.PrivateKey
	token string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := clocktest.New(testNow)
	svc := &fakeService{node: scheduler.Node{ID: "n1", OwnerID: "alice"}, complete: scheduler.Completion{Success: true, JobComplete: true}}
	tokens := auth.NewTokenVerifier(testSecret, "", "")
	h, err := New(Config{Service: svc, Tokens: tokens, Signer: auth.NewTokenSigner(testSecret, "", ""), APIKey: testAPIKey,
		Nodes: auth.NewNodeVerifier(auth.NodeVerifierConfig{Now: clk.Now}), Clock: clk})
	require.NoError(t, err)
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	tok, err := auth.SignConnect(testSecret, "alice", 0, time.Now())
	require.NoError(t, err)
	return &fixture{t: t, svc: svc, h: h, clk: clk, priv: ed25519.NewKeyFromSeed(seed), token: tok}
}

type reply struct {
	status int
	body   map[string]any
	header http.Header
}

func (f *fixture) do(req *http.Request) reply {
	f.t.Helper()
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var m map[string]any
	require.NoError(f.t, json.Unmarshal(rec.Body.Bytes(), &m), "body %q", rec.Body.String())
	require.Equal(f.t, "application/json", rec.Header().Get("Content-Type"))
	return reply{status: rec.Code, body: m, header: rec.Header()}
}

// signed sends a node request signed at the fake clock's time.
func (f *fixture) signed(method, path, body string) reply {
	f.t.Helper()
	return f.do(f.signedReq(method, path, body, f.clk.Now().Unix()))
}

func (f *fixture) signedReq(method, path, body string, ts int64) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	h := auth.SignNodeRequest(f.priv, ts, method, strings.SplitN(path, "?", 2)[0], []byte(body))
	req.Header.Set(auth.HeaderNodeKey, h.Key)
	req.Header.Set(auth.HeaderNodeSig, h.Sig)
	req.Header.Set(auth.HeaderNodeTs, h.Ts)
	return req
}

func (f *fixture) user(method, path, body string, creds ...string) reply {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if len(creds) == 0 {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	for i := 0; i+1 < len(creds); i += 2 {
		req.Header.Set(creds[i], creds[i+1])
	}
	return f.do(req)
}

const registerBody = `{"hostname":"h","totalCores":8,"enabledCores":4,"platform":"linux-x86_64","version":"0.1.0","instance":"p1"}`

func TestNodeRegisterSigned(t *testing.T) {
	f := newFixture(t)
	r := f.signed("POST", "/nodes/register", registerBody)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"id": "n1", "claimCode": "MW3AM4", "claimed": false}, r.body)
	require.Equal(t, []string{"register:h/8/4/linux-x86_64/0.1.0/p1"}, f.svc.calls)
	require.Equal(t, []string{"ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="}, f.svc.keys)
}

// Omitted (or null) fields reach the Service as nil: they keep the stored
// values.
func TestNodeRegisterOmittedFields(t *testing.T) {
	f := newFixture(t)
	r := f.signed("POST", "/nodes/register", `{}`)
	require.Equal(t, 200, r.status, r.body)
	r = f.signed("POST", "/nodes/register", `{"version":"0.2.0","hostname":null}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, []string{"register:-/-/-/-/-/", "register:-/-/-/-/0.2.0/"}, f.svc.calls)
}

func TestNodeSignatureFailures(t *testing.T) {
	f := newFixture(t)
	now := f.clk.Now().Unix()
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		msg    string
	}{
		{"missing key", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Header.Del(auth.HeaderNodeKey)
			return r
		}, 401, "Missing X-Node-Key"},
		{"missing sig", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Header.Del(auth.HeaderNodeSig)
			return r
		}, 401, "Missing X-Node-Sig"},
		{"missing ts", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Header.Del(auth.HeaderNodeTs)
			return r
		}, 401, "Missing X-Node-Ts"},
		{"wrong key", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Header.Set(auth.HeaderNodeKey, base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey)))
			return r
		}, 401, "Invalid signature"},
		{"tampered body", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(registerBody, `"h"`, `"x"`, 1)))
			return r
		}, 401, "Invalid signature"},
		{"stale", func() *http.Request { return f.signedReq("POST", "/nodes/register", registerBody, now-301) }, 401, "Timestamp expired"},
		{"future", func() *http.Request { return f.signedReq("POST", "/nodes/register", registerBody, now+301) }, 401, "Timestamp expired"},
		{"bad ts", func() *http.Request {
			r := f.signedReq("POST", "/nodes/register", registerBody, now)
			r.Header.Set(auth.HeaderNodeTs, "soon")
			return r
		}, 401, "Invalid timestamp"},
		{"oversize", func() *http.Request {
			big := `{"hostname":"` + strings.Repeat("a", auth.DefaultNodeMaxBody) + `"}`
			return f.signedReq("POST", "/nodes/register", big, now)
		}, 413, "Body too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(c.req())
			require.Equal(t, c.status, r.status)
			require.Equal(t, map[string]any{"error": c.msg}, r.body)
		})
	}
	require.Empty(t, f.svc.calls, "no failed request reaches the scheduler")

	// Replay: the same signed request twice.
	req := func() *http.Request { return f.signedReq("POST", "/nodes/heartbeat", `{"status":"idle"}`, now) }
	require.Equal(t, 200, f.do(req()).status)
	r := f.do(req())
	require.Equal(t, 401, r.status)
	require.Equal(t, "Replayed signature", r.body["error"])
	require.Equal(t, []string{"heartbeat:idle/false/"}, f.svc.calls)
	require.Equal(t, 2.0, testutil.ToFloat64(f.h.refused.WithLabelValues("Invalid signature")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.h.refused.WithLabelValues("Replayed signature")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.h.refused.WithLabelValues("Body too large")))
}

func TestNodeEndpoints(t *testing.T) {
	f := newFixture(t)
	h := f.signed("POST", "/nodes/heartbeat", `{"draining":true,"instance":"p1"}`)
	require.Equal(t, 200, h.status, h.body)
	require.Equal(t, []string{"heartbeat:/true/p1"}, f.svc.calls, "the drain and the instance reach the Service")
	r := f.signed("POST", "/nodes/verify", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"id": "n1", "name": "box", "maxParallel": 2.0, "status": "online"}, r.body)

	r = f.signed("POST", "/chunks/complete", `{"chunkId":"c1","leaseId":"l1","result":{"iterations":1000,"meanDps":5,"stdDps":1,"minDps":1,"maxDps":9}}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"success": true, "jobComplete": true}, r.body)
	r = f.signed("POST", "/chunks/complete", `{"chunkId":"c1","result":{"iterations":1000}}`)
	require.Equal(t, 200, r.status, r.body)
	require.Contains(t, f.svc.calls, `complete:c1::{"iterations":1000}`, "no leaseId: the node's current lease")

	r = f.signed("POST", "/chunks/fail", `{"chunkId":"c1","leaseId":"l1","error":{"message":"boom","code":"E1"},"retryable":true}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"success": true}, r.body)
	r = f.signed("POST", "/chunks/fail", `{"chunkId":"c1","leaseId":"l1","error":{"message":""}}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "error.message: required", r.body["error"])

	r = f.signed("POST", "/chunks/progress", `{"chunkId":"c1","leaseId":"l1","done":10}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "2023-11-14T22:13:50Z", r.body["deadline"])

	r = f.signed("GET", "/chunks/assigned", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"chunks": []any{}}, r.body)

	r = f.signed("POST", "/chunks/complete", `{"leaseId":"l1","result":{}}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "chunkId: required", r.body["error"])
	r = f.signed("POST", "/chunks/complete", `{"chunkId":"c2","result":{"iterations":1},"extra":1}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, `unknown field "extra"`, r.body["error"])
}

func TestNodeToken(t *testing.T) {
	f := newFixture(t)
	req := f.signedReq("POST", "/nodes/token", "", f.clk.Now().Unix())
	req.Host = "sched.example:9000"
	r := f.do(req)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "ws://sched.example:9000/connection/websocket", r.body["url"])
	require.Equal(t, []any{"nodes:n1", "chunks:n1", "nodes:online"}, r.body["channels"])
	require.Equal(t, "2023-11-14T22:23:20Z", r.body["expiresAt"])
	require.NotEmpty(t, r.body["token"], "claims: TestNodeTokenClaims")

	f.svc.err = scheduler.ErrNodeNotClaimed
	req = f.signedReq("POST", "/nodes/token", "{}", f.clk.Now().Unix())
	req.Header.Set("X-Forwarded-Proto", "https")
	r = f.do(req)
	require.Equal(t, 404, r.status)
	require.Equal(t, "Node not found or not claimed", r.body["error"])
}

func TestNodeTokenClaims(t *testing.T) {
	clk := clocktest.New(time.Now())
	svc := &fakeService{node: scheduler.Node{ID: "n7", OwnerID: "bob"}}
	h, err := New(Config{Service: svc, Tokens: auth.NewTokenVerifier(testSecret, "", ""), Signer: auth.NewTokenSigner(testSecret, "aud", "iss"),
		HubURL: "wss://hub.example/connection/websocket", Clock: clk, NodeTokenTTL: time.Minute})
	require.NoError(t, err)
	seed := make([]byte, 32)
	priv := ed25519.NewKeyFromSeed(seed)
	req := httptest.NewRequest("POST", "/nodes/token", nil)
	hd := auth.SignNodeRequest(priv, clk.Now().Unix(), "POST", "/nodes/token", nil)
	req.Header.Set(auth.HeaderNodeKey, hd.Key)
	req.Header.Set(auth.HeaderNodeSig, hd.Sig)
	req.Header.Set(auth.HeaderNodeTs, hd.Ts)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 200, rec.Code, rec.Body.String())
	var out tokenReply
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, "wss://hub.example/connection/websocket", out.URL)
	claims, err := auth.NewTokenVerifier(testSecret, "aud", "iss").VerifyConnect(out.Token)
	require.NoError(t, err)
	require.Equal(t, auth.ConnectClaims{User: "n7", ExpireAt: out.ExpiresAt.Unix(), Channels: []string{"nodes:n7", "chunks:n7", "nodes:online"}}, claims)
	require.WithinDuration(t, clk.Now().Add(time.Minute), out.ExpiresAt, time.Second)
}

func TestServiceErrorsMapped(t *testing.T) {
	cases := []struct {
		err    error
		status int
		msg    string
	}{
		{scheduler.ErrLeaseLost, 409, "lease lost"},
		{scheduler.ErrNotOwner, 403, "Chunk not owned by this node"},
		{scheduler.ErrChunkNotFound, 404, "chunk not found"},
		{scheduler.ErrStopped, 503, "scheduler stopped"},
		{errs.New(errs.LimitExceeded, "too many jobs"), 429, "too many jobs"},
		{errors.New("disk on fire"), 500, "internal server error"},
	}
	for _, c := range cases {
		f := newFixture(t)
		f.svc.err = c.err
		r := f.signed("POST", "/chunks/complete", `{"chunkId":"c1","leaseId":"l1","result":{"iterations":1}}`)
		require.Equal(t, c.status, r.status, c.err)
		require.Equal(t, map[string]any{"error": c.msg}, r.body)
		if c.status == 503 {
			require.Equal(t, "1", r.header.Get("Retry-After"))
		}
	}
}

func TestErrorTableCoversEveryCode(t *testing.T) {
	for _, c := range errs.Codes {
		require.NotZero(t, domainStatus[c], "code %s has no status", c)
	}
}

func TestUserAuth(t *testing.T) {
	f := newFixture(t)
	r := f.user("GET", "/jobs", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"jobs": []any{}}, r.body)
	require.Equal(t, scheduler.Viewer{UserID: "alice"}, f.svc.viewers[0])

	r = f.user("GET", "/jobs?user=bob", "", "X-API-Key", testAPIKey)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, scheduler.Viewer{UserID: "bob"}, f.svc.viewers[1])
	r = f.user("GET", "/nodes", "", "Authorization", "apikey "+testAPIKey)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, scheduler.Viewer{Admin: true}, f.svc.viewers[2], "the API key alone acts as admin")

	for _, c := range []struct {
		creds []string
		msg   string
	}{
		{[]string{"X-Other", "x"}, errUnauthorized.Message},
		{[]string{"X-API-Key", "nope"}, "invalid API key"},
		{[]string{"Authorization", "Bearer not.a.jwt"}, "invalid token"},
	} {
		r := f.user("GET", "/jobs", "", c.creds...)
		require.Equal(t, 401, r.status)
		require.Equal(t, c.msg, r.body["error"])
	}
	expired, err := auth.SignConnect(testSecret, "alice", time.Second, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	r = f.user("GET", "/jobs", "", "Authorization", "Bearer "+expired)
	require.Equal(t, 401, r.status)
	require.Equal(t, "token expired", r.body["error"])

	r = f.user("GET", "/jobs?user=bob", "")
	require.Equal(t, 400, r.status, "a token holder cannot act as another user")
	require.Equal(t, "user: only requests with the API key may name a user", r.body["error"])
}

func TestCreateJob(t *testing.T) {
	f := newFixture(t)
	r := f.user("POST", "/jobs", `{"config":{"a":1},"iterations":2500,"accessType":"public","priority":3}`)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, map[string]any{"jobId": "j1", "chunks": 3.0, "configHash": "abc"}, r.body)
	require.Equal(t, []string{"alice"}, f.svc.owners)
	require.Equal(t, scheduler.JobSpec{Config: json.RawMessage(`{"a":1}`), Iterations: 2500, AccessType: scheduler.AccessPublic, Priority: 3}, f.svc.spec)

	r = f.user("POST", "/jobs", `{"config":{},"iterations":10,"user":"carol"}`, "X-API-Key", testAPIKey)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, "carol", f.svc.owners[1])

	bad := []struct{ body, msg string }{
		{`{"config":{},"iterations":1.5}`, "iterations: must be an integer, got number 1.5"},
		{`{"config":{},"iterations":"10"}`, "iterations: must be an integer, got string"},
		{`{"config":{},"iterations":10,"priority":true}`, "priority: must be an integer, got bool"},
		{`{"config":{},"iterations":10,"colour":"red"}`, `unknown field "colour"`},
		{`[1]`, "body: must be a JSON object"},
		{`{"config":{},"iterations":10} {}`, "body: unexpected data after the JSON object"},
		{`{"config":{`, "body: truncated JSON"},
	}
	for _, b := range bad {
		r := f.user("POST", "/jobs", b.body)
		require.Equal(t, 400, r.status, b.body)
		require.Equal(t, b.msg, r.body["error"], b.body)
	}
	r = f.user("POST", "/jobs", `{"config":{},"iterations":10}`, "X-API-Key", testAPIKey)
	require.Equal(t, 400, r.status)
	require.Equal(t, "user: required with the API key (the user the call is for)", r.body["error"])

	big := `{"config":"` + strings.Repeat("x", DefaultMaxBody) + `","iterations":1}`
	r = f.user("POST", "/jobs", big)
	require.Equal(t, 413, r.status)
	require.Equal(t, "body: larger than 1048576 bytes", r.body["error"])
}

func TestUserEndpoints(t *testing.T) {
	f := newFixture(t)
	r := f.user("GET", "/jobs/j9", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "j9", r.body["id"])
	r = f.user("POST", "/jobs/j9/cancel", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "cancelled", r.body["status"])
	r = f.user("POST", "/nodes/claim", `{"code":"mw3-am4","name":"box","maxParallel":2}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "alice", r.body["ownerId"])
	require.Equal(t, true, r.body["claimed"])
	r = f.user("POST", "/nodes/claim", `{"code":7}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "code: must be a string, got number", r.body["error"])
	r = f.user("POST", "/nodes/n1/permissions", `{"userId":"bob"}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, map[string]any{"success": true, "nodeId": "n1", "userId": "bob"}, r.body)
	r = f.user("GET", "/nodes", "")
	require.Equal(t, 200, r.status, r.body)
	require.Len(t, r.body["nodes"], 1)
	r = f.user("GET", "/jobs?status=sleeping", "")
	require.Equal(t, 400, r.status)
	require.Equal(t, "status: must be pending, running, completed, failed or cancelled", r.body["error"])
	r = f.user("GET", "/jobs?limt=3", "")
	require.Equal(t, 400, r.status)
	require.Equal(t, "limt: unknown query parameter", r.body["error"])

	f.svc.err = scheduler.ErrNotCancellable
	r = f.user("POST", "/jobs/j9/cancel", "{}")
	require.Equal(t, 409, r.status)
	require.Equal(t, "job not cancellable", r.body["error"])
}

func TestRoutingErrors(t *testing.T) {
	f := newFixture(t)
	r := f.user("DELETE", "/jobs", "")
	require.Equal(t, 405, r.status)
	require.Equal(t, "POST, GET", r.header.Get("Allow"))
	require.Equal(t, "method not allowed, use POST or GET", r.body["error"])
	r = f.signed("GET", "/nodes/register", "")
	require.Equal(t, 405, r.status)
	r = f.user("GET", "/jobs/j1/explode", "")
	require.Equal(t, 404, r.status)
	require.Equal(t, "no such endpoint: GET /jobs/j1/explode", r.body["error"])
}

// FuzzDecodeBody: any body decodes into each request type or fails with an
// Invalid error; a decoded value survives a JSON round trip.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{registerBody, `{"status":"idle"}`, `{"draining":true,"instance":"p1"}`, `{"chunkId":"c","leaseId":null,"result":{"iterations":1}}`,
		`{"chunkId":"c","error":{"message":"m","code":"c"},"retryable":true}`, `{"chunkId":"c","done":5}`,
		`{"config":{"a":[1,2]},"iterations":10,"accessType":"user","priority":-1,"user":"u"}`,
		`{"code":"ABC","name":"n","maxParallel":3}`, `{"userId":"u"}`, ``, `[]`, `{"a":1}`, `{"iterations":1e3}`, "{\"x\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	targets := []func() any{
		func() any { return &registerRequest{} }, func() any { return &heartbeatRequest{} }, func() any { return &completeRequest{} },
		func() any { return &failRequest{} }, func() any { return &progressRequest{} }, func() any { return &createJobRequest{} },
		func() any { return &claimRequest{} }, func() any { return &grantRequest{} }, func() any { return &userOnly{} },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, mk := range targets {
			v := mk()
			err := decodeBody(body, v)
			if err != nil {
				if errs.CodeOf(err) != errs.Invalid || errs.Find(err).Message == "" {
					t.Fatalf("%T: error %v is not Invalid", v, err)
				}
				continue
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T: re-encode: %v", v, err)
			}
			w := mk()
			if err := decodeBody(out, w); err != nil {
				t.Fatalf("%T: round trip of %s: %v", v, out, err)
			}
			again, _ := json.Marshal(w)
			if !bytes.Equal(out, again) {
				t.Fatalf("%T: %s != %s", v, out, again)
			}
		}
	})
}

func TestJobSubscription(t *testing.T) {
	f := newFixture(t)
	r := f.user("POST", "/jobs/j5/subscription", "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "jobs:j5", r.body["channel"])
	require.Equal(t, "2023-11-14T22:23:20Z", r.body["expiresAt"])
	require.NotEmpty(t, r.body["token"])
	require.Equal(t, []string{"job:j5"}, f.svc.calls, "visibility checked with the scheduler")

	r = f.user("POST", "/jobs/j5/subscription", "", "X-API-Key", testAPIKey)
	require.Equal(t, 400, r.status, "a subscription is for a user")
	f.svc.err = scheduler.ErrJobNotFound
	r = f.user("POST", "/jobs/j5/subscription", "")
	require.Equal(t, 404, r.status)
	require.Equal(t, "job not found", r.body["error"])
}

// FuzzNodeRequest: any headers, path and body sent to the node API get a
// JSON answer with a status of the table, and only a valid signature
// reaches the scheduler.
func FuzzNodeRequest(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	good := auth.SignNodeRequest(priv, testNow.Unix(), "POST", "/nodes/register", []byte(registerBody))
	f.Add(good.Key, good.Sig, good.Ts, "/nodes/register", []byte(registerBody))
	f.Add(good.Key, good.Sig, good.Ts, "/nodes/register", []byte(`{"hostname":1}`))
	f.Add("", "", "", "/chunks/complete", []byte(`{}`))
	f.Add(good.Key, "AAAA", "x", "/chunks/fail", []byte(`{"chunkId":"c"}`))
	f.Fuzz(func(t *testing.T, key, sig, ts, path string, body []byte) {
		svc := &fakeService{}
		clk := clocktest.New(testNow)
		h, err := New(Config{Service: svc, Tokens: auth.NewTokenVerifier(testSecret, "", ""), Signer: auth.NewTokenSigner(testSecret, "", ""), Clock: clk,
			Nodes: auth.NewNodeVerifier(auth.NodeVerifierConfig{Now: clk.Now})})
		if err != nil {
			t.Fatal(err)
		}
		routes := []string{"/nodes/register", "/nodes/heartbeat", "/chunks/complete", "/chunks/fail", "/chunks/progress"}
		p := routes[len(path)%len(routes)]
		req := httptest.NewRequest("POST", p, bytes.NewReader(body))
		req.Header.Set(auth.HeaderNodeKey, key)
		req.Header.Set(auth.HeaderNodeSig, sig)
		req.Header.Set(auth.HeaderNodeTs, ts)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%d: not JSON: %q", rec.Code, rec.Body.String())
		}
		switch rec.Code {
		case 200, 400, 401, 413:
		default:
			t.Fatalf("status %d: %v", rec.Code, out)
		}
		if rec.Code == 401 && len(svc.calls) > 0 {
			t.Fatal("a rejected request reached the scheduler")
		}
	})
}

// FuzzCompleteBody: the body of POST /chunks/complete and the chunk result
// decoder behind it; an aggregatable result satisfies the decoder's
// contract.
func FuzzCompleteBody(f *testing.F) {
	for _, s := range []string{
		`{"chunkId":"c","leaseId":"l","result":{"iterations":1000,"meanDps":5,"stdDps":1,"minDps":1,"maxDps":9}}`,
		`{"chunkId":"c","result":{"iterations":1.5,"meanDps":5,"stdDps":1,"minDps":1,"maxDps":9}}`,
		`{"chunkId":"c","result":[1,2,3]}`, `{"chunkId":"c","result":"text"}`,
		`{"chunkId":"c","result":{"iterations":1e400,"meanDps":5}}`, `{"chunkId":"c","result":{"iterations":3,"meanDps":9,"stdDps":-1,"minDps":1,"maxDps":2}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req completeRequest
		if decodeBody(body, &req) != nil || len(req.Result) == 0 {
			return
		}
		r, ok, err := scheduler.DecodeResult(req.Result)
		if err != nil || !ok {
			return
		}
		if r.Iterations < 1 || r.StdDps < 0 || r.MinDps > r.MeanDps || r.MeanDps > r.MaxDps {
			t.Fatalf("aggregatable result breaks the contract: %+v from %s", r, req.Result)
		}
	})
}

// POST /nodes/register is limited per client address (each can create a
// node row): 429 with Retry-After beyond the burst, a token back after
// 1/rate, other addresses and endpoints unaffected.
func TestNodeRegisterRateLimit(t *testing.T) {
	f := newFixture(t)
	h, err := New(Config{Service: f.svc, Tokens: auth.NewTokenVerifier(testSecret, "", ""), Signer: auth.NewTokenSigner(testSecret, "", ""),
		Nodes: auth.NewNodeVerifier(auth.NodeVerifierConfig{Now: f.clk.Now}), Clock: f.clk, RegisterRate: 0.5, RegisterBurst: 2})
	require.NoError(t, err)
	f.h = h
	for i := range 2 { // distinct bodies: the replay cache refuses a repeat
		require.Equal(t, 200, f.signed("POST", "/nodes/register", fmt.Sprintf(`{"totalCores":%d}`, i)).status)
	}
	r := f.signed("POST", "/nodes/register", `{"totalCores":3}`)
	require.Equal(t, 429, r.status, r.body)
	require.Equal(t, map[string]any{"error": "too many registrations from this address: retry in 2 s"}, r.body)
	require.Equal(t, "2", r.header.Get("Retry-After"))
	require.Len(t, f.svc.calls, 2, "refused before the Service")
	require.Equal(t, 200, f.signed("POST", "/nodes/verify", `{}`).status, "other endpoints are not limited")

	req := f.signedReq("POST", "/nodes/register", `{"totalCores":4}`, f.clk.Now().Unix())
	req.RemoteAddr = "198.51.100.7:4000"
	require.Equal(t, 200, f.do(req).status, "another address has its own bucket")

	f.clk.Advance(2 * time.Second)
	require.Equal(t, 200, f.signed("POST", "/nodes/register", `{"hostname":"h"}`).status)
	require.Equal(t, 429, f.signed("POST", "/nodes/register", `{"hostname":"h2"}`).status)
}
