package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

const (
	testPassword = "let me in, please"
	testSecret   = "0123456789abcdef-console"
	hubSecret    = "hub-token-secret"
)

// t0 is in the future so that the tokens the fake clock signs are not
// expired by the wall clock the token verifier also checks.
var t0 = time.Date(2036, 12, 1, 12, 0, 0, 0, time.UTC)

// fakeHub records what the feed publishes.
type fakeHub struct {
	mu    sync.Mutex
	pubs  []published
	err   error
	nodes []hub.NodeInfo
}

type published struct {
	channel     string
	data        []byte
	skipHistory bool
}

func (h *fakeHub) Nodes() []hub.NodeInfo { return h.nodes }

func (h *fakeHub) ChannelOptions(ch string) (hub.ChannelOptions, error) {
	if !strings.HasPrefix(ch, "scheduler:") {
		return hub.ChannelOptions{}, hub.ErrUnknownChannel
	}
	return hub.ChannelOptions{HistorySize: 10, HistoryTTL: time.Minute}, nil
}

func (h *fakeHub) PublishWithOptions(_ context.Context, ch string, pub *hub.Publication, _ hub.ChannelOptions, skip bool) (hub.StreamPosition, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return hub.StreamPosition{}, h.err
	}
	h.pubs = append(h.pubs, published{ch, pub.Data, skip})
	return hub.StreamPosition{}, nil
}

func (h *fakeHub) published() []published {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]published(nil), h.pubs...)
}

// fakeScheduler answers the admin lists.
type fakeScheduler struct {
	jobs      []scheduler.Job
	nodes     []scheduler.Node
	cancelled []string
	query     scheduler.JobQuery
	viewer    scheduler.Viewer
}

func (s *fakeScheduler) Jobs(_ context.Context, v scheduler.Viewer, q scheduler.JobQuery) ([]scheduler.Job, error) {
	s.viewer, s.query = v, q
	return s.jobs, nil
}

func (s *fakeScheduler) Nodes(_ context.Context, v scheduler.Viewer) ([]scheduler.Node, error) {
	s.viewer = v
	return s.nodes, nil
}

func (s *fakeScheduler) CancelJob(_ context.Context, v scheduler.Viewer, id string) (scheduler.Job, error) {
	s.viewer = v
	for _, j := range s.jobs {
		if j.ID == id {
			if j.Status.Terminal() {
				return scheduler.Job{}, scheduler.ErrNotCancellable
			}
			s.cancelled = append(s.cancelled, id)
			j.Status = scheduler.JobCancelled
			return j, nil
		}
	}
	return scheduler.Job{}, scheduler.ErrJobNotFound
}

type fixture struct {
	c     *Console
	clock *clocktest.Fake
	hub   *fakeHub
	sched *fakeScheduler
	srv   *httptest.Server
}

func newFixture(t *testing.T, sched bool) *fixture {
	t.Helper()
	f := &fixture{clock: clocktest.New(t0), hub: &fakeHub{}}
	cfg := Config{Password: testPassword, Secret: testSecret, Signer: auth.NewTokenSigner(hubSecret, "", ""),
		Tokens: verifierAt(f.clock), Hub: f.hub, Clock: f.clock}
	if sched {
		f.sched = &fakeScheduler{}
		cfg.Scheduler = f.sched
	}
	c, err := New(cfg)
	require.NoError(t, err)
	f.c = c
	f.srv = httptest.NewServer(c)
	t.Cleanup(f.srv.Close)
	return f
}

// verifierAt verifies hub tokens against the fake clock's time.
type clockVerifier struct {
	v   *auth.TokenVerifier
	now func() time.Time
}

func verifierAt(c *clocktest.Fake) TokenVerifier {
	return clockVerifier{auth.NewTokenVerifier(hubSecret, "", ""), c.Now}
}

func (v clockVerifier) VerifyConnect(tok string) (auth.ConnectClaims, error) {
	c, err := v.v.VerifyConnect(tok)
	if err == nil && c.ExpireAt > 0 && v.now().Unix() >= c.ExpireAt {
		return auth.ConnectClaims{}, auth.ErrTokenExpired
	}
	return c, err
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t *testing.T, method, path, body string, cookies ...*http.Cookie) reply {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, r)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &out.body)
	return out
}

func sessionCookie(t *testing.T, r reply) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", CookieName, r.header)
	return nil
}

func (f *fixture) loginAdmin(t *testing.T) *http.Cookie {
	t.Helper()
	r := f.do(t, "POST", "/console/api/login", `{"password":"`+testPassword+`"}`)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	return sessionCookie(t, r)
}

func userToken(t *testing.T, user string, exp time.Time) string {
	t.Helper()
	c := auth.ConnectClaims{User: user}
	if !exp.IsZero() {
		c.ExpireAt = exp.Unix()
	}
	tok, err := auth.NewTokenSigner(hubSecret, "", "").SignConnect(c, t0)
	require.NoError(t, err)
	return tok
}

func TestNewValidates(t *testing.T) {
	ok := Config{Password: "p", Secret: testSecret, Signer: auth.NewTokenSigner("s", "", ""), Tokens: auth.NewTokenVerifier("s", "", ""), Hub: &fakeHub{}}
	_, err := New(ok)
	require.NoError(t, err)
	for name, mut := range map[string]func(*Config){
		"password": func(c *Config) { c.Password = "" },
		"secret":   func(c *Config) { c.Secret = "short" },
		"signer":   func(c *Config) { c.Signer = nil },
		"hub":      func(c *Config) { c.Hub = nil },
	} {
		c := ok
		mut(&c)
		_, err := New(c)
		require.Error(t, err, name)
	}
}

func TestAdminLoginAndSession(t *testing.T) {
	f := newFixture(t, true)
	r := f.do(t, "GET", "/console/api/session", "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, "not signed in", r.body["error"])

	r = f.do(t, "POST", "/console/api/login", `{"password":"`+testPassword+`"}`)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, "admin", r.body["role"])
	ck := sessionCookie(t, r)
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/console", ck.Path)
	require.Equal(t, int(DefaultSessionTTL/time.Second), ck.MaxAge)

	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, true, r.body["scheduler"])
	h := r.body["hub"].(map[string]any)
	require.True(t, strings.HasPrefix(h["url"].(string), "ws://127.0.0.1:"), h["url"])
	require.True(t, strings.HasSuffix(h["url"].(string), "/connection/websocket"))
	require.Equal(t, t0.Add(DefaultHubTokenTTL).Format(time.RFC3339), h["expiresAt"])
	claims, err := verifierAt(f.clock).VerifyConnect(h["token"].(string))
	require.NoError(t, err)
	require.Equal(t, AdminUser, claims.User)
	require.Equal(t, []string{JobsChannel, NodesChannel, FeedChannel}, claims.Channels)
	require.Nil(t, r.body["api"], "the administrator asks for API tokens per user")

	// The session ends with its TTL.
	f.clock.Advance(DefaultSessionTTL)
	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, http.StatusUnauthorized, r.status)

	// Sign-out clears the cookie.
	r = f.do(t, "POST", "/console/api/logout", "{}", ck)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, -1, sessionCookie(t, r).MaxAge)
}

func TestUserLogin(t *testing.T) {
	f := newFixture(t, true)
	r := f.do(t, "POST", "/console/api/login", `{"token":"`+userToken(t, "alice", t0.Add(time.Hour))+`"}`)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, "user", r.body["role"])
	require.Equal(t, "alice", r.body["user"])
	// The session ends with the token it signed in with.
	require.Equal(t, t0.Add(time.Hour).Format(time.RFC3339), r.body["expiresAt"])
	ck := sessionCookie(t, r)

	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	claims, err := verifierAt(f.clock).VerifyConnect(r.body["hub"].(map[string]any)["token"].(string))
	require.NoError(t, err)
	require.Equal(t, "alice", claims.User)
	require.Equal(t, []string{"scheduler:jobs#alice", "scheduler:nodes#alice"}, claims.Channels)
	api, err := verifierAt(f.clock).VerifyConnect(r.body["api"].(map[string]any)["token"].(string))
	require.NoError(t, err)
	require.Equal(t, auth.ConnectClaims{User: "alice", ExpireAt: t0.Add(DefaultHubTokenTTL).Unix()}, api)

	// A user signs tokens for itself only and lists nothing of the admin.
	r = f.do(t, "POST", "/console/api/token", `{"user":"bob"}`, ck)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, "user: a user session signs tokens for itself only", r.body["error"])
	r = f.do(t, "POST", "/console/api/token", `{}`, ck)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "alice", r.body["user"])
	r = f.do(t, "GET", "/console/api/jobs", "", ck)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, "administrator only", r.body["error"])

	// Near the token's end, hub tokens do not outlive the session.
	f.clock.Advance(55 * time.Minute)
	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, t0.Add(time.Hour).Format(time.RFC3339), r.body["hub"].(map[string]any)["expiresAt"])
	f.clock.Advance(5 * time.Minute)
	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, http.StatusUnauthorized, r.status)
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t, true)
	noSub, err := auth.NewTokenSigner(hubSecret, "", "").SignConnect(auth.ConnectClaims{}, t0)
	require.NoError(t, err)
	wrongKey, err := auth.NewTokenSigner("other", "", "").SignConnect(auth.ConnectClaims{User: "x"}, t0)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"wrong password", `{"password":"nope"}`, 401, "wrong password"},
		{"expired token", `{"token":"` + userToken(t, "alice", t0.Add(-time.Second)) + `"}`, 401, "token expired"},
		{"wrong key", `{"token":"` + wrongKey + `"}`, 401, "invalid token"},
		{"garbage token", `{"token":"abc"}`, 401, "invalid token"},
		{"no sub", `{"token":"` + noSub + `"}`, 401, "the token names no user (sub claim)"},
		{"both", `{"password":"a","token":"b"}`, 400, "give password or token, not both"},
		{"neither", `{}`, 400, "give password or token"},
		{"unknown field", `{"pass":"x"}`, 400, `bad JSON: json: unknown field "pass"`},
		{"wrong type", `{"password":1}`, 400, "password: expected string"},
		{"trailing", `{"password":"x"} {}`, 400, "bad JSON: data after the object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.c.limit = newLimiter(100, time.Minute, 10)
			r := f.do(t, "POST", "/console/api/login", tc.body)
			require.Equal(t, tc.status, r.status, r.raw)
			require.Equal(t, tc.msg, r.body["error"])
			require.Empty(t, r.header.Values("Set-Cookie"))
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t, false)
	for i := 0; i < DefaultLoginFailures; i++ {
		r := f.do(t, "POST", "/console/api/login", `{"password":"guess"}`)
		require.Equal(t, http.StatusUnauthorized, r.status)
	}
	// Locked out, also with the right password, until the window ends.
	r := f.do(t, "POST", "/console/api/login", `{"password":"`+testPassword+`"}`)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "60", r.header.Get("Retry-After"))
	require.Equal(t, "too many failed sign-ins from this address; try again in 60 s", r.body["error"])
	f.clock.Advance(DefaultLoginWindow)
	f.loginAdmin(t)
}

func TestLimiterBoundsAddresses(t *testing.T) {
	l := newLimiter(2, time.Minute, 2)
	l.fail("a", t0)
	l.fail("b", t0)
	// A third address shares a bucket instead of growing the map.
	l.fail("c", t0)
	l.fail("d", t0)
	require.LessOrEqual(t, len(l.hits), 3)
	require.Positive(t, l.retryAfter("e", t0))
	require.Zero(t, l.retryAfter("a", t0))
	// Expired windows make room again.
	require.Zero(t, l.retryAfter("e", t0.Add(time.Minute)))
	l.fail("e", t0.Add(time.Minute))
	_, own := l.hits["e"]
	require.True(t, own)
}

func TestAPIErrors(t *testing.T) {
	f := newFixture(t, true)
	ck := f.loginAdmin(t)
	r := f.do(t, "GET", "/console/api/nope", "", ck)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, `no console API "nope"`, r.body["error"])
	r = f.do(t, "GET", "/console/api/login", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "POST", r.header.Get("Allow"))

	req, _ := http.NewRequest("POST", f.srv.URL+"/console/api/login", strings.NewReader(`password=x`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)

	r = f.do(t, "POST", "/console/api/login", `{"token":"`+strings.Repeat("a", maxLoginBody)+`"}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	require.Equal(t, "request body too large", r.body["error"])

	req, _ = http.NewRequest("POST", f.srv.URL+"/console/api/login", strings.NewReader(`{"password":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// A tampered cookie is no session.
	bad := *ck
	bad.Value = "x" + bad.Value[1:]
	r = f.do(t, "GET", "/console/api/session", "", &bad)
	require.Equal(t, http.StatusUnauthorized, r.status)

	r = f.do(t, "POST", "/console/api/token", `{}`, ck)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "user: required", r.body["error"])
	r = f.do(t, "POST", "/console/api/token", `{"user":"`+strings.Repeat("u", 256)+`"}`, ck)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "user: longer than 255 bytes", r.body["error"])
	r = f.do(t, "GET", "/console/api/jobs?status=lost", "", ck)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "status: must be pending, running, completed, failed or cancelled", r.body["error"])
	r = f.do(t, "GET", "/console/api/jobs?color=red", "", ck)
	require.Equal(t, "color: unknown query parameter", r.body["error"])
	r = f.do(t, "GET", "/console/other", "", ck)
	require.Equal(t, http.StatusNotFound, r.status)
}

func TestAdminSchedulerViews(t *testing.T) {
	f := newFixture(t, true)
	ck := f.loginAdmin(t)
	f.sched.jobs = []scheduler.Job{{ID: "j1", OwnerID: "alice", Status: scheduler.JobRunning, Iterations: 2000, IterationsDone: 1000}, {ID: "j2", OwnerID: "bob", Status: scheduler.JobCompleted}}
	f.sched.nodes = []scheduler.Node{{ID: "n1", OwnerID: "alice", Name: "box", TotalCores: 4, MaxParallel: 2}}

	r := f.do(t, "GET", "/console/api/jobs?status=running&limit=5", "", ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, scheduler.Viewer{UserID: AdminUser, Admin: true}, f.sched.viewer)
	require.Equal(t, scheduler.JobQuery{Status: scheduler.JobRunning, Limit: 5}, f.sched.query)
	jobs := r.body["jobs"].([]any)
	require.Len(t, jobs, 2)
	require.Equal(t, 0.5, jobs[0].(map[string]any)["progress"])

	r = f.do(t, "GET", "/console/api/nodes", "", ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	n := r.body["nodes"].([]any)[0].(map[string]any)
	require.Equal(t, "alice", n["ownerId"])
	require.EqualValues(t, 2, n["capacity"])

	r = f.do(t, "POST", "/console/api/cancel", `{"jobId":"j1"}`, ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, "cancelled", r.body["status"])
	r = f.do(t, "POST", "/console/api/cancel", `{"jobId":"j2"}`, ck)
	require.Equal(t, http.StatusConflict, r.status, r.raw)
	r = f.do(t, "POST", "/console/api/cancel", `{"jobId":"zz"}`, ck)
	require.Equal(t, http.StatusNotFound, r.status, r.raw)
	r = f.do(t, "POST", "/console/api/cancel", `{}`, ck)
	require.Equal(t, "jobId: required", r.body["error"])

	// The administrator signs API tokens for any user.
	r = f.do(t, "POST", "/console/api/token", `{"user":"carol"}`, ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	c, err := verifierAt(f.clock).VerifyConnect(r.body["token"].(string))
	require.NoError(t, err)
	require.Equal(t, "carol", c.User)
	require.Empty(t, c.Channels)
}

func TestNoScheduler(t *testing.T) {
	f := newFixture(t, false)
	ck := f.loginAdmin(t)
	r := f.do(t, "GET", "/console/api/jobs", "", ck)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "the scheduler is not enabled (scheduler.enabled)", r.body["error"])
	r = f.do(t, "GET", "/console/api/session", "", ck)
	require.Equal(t, false, r.body["scheduler"])
	claims, err := verifierAt(f.clock).VerifyConnect(r.body["hub"].(map[string]any)["token"].(string))
	require.NoError(t, err)
	require.Equal(t, []string{FeedChannel}, claims.Channels)

	// The page reads the hub figures at once when it connects.
	f.hub.nodes = []hub.NodeInfo{{ID: "a", NumClients: 3}, {ID: "b", NumClients: 1}}
	r = f.do(t, "GET", "/console/api/hub", "", ck)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.EqualValues(t, 4, r.body["connections"])
	require.Len(t, r.body["nodes"], 2)
	user := f.do(t, "POST", "/console/api/login", `{"token":"`+userToken(t, "alice", time.Time{})+`"}`)
	r = f.do(t, "GET", "/console/api/hub", "", sessionCookie(t, user))
	require.Equal(t, http.StatusForbidden, r.status)
}

func TestPageAndAssets(t *testing.T) {
	f := newFixture(t, false)
	for _, p := range []string{"/console", "/console/"} {
		r := f.do(t, "GET", p, "")
		require.Equal(t, http.StatusOK, r.status)
		require.Contains(t, r.raw, `<script src="/console/assets/hub.js" defer></script>`)
		require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
		require.Contains(t, r.header.Get("Content-Security-Policy"), "script-src 'self'")
		require.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
	}
	for file, ct := range map[string]string{"hub.js": "text/javascript", "console.js": "text/javascript", "console.css": "text/css"} {
		r := f.do(t, "GET", "/console/assets/"+file, "")
		require.Equal(t, http.StatusOK, r.status, file)
		require.True(t, strings.HasPrefix(r.header.Get("Content-Type"), ct), "%s: %s", file, r.header.Get("Content-Type"))
	}
	// Nothing is loaded from elsewhere.
	for _, file := range []string{"index.html", "hub.js", "console.js", "console.css"} {
		b, err := assets.ReadFile("assets/" + file)
		require.NoError(t, err)
		require.NotContains(t, string(b), "https://", file)
		require.NotContains(t, string(b), "http://", file)
	}
	r := f.do(t, "GET", "/console/assets/missing.js", "")
	require.Equal(t, http.StatusNotFound, r.status)
	r = f.do(t, "POST", "/console/", "x")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
}

func TestFeedPublishesHubFigures(t *testing.T) {
	f := newFixture(t, false)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f.hub.nodes = []hub.NodeInfo{
		{ID: "a", Name: "one", Version: "v1", NumClients: 3, NumUsers: 2, NumChannels: 5, NumSubs: 7, Uptime: 90 * time.Second},
		{ID: "b", Name: "two", NumClients: 1, NumUsers: 1, NumChannels: 2, NumSubs: 2},
	}
	f.c.Start()
	f.c.Start() // once only
	require.Empty(t, f.hub.published())
	f.clock.Advance(DefaultFeedInterval)
	pubs := f.hub.published()
	require.Len(t, pubs, 1)
	require.Equal(t, FeedChannel, pubs[0].channel)
	require.True(t, pubs[0].skipHistory, "only the latest figures matter")
	require.JSONEq(t, `{"type":"hub","payload":{"connections":4,"channels":7,"users":3,"subs":9,"time":"2036-12-01T12:00:02Z",
		"nodes":[{"id":"a","name":"one","version":"v1","connections":3,"users":2,"channels":5,"subs":7,"uptimeSeconds":90},
		{"id":"b","name":"two","connections":1,"users":1,"channels":2,"subs":2,"uptimeSeconds":0}]}}`, string(pubs[0].data))

	// A failed publish is retried at the next tick.
	f.hub.mu.Lock()
	f.hub.err = errors.New("broker down")
	f.hub.mu.Unlock()
	f.clock.Advance(DefaultFeedInterval)
	f.hub.mu.Lock()
	f.hub.err = nil
	f.hub.mu.Unlock()
	f.clock.Advance(DefaultFeedInterval)
	require.Len(t, f.hub.published(), 2)

	require.NoError(t, f.c.Shutdown(context.Background()))
	require.NoError(t, f.c.Shutdown(context.Background()))
	f.clock.Advance(10 * DefaultFeedInterval)
	require.Len(t, f.hub.published(), 2, "no figures after Shutdown")
	require.Zero(t, f.clock.Pending())
}

func TestErrorTable(t *testing.T) {
	for _, c := range errs.Codes {
		_, ok := statusOf[c]
		require.True(t, ok, "no HTTP status for %s", c)
	}
	st, msg, internal := status(errors.New("secret detail"))
	require.Equal(t, http.StatusInternalServerError, st)
	require.Equal(t, "internal server error", msg)
	require.True(t, internal)
}
