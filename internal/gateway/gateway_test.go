package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	nodeWorker   = []string{"node", "../worker/testdata/testworker.js"}
	pythonWorker = []string{"python3", "../worker/testdata/testworker.py"}
)

const token = "s3cret"

type env struct {
	srv    *httptest.Server
	pool   *worker.Pool
	reg    *prometheus.Registry
	client *http.Client
}

func mustEnv(tb testing.TB, wc worker.Config, gc Config) *env {
	tb.Helper()
	if wc.Command == nil {
		wc.Command = nodeWorker
	}
	reg := prometheus.NewRegistry()
	wc.Registerer = reg
	pool, err := worker.New(wc)
	require.NoError(tb, err)
	if gc.Token == "" {
		gc.Token = token
	}
	if gc.Token == "-" {
		gc.Token = ""
	}
	h, err := New(gc, pool)
	require.NoError(tb, err)
	mux := http.NewServeMux()
	mux.Handle(h.BasePath()+"/", h)
	srv := httptest.NewServer(mux)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	e := &env{srv: srv, pool: pool, reg: reg, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	tb.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(tb, pool.Shutdown(ctx))
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   string
	err    error // the request did not complete
}

// do sends a request and fails tb unless it completes.
func (e *env) do(tb testing.TB, method, path, body string, hdr ...string) resp {
	tb.Helper()
	r := e.send(method, path, body, hdr...)
	require.NoError(tb, r.err)
	return r
}

// send is do for goroutines and conditions: it reports a failed request
// in resp.err instead of failing the test.
func (e *env) send(method, path, body string, hdr ...string) resp {
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return resp{err: err}
	}
	req.Header.Set("x-runner-token", token)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := e.client.Do(req)
	if err != nil {
		return resp{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b), err}
}

// pid returns the body of test.pid, polling while the worker boots (a
// cold Node start may exceed the short timeouts some tests use).
func (e *env) pid(tb testing.TB) string {
	tb.Helper()
	var r resp
	require.Eventually(tb, func() bool {
		r = e.send("POST", "/__runner/task/test.pid", "")
		return r.err == nil && r.status == 200
	}, testenv.Wait, testenv.Tick, "worker up")
	return r.body
}

func errBody(code, msg string) string {
	return fmt.Sprintf(`{"ok":false,"error":{"code":%q,"message":%q}}`, code, msg)
}

func TestTasksAndEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
	}{{"node", nodeWorker}, {"python", pythonWorker}} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEnv(t, worker.Config{Command: tc.cmd}, Config{})
			r := e.do(t, "POST", "/__runner/task/app.tasks.add", `{"input":{"a":5,"b":3}}`)
			require.Equal(t, 200, r.status)
			require.Equal(t, `{"ok":true,"result":8}`, r.body)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))

			r = e.do(t, "POST", "/__runner/task/app.tasks.add", `{"a":1,"b":2}`) // no "input" key
			require.Equal(t, `{"ok":true,"result":3}`, r.body)

			r = e.do(t, "POST", "/__runner/event/app.events.notify", `{"payload":{"m":"hi"}}`)
			require.Equal(t, 200, r.status)
			require.Equal(t, `{"ok":true}`, r.body)

			require.Eventually(t, func() bool { return e.pool.Discovery().Enabled }, testenv.Wait, testenv.Tick, "announcement")
			for _, m := range []string{"GET", "POST"} {
				r = e.do(t, m, "/__runner/discovery", "")
				require.Equal(t, 200, r.status)
				var d struct {
					OK     bool
					Result struct {
						AllowList struct {
							Enabled bool
							Tasks   []string
							Events  []string
						}
					}
				}
				require.NoError(t, json.Unmarshal([]byte(r.body), &d))
				require.True(t, d.OK)
				require.True(t, d.Result.AllowList.Enabled)
				require.Contains(t, d.Result.AllowList.Tasks, "app.tasks.add")
				require.Equal(t, []string{"app.events.notify"}, d.Result.AllowList.Events)
			}
		})
	}
}

func TestContextForwarded(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{})
	r := e.do(t, "POST", "/__runner/task/test.echo?q=1&q=2&z=x", `{"input":[1]}`, "X-Custom", "v")
	require.Equal(t, 200, r.status, r.body)
	var out struct {
		Result struct {
			Input   []int
			Context struct {
				Method, Path string
				Query        map[string]string
				Headers      map[string]string
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &out))
	c := out.Result.Context
	require.Equal(t, []int{1}, out.Result.Input)
	require.Equal(t, "POST", c.Method)
	require.Equal(t, "/__runner/task/test.echo", c.Path)
	require.Equal(t, map[string]string{"q": "1", "z": "x"}, c.Query)
	require.Equal(t, "v", c.Headers["x-custom"])
	require.NotContains(t, c.Headers, "x-runner-token")
	require.NotContains(t, r.body, token)
}

func TestErrorCodes(t *testing.T) {
	e := mustEnv(t, worker.Config{
		AllowTasks:  []string{"app.*", "test.*", "missing.task"},
		AllowEvents: []string{"app.events.notify"},
		Timeout:     300 * time.Millisecond,
	}, Config{MaxBody: 1024})
	e.pid(t)
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		want                     string
	}{
		{"no token", "POST", "/__runner/task/app.tasks.add", `{}`, []string{"x-runner-token", ""}, 401, errBody("UNAUTHORIZED", "missing or invalid token")},
		{"bad token", "POST", "/__runner/task/app.tasks.add", `{}`, []string{"x-runner-token", "s3cres"}, 401, errBody("UNAUTHORIZED", "missing or invalid token")},
		{"not exposed", "POST", "/__runner/task/other.task", `{}`, nil, 404, errBody("NOT_EXPOSED", "task not exposed")},
		{"event not exposed", "POST", "/__runner/event/app.tasks.add", `{}`, nil, 404, errBody("NOT_EXPOSED", "event not exposed")},
		{"not found", "POST", "/__runner/task/missing.task", `{}`, nil, 404, errBody("NOT_FOUND", `task "missing.task" not found`)},
		{"unknown route", "POST", "/__runner/nope", `{}`, nil, 404, errBody("NOT_FOUND", "no such route")},
		{"method", "GET", "/__runner/task/app.tasks.add", ``, nil, 405, errBody("METHOD_NOT_ALLOWED", "use POST")},
		{"discovery method", "PUT", "/__runner/discovery", ``, nil, 405, errBody("METHOD_NOT_ALLOWED", "use GET or POST")},
		{"invalid json", "POST", "/__runner/task/app.tasks.add", `{"input":`, nil, 400, errBody("INVALID_JSON", "body is not valid JSON")},
		{"invalid json scalar", "POST", "/__runner/task/app.tasks.add", `nope`, nil, 400, errBody("INVALID_JSON", "body is not valid JSON")},
		{"too large", "POST", "/__runner/task/app.tasks.add", `{"input":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, errBody("PAYLOAD_TOO_LARGE", "body exceeds 1024 bytes")},
		{"timeout", "POST", "/__runner/task/test.sleep", `{"input":{"ms":5000}}`, nil, 504, errBody("TIMEOUT", "worker did not answer in time")},
		{"handler error", "POST", "/__runner/task/test.fail", `{"input":{"message":"it broke","code":"MY_CODE"}}`, nil, 500, errBody("MY_CODE", "it broke")},
		{"handler error default code", "POST", "/__runner/task/test.fail", `{"input":{"message":"it broke"}}`, nil, 500, errBody("EXECUTION_ERROR", "it broke")},
		{"crash", "POST", "/__runner/task/test.crash", `{}`, nil, 502, errBody("WORKER_CRASHED", "worker unavailable")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, tt.body, tt.hdr...)
			require.Equal(t, tt.status, r.status, r.body)
			require.JSONEq(t, tt.want, r.body)
			if tt.status == 405 {
				require.NotEmpty(t, r.header.Get("Allow"))
			}
		})
	}
	// Chunked body over the limit (no Content-Length).
	req, err := http.NewRequest("POST", e.srv.URL+"/__runner/task/app.tasks.add", io.MultiReader(strings.NewReader(`{"input":"`), strings.NewReader(strings.Repeat("y", 3000)+`"}`)))
	require.NoError(t, err)
	req.Header.Set("x-runner-token", token)
	res, err := e.client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 413, res.StatusCode)
}

func TestOverloadedRetryAfter(t *testing.T) {
	e := mustEnv(t, worker.Config{MaxInFlight: 1, QueueSize: -1}, Config{})
	e.pid(t)
	done := make(chan resp, 1)
	go func() { done <- e.send("POST", "/__runner/task/test.sleep", `{"ms":2000}`) }()
	require.Eventually(t, func() bool {
		return metricGauge(t, e.reg, "switchboard_worker_in_flight") == 1
	}, testenv.Wait, testenv.Tick, "busy worker")
	r := e.do(t, "POST", "/__runner/task/app.tasks.add", `{"a":1,"b":1}`)
	require.Equal(t, 503, r.status)
	require.JSONEq(t, errBody("OVERLOADED", "all workers are busy"), r.body)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	r = <-done
	require.NoError(t, r.err)
	require.Equal(t, 200, r.status)
}

func TestNoTokenConfigured(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{Token: "-"})
	r := e.do(t, "POST", "/__runner/task/app.tasks.add", `{"a":1,"b":1}`, "x-runner-token", "")
	require.Equal(t, 200, r.status)
}

func TestCustomTokenHeaderAndBase(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{BasePath: "/rpc/", TokenHeader: "Authorization-Token"})
	r := e.do(t, "POST", "/rpc/task/app.tasks.add", `{"a":1,"b":1}`, "x-runner-token", "", "authorization-token", token)
	require.Equal(t, 200, r.status, r.body)
	r = e.do(t, "POST", "/rpc/task/test.echo", `{}`, "x-runner-token", "", "authorization-token", token)
	require.NotContains(t, r.body, token)
	r = e.do(t, "POST", "/rpc/task/app.tasks.add", `{}`, "authorization-token", "")
	require.Equal(t, 401, r.status)
}

func TestCORS(t *testing.T) {
	t.Run("any origin", func(t *testing.T) {
		e := mustEnv(t, worker.Config{}, Config{})
		r := e.do(t, "OPTIONS", "/__runner/task/app.tasks.add", "", "x-runner-token", "",
			"Origin", "https://app.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "content-type,x-runner-token")
		require.Equal(t, 204, r.status)
		require.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
		require.Equal(t, "POST, OPTIONS", r.header.Get("Access-Control-Allow-Methods"))
		require.Equal(t, "content-type,x-runner-token", r.header.Get("Access-Control-Allow-Headers"))
		r = e.do(t, "POST", "/__runner/task/app.tasks.add", `{"a":1,"b":1}`, "Origin", "https://app.example")
		require.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
		r = e.do(t, "POST", "/__runner/task/app.tasks.add", `{}`, "Origin", "https://app.example", "x-runner-token", "")
		require.Equal(t, 401, r.status)
		require.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
	})
	t.Run("listed origins", func(t *testing.T) {
		e := mustEnv(t, worker.Config{}, Config{Origins: origin.MustNew("https://good.example")})
		r := e.do(t, "OPTIONS", "/__runner/discovery", "", "x-runner-token", "",
			"Origin", "https://good.example", "Access-Control-Request-Headers", "x-runner-token")
		require.Equal(t, 204, r.status)
		require.Equal(t, "https://good.example", r.header.Get("Access-Control-Allow-Origin"))
		require.Equal(t, "GET, POST, OPTIONS", r.header.Get("Access-Control-Allow-Methods"))
		require.Contains(t, r.header.Values("Vary"), "Origin")
		r = e.do(t, "OPTIONS", "/__runner/task/x", "", "Origin", "https://evil.example")
		require.Equal(t, 204, r.status)
		require.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
		require.Empty(t, r.header.Get("Access-Control-Allow-Methods"))
		r = e.do(t, "POST", "/__runner/task/app.tasks.add", `{"a":1,"b":1}`, "Origin", "https://evil.example")
		require.Equal(t, 200, r.status)
		require.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	})
}

// TestCORSOriginPolicy: the gateway answers preflights by the shared
// origin policy: "*", a wildcard subdomain, an exact origin, an empty list.
func TestCORSOriginPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		origins map[string]string // Origin -> Access-Control-Allow-Origin ("" none)
	}{
		{"any", []string{"*"}, map[string]string{"https://a.example": "*", "null": "*"}},
		{"wildcard", []string{"https://*.example.com"}, map[string]string{
			"https://app.example.com": "https://app.example.com", "https://a.b.example.com": "https://a.b.example.com",
			"https://example.com": "", "http://app.example.com": "", "https://app.example.com.evil": ""}},
		{"exact", []string{"https://good.example"}, map[string]string{
			"https://good.example": "https://good.example", "https://evil.example": "", "http://good.example": ""}},
		{"empty", []string{}, map[string]string{"https://good.example": "", "SAME": "SAME"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := origin.New(tc.allowed)
			require.NoError(t, err)
			e := mustEnv(t, worker.Config{}, Config{Origins: c})
			same := e.srv.URL
			for o, want := range tc.origins {
				if o == "SAME" {
					o, want = same, same
				}
				r := e.do(t, "OPTIONS", "/__runner/task/app.tasks.add", "", "Origin", o, "Access-Control-Request-Method", "POST")
				require.Equal(t, 204, r.status)
				require.Equal(t, want, r.header.Get("Access-Control-Allow-Origin"), o)
				if want == "" {
					require.Empty(t, r.header.Get("Access-Control-Allow-Methods"), o)
				} else {
					require.Equal(t, "POST, OPTIONS", r.header.Get("Access-Control-Allow-Methods"), o)
				}
			}
		})
	}
}

func TestIDsWithSlashAndEncoding(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{})
	for _, p := range []string{"/__runner/task/app/tasks/slash", "/__runner/task/app%2Ftasks%2Fslash", "/__runner/task/app%2Ftasks/slash"} {
		r := e.do(t, "POST", p, `{}`)
		require.Equal(t, 200, r.status, p+" "+r.body)
		require.Contains(t, r.body, `"ok":true`)
	}
	r := e.do(t, "POST", "/__runner/task/app.tasks.%C3%A9%20%C3%BC", `{}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, `{"ok":true,"result":"unicode"}`, r.body)
}

func TestConcurrentRequests(t *testing.T) {
	e := mustEnv(t, worker.Config{Workers: 2, QueueTimeout: 20 * time.Second}, Config{})
	const n = 1000
	var wg sync.WaitGroup
	var bad atomic.Int32
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"input":{"a":%d,"b":%d}}`, i, i*1000)
			res, err := e.client.Post(e.srv.URL+"/__runner/task/app.tasks.add", "application/json", strings.NewReader(body))
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 401 { // no token: must be refused
				bad.Add(1)
			}
			req, _ := http.NewRequest("POST", e.srv.URL+"/__runner/task/app.tasks.add", strings.NewReader(body))
			req.Header.Set("x-runner-token", token)
			res, err = e.client.Do(req)
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ = io.ReadAll(res.Body)
			res.Body.Close()
			if want := fmt.Sprintf(`{"ok":true,"result":%d}`, i+i*1000); string(b) != want {
				t.Errorf("request %d: got %s, want %s", i, b, want)
				bad.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Zero(t, bad.Load())
}

func TestWorkerKilledMidRequest(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{})
	pid := e.pid(t)
	done := make(chan resp, 1)
	go func() { done <- e.send("POST", "/__runner/task/test.sleep", `{"ms":10000}`) }()
	require.Eventually(t, func() bool {
		return metricGauge(t, e.reg, "switchboard_worker_in_flight") == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	var out struct{ Result int }
	require.NoError(t, json.Unmarshal([]byte(pid), &out))
	require.Greater(t, out.Result, 1)
	require.NoError(t, syscall.Kill(out.Result, syscall.SIGKILL))
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, 502, r.status)
	require.JSONEq(t, errBody("WORKER_CRASHED", "worker unavailable"), r.body)
	require.NotContains(t, r.body, "pid") // details stay in logs
	require.Eventually(t, func() bool {
		r := e.send("POST", "/__runner/task/test.pid", "")
		return r.err == nil && r.status == 200 && r.body != pid
	}, testenv.Wait, testenv.Tick, "replacement")
}

func TestHangingWorker(t *testing.T) {
	e := mustEnv(t, worker.Config{Timeout: 150 * time.Millisecond, PingInterval: 200 * time.Millisecond}, Config{})
	pid := e.pid(t)
	r := e.do(t, "POST", "/__runner/task/test.hang", `{}`)
	require.Equal(t, 504, r.status)
	require.Eventually(t, func() bool {
		r := e.send("POST", "/__runner/task/test.pid", "")
		return r.err == nil && r.status == 200 && r.body != pid
	}, testenv.Wait, testenv.Tick, "replacement")
}

func TestGarbageWorker(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{})
	pid := e.pid(t)
	r := e.do(t, "POST", "/__runner/task/test.garbage", `{}`)
	require.Equal(t, 502, r.status)
	require.Eventually(t, func() bool {
		r := e.send("POST", "/__runner/task/test.pid", "")
		return r.err == nil && r.status == 200 && r.body != pid
	}, testenv.Wait, testenv.Tick, "replacement")
}

func TestWorkerNeverStarts(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	lw := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	e := mustEnv(t, worker.Config{Command: []string{"/nonexistent/worker-binary"}, Logger: slog.New(slog.NewTextHandler(lw, nil))}, Config{})
	mu.Lock()
	require.Contains(t, logs.String(), "worker command cannot start")
	mu.Unlock()
	r := e.do(t, "POST", "/__runner/task/app.tasks.add", `{}`)
	require.Equal(t, 502, r.status)
	require.JSONEq(t, errBody("WORKER_CRASHED", "worker unavailable"), r.body)
	r = e.do(t, "GET", "/__runner/discovery", "")
	require.Equal(t, 200, r.status)
	require.JSONEq(t, `{"ok":true,"result":{"allowList":{"enabled":false,"tasks":[],"events":[]}}}`, r.body)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestRecyclingUnderLoad(t *testing.T) {
	e := mustEnv(t, worker.Config{Workers: 2, MaxJobs: 50}, Config{})
	const n, conc = 1000, 32
	var wg sync.WaitGroup
	var bad atomic.Int32
	jobs := make(chan int)
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				r := e.send("POST", "/__runner/task/app.tasks.add", fmt.Sprintf(`{"a":%d,"b":1}`, i))
				if r.err != nil || r.status != 200 || r.body != fmt.Sprintf(`{"ok":true,"result":%d}`, i+1) {
					t.Errorf("request %d: %d %s %v", i, r.status, r.body, r.err)
					bad.Add(1)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	require.Zero(t, bad.Load())
	require.GreaterOrEqual(t, metricCounter(t, e.reg, "switchboard_worker_restarts_total", "max_jobs"), 15.0)
}

func metricGauge(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather() // called from Eventually conditions: no FailNow
	if !assert.NoError(tb, err) {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func metricCounter(tb testing.TB, reg *prometheus.Registry, name, reason string) float64 {
	mfs, err := reg.Gather() // called from Eventually conditions: no FailNow
	if !assert.NoError(tb, err) {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestShutdownAnswers503(t *testing.T) {
	e := mustEnv(t, worker.Config{}, Config{})
	e.pid(t)
	done := make(chan resp, 1)
	go func() { done <- e.send("POST", "/__runner/task/test.sleep", `{"ms":300}`) }()
	require.Eventually(t, func() bool {
		return metricGauge(t, e.reg, "switchboard_worker_in_flight") == 1
	}, testenv.Wait, testenv.Tick, "in flight")
	shut := make(chan error, 1)
	go func() { shut <- e.pool.Shutdown(context.Background()) }()
	var refused resp
	require.Eventually(t, func() bool {
		refused = e.send("POST", "/__runner/task/app.tasks.add", `{"a":1,"b":1}`)
		return refused.err == nil && refused.status == 503
	}, testenv.Wait, testenv.Tick, "new requests refused while draining")
	require.JSONEq(t, errBody("SHUTTING_DOWN", "shutting down"), refused.body)
	require.Equal(t, "1", refused.header.Get("Retry-After"))
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, 200, r.status, r.body) // drained, not cut
	require.NoError(t, <-shut)
}
