package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

const (
	testAdminPassword = "correct horse battery staple"
	testAdminSecret   = "console-session-secret-0123456789"
)

func consoleConfig() config.Config {
	cfg := testConfig()
	cfg.Admin.Enabled, cfg.Admin.Password, cfg.Admin.Secret = true, testAdminPassword, testAdminSecret
	return cfg
}

// The administrator signs in (a wrong password first shows the error),
// and the hub figures update live: a second client's connection appears
// without a reload.
func TestConsoleAdminHubFigures(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	m := startServer(t, consoleConfig())

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(m.URL()+"/console"),
		chromedp.WaitVisible("#login-admin"),
		chromedp.SendKeys("#password", "not the password"),
		chromedp.Click("#login-admin-submit"),
		chromedp.WaitVisible("#login-error"),
	))
	require.Equal(t, "wrong password", text(t, ctx, "#login-error"))
	screenshot(t, ctx, "login-error.png")

	require.NoError(t, chromedp.Do(ctx,
		fill("#password", testAdminPassword),
		chromedp.Click("#login-admin-submit"),
		chromedp.WaitVisible("#hub-panel"),
		chromedp.WaitVisible(`#conn[data-state="connected"]`),
	))
	waitJS(t, ctx, `document.getElementById("hub-connections").textContent === "1"`)

	gc := newGoClient(t, m, "bob", false, token(t, "bob", time.Hour))
	require.NoError(t, gc.Connect())
	waitJS(t, ctx, `document.getElementById("hub-connections").textContent === "2"`)
	n, err := strconv.Atoi(text(t, ctx, "#hub-cluster"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	screenshot(t, ctx, "hub.png")
}

// consoleNode is a compute node of the console tests: the signed fake node
// of the scheduler tests plus a hub connection that collects its chunks.
type consoleNode struct {
	*fakeNode
	id, code string
	chunks   chan map[string]any
}

func registerConsoleNode(t *testing.T, m *Main, seed byte, host string) *consoleNode {
	t.Helper()
	n := &consoleNode{fakeNode: newFakeNode(t, m, seed), chunks: make(chan map[string]any, 64)}
	st, reg := n.call("POST", "/nodes/register", `{"hostname":"`+host+`","totalCores":4,"enabledCores":4,"platform":"linux-x86_64","version":"0.1.0"}`)
	require.Equal(t, 200, st, reg)
	n.id, n.code = reg["id"].(string), reg["claimCode"].(string)
	return n
}

// connect fetches the node's hub token and connects; chunks arrive on
// n.chunks.
func (n *consoleNode) connect(t *testing.T) {
	t.Helper()
	st, tok := n.call("POST", "/nodes/token", "")
	require.Equal(t, 200, st, tok)
	c := centrifuge.NewJsonClient(tok["url"].(string), centrifuge.Config{Token: tok["token"].(string)})
	t.Cleanup(c.Close)
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) {
		if e.Channel != "chunks:"+n.id {
			return
		}
		var a map[string]any
		if json.Unmarshal(e.Data, &a) == nil {
			n.chunks <- a
		}
	})
	require.NoError(t, c.Connect())
}

func (n *consoleNode) nextChunk(t *testing.T) map[string]any {
	t.Helper()
	return receive(t, n.chunks, "a chunk on chunks:"+n.id)
}

// complete reports a chunk's result: a mean of 100 + seedOffset/1000.
func (n *consoleNode) complete(t *testing.T, a map[string]any) {
	t.Helper()
	mean := 100 + a["seedOffset"].(float64)/1000
	body := fmt.Sprintf(`{"chunkId":%q,"leaseId":%q,"result":{"iterations":%v,"meanDps":%v,"stdDps":5,"minDps":%v,"maxDps":%v}}`,
		a["id"], a["leaseId"], a["iterations"], mean, mean-20, mean+20)
	st, out := n.call("POST", "/chunks/complete", body)
	require.Equal(t, 200, st, out)
}

// signIn signs the page in with the administrator's password or a token
// and waits until the hub connection is live.
func signIn(t *testing.T, ctx context.Context, m *Main, password, tok string) {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(m.URL() + "/console"), chromedp.WaitVisible("#login")}
	if password != "" {
		steps = append(steps, fill("#password", password), chromedp.Click("#login-admin-submit"))
	} else {
		steps = append(steps, fill("#token", tok), chromedp.Click("#login-user-submit"))
	}
	steps = append(steps, chromedp.WaitVisible("#app"), chromedp.WaitVisible(`#conn[data-state="connected"]`))
	require.NoError(t, chromedp.Do(ctx, steps...))
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.Click("#logout"), chromedp.WaitVisible("#login")))
}

// submitJob submits the job form with iterations and returns the
// confirmation it shows.
func submitJob(t *testing.T, ctx context.Context, iterations int) string {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, fill("#job-iterations", strconv.Itoa(iterations)),
		js(`const e = document.getElementById("job-ok"); e.hidden = true; e.textContent = ""`),
		chromedp.Click("#job-submit")))
	waitJS(t, ctx, `document.getElementById("job-ok").textContent.startsWith("Created job")`)
	return text(t, ctx, "#job-ok")
}

func rowCount(t *testing.T, ctx context.Context, tbody string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#`+tbody+` tr").length`))
	require.NoError(t, err)
	return n
}

// The whole console against the real scheduler: the administrator sees a
// node appear as it registers, claims it for alice from the form, sees it
// come online, creates a job from the form and watches its progress bar
// move and its result arrive as the node completes chunks, then cancels a
// second job: all live, without a reload. Alice, signed in with her token,
// sees her node and jobs; bob sees none of them.
func TestConsoleSchedulerLive(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	cfg := schedulerConfig(t)
	cfg.Admin = consoleConfig().Admin
	m := startServer(t, cfg)

	signIn(t, ctx, m, testAdminPassword, "")
	node := registerConsoleNode(t, m, 7, "worker-1")
	row := "#node-" + node.id
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(row)))
	require.Equal(t, "unclaimed", text(t, ctx, row+" td.owner"))

	// Claim it for alice, one chunk at a time.
	require.NoError(t, chromedp.Do(ctx,
		fill("#claim-code", node.code), fill("#claim-name", "alice-box"), fill("#claim-parallel", "1"), fill("#claim-owner", "alice"),
		chromedp.Click("#claim-submit"),
		chromedp.WaitVisible("#claim-ok"),
	))
	waitJS(t, ctx, `document.querySelector("#node-`+node.id+` td.owner").textContent === "alice"`)
	require.Contains(t, text(t, ctx, row+" td.name"), "alice-box")

	node.connect(t)
	waitJS(t, ctx, `document.querySelector("#node-`+node.id+`").dataset.online === "true"`)

	// A 3,000-iteration job: three chunks, one at a time on this node.
	require.NoError(t, chromedp.Do(ctx, fill("#job-owner", "alice"), fill("#job-config", `{"seed": 7, "spell": "fireball"}`)))
	created := submitJob(t, ctx, 3000)
	require.Regexp(t, `^Created job \S+ \(3 chunks\)$`, created)
	jobID := strings.Fields(created)[2]
	jobRow := "#job-" + jobID
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(jobRow)))
	require.Equal(t, "alice", text(t, ctx, jobRow+" td.owner"))

	progress := func(min float64) {
		t.Helper()
		waitJS(t, ctx, fmt.Sprintf(`Number(document.querySelector("%s td.progress").dataset.progress) >= %v`, jobRow, min))
	}
	node.complete(t, node.nextChunk(t))
	progress(1.0 / 3)
	require.Equal(t, "running", text(t, ctx, jobRow+" .status"))
	require.Equal(t, "33%", text(t, ctx, jobRow+" .pct"))
	screenshot(t, ctx, "running.png")

	node.complete(t, node.nextChunk(t))
	progress(2.0 / 3)
	node.complete(t, node.nextChunk(t))
	waitJS(t, ctx, `document.querySelector("`+jobRow+`").dataset.status === "completed"`)
	require.Equal(t, "100%", text(t, ctx, jobRow+" .pct"))
	// Iteration-weighted mean of 100, 101 and 102; the pooled deviation of
	// three chunks of stdDps 5 whose means differ is a little above 5.
	require.Regexp(t, `^mean 101\.00 ± 5\.0\d dps$`, text(t, ctx, jobRow+" .mean"))
	require.Contains(t, text(t, ctx, jobRow+" td.result .sub"), "3000 it · 3 chunks")
	require.Equal(t, 0, rowCount(t, ctx, jobRow[1:]+" button.cancel"), "no cancel for a finished job")

	// A second job, cancelled from its row while the node holds a chunk.
	second := strings.Fields(submitJob(t, ctx, 2000))[2]
	require.NotEqual(t, jobID, second)
	node.nextChunk(t)
	// Clicked in one evaluation: the live row may be rebuilt between
	// finding the button and clicking it.
	cancel := "#job-" + second + " button.cancel"
	waitJS(t, ctx, `document.querySelector(`+jsString(cancel)+`) !== null`)
	require.NoError(t, chromedp.Do(ctx, js(`document.querySelector(`+jsString(cancel)+`).click()`)))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#job-`+second+`").dataset.status === "cancelled"`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("job not cancelled: %v; banner %q; row %q", err, text(t, ctx, "#banner"), text(t, ctx, "#job-"+second))
	}
	// The hub feed counts the page and the node.
	waitJS(t, ctx, `document.getElementById("hub-connections").textContent === "2"`)
	screenshot(t, ctx, "admin.png")

	// An API error is shown by the form: iterations must be positive.
	require.NoError(t, chromedp.Do(ctx, fill("#job-iterations", "-5"), chromedp.Click("#job-submit"),
		chromedp.WaitVisible("#job-error")))
	require.Regexp(t, `^POST /jobs: 400 iterations: must be .*positive`, text(t, ctx, "#job-error"))
	require.NoError(t, chromedp.Do(ctx, fill("#claim-code", "ZZZZZZ"), chromedp.Click("#claim-submit"),
		chromedp.WaitVisible("#claim-error")))
	require.Contains(t, text(t, ctx, "#claim-error"), "POST /nodes/claim: 404")
	signOut(t, ctx)

	// Alice sees her node and both jobs; the hub panel is the admin's.
	signIn(t, ctx, m, "", token(t, "alice", time.Hour))
	require.Equal(t, "user alice", text(t, ctx, "#who"))
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(row), chromedp.WaitVisible(jobRow)))
	require.Equal(t, 1, rowCount(t, ctx, "nodes"))
	require.Equal(t, 2, rowCount(t, ctx, "jobs"))
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("hub-panel").hidden`))
	require.NoError(t, err)
	require.True(t, hidden)
	screenshot(t, ctx, "user.png")
	signOut(t, ctx)

	// Bob sees nothing of alice's; a job he creates is his alone, live.
	signIn(t, ctx, m, "", token(t, "bob", time.Hour))
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible("#nodes-empty"), chromedp.WaitVisible("#jobs-empty")))
	require.Equal(t, 0, rowCount(t, ctx, "nodes"))
	require.Equal(t, 0, rowCount(t, ctx, "jobs"))
	submitJob(t, ctx, 1000)
	waitJS(t, ctx, `document.querySelectorAll("#jobs tr").length === 1`)
	require.Equal(t, "bob", text(t, ctx, "#jobs td.owner"))
}

// The page reconnects when the server asks it to (a reconnect code), reloads
// its lists and stays live; a terminal code stops it with a clear message.
func TestConsoleReconnects(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	cfg := schedulerConfig(t)
	cfg.Admin = consoleConfig().Admin
	m := startServer(t, cfg)
	signIn(t, ctx, m, testAdminPassword, "")
	waitJS(t, ctx, `document.getElementById("conn").dataset.connects === "1"`)

	st, out := apiCall(t, m, "disconnect", map[string]any{"user": "admin", "disconnect": map[string]any{"code": 3011, "reason": "force reconnect"}})
	require.Equal(t, 200, st, out)
	waitJS(t, ctx, `document.getElementById("conn").dataset.connects === "2"`)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(`#conn[data-state="connected"]`)))
	node := registerConsoleNode(t, m, 9, "after-reconnect")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible("#node-"+node.id)))

	// Offline for a while: what the feeds publish meanwhile is recovered
	// from their history when the page is back.
	require.NoError(t, chromedp.Do(ctx, offline(true)))
	st, out = apiCall(t, m, "disconnect", map[string]any{"user": "admin", "disconnect": map[string]any{"code": 3011, "reason": "force reconnect"}})
	require.Equal(t, 200, st, out)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(`#conn[data-state="disconnected"]`)))
	missed := registerConsoleNode(t, m, 10, "while-offline")
	require.NoError(t, chromedp.Do(ctx, offline(false)))
	waitJS(t, ctx, `document.getElementById("conn").dataset.connects === "3"`)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible("#node-"+missed.id)))
	require.Equal(t, "1", attr(t, ctx, "#conn", "recovered"), "the node's registration, from scheduler:nodes history")

	st, out = apiCall(t, m, "disconnect", map[string]any{"user": "admin"})
	require.Equal(t, 200, st, out)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(`#conn[data-state="stopped"]`), chromedp.WaitVisible("#banner")))
	require.Contains(t, text(t, ctx, "#banner"), "The hub closed the connection for good: force disconnect (3503)")
}

// The page refreshes its short-lived hub token on the open connection: with
// 10 s tokens and a 1 s grace, a connection that did not refresh would be
// closed after 11 s; this one stays up.
func TestConsoleRefreshesToken(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	cfg := consoleConfig()
	cfg.Admin.TokenTTL = config.Duration(10 * time.Second)
	cfg.Client.ExpiredCloseDelay = config.Duration(time.Second)
	m := startServer(t, cfg)
	signIn(t, ctx, m, testAdminPassword, "")
	start := time.Now()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number(document.getElementById("conn").dataset.refreshes || 0) >= 12`,
		chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err)
	require.Greater(t, time.Since(start), 11*time.Second, "past the first token's expiry and grace")
	require.Equal(t, "1", attr(t, ctx, "#conn", "connects"), "never reconnected")
	require.Equal(t, "connected", attr(t, ctx, "#conn", "state"))
}

func TestConsoleNamespace(t *testing.T) {
	cfg := consoleConfig()
	ns := cfg.Channel.HubNamespaces()
	require.NoError(t, addConsoleNamespace(cfg, &ns))
	require.Equal(t, hub.ChannelOptions{}, ns.Named["scheduler"], "no history, no client permissions")

	cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, config.Namespace{Name: "scheduler",
		NamespaceOptions: config.NamespaceOptions{AllowSubscribeForClient: true}})
	ns = cfg.Channel.HubNamespaces()
	err := addConsoleNamespace(cfg, &ns)
	require.ErrorContains(t, err, "channel.namespaces scheduler: must not let clients subscribe")
	require.Equal(t, 2, exitStatus(err))

	off := testConfig()
	ns = off.Channel.HubNamespaces()
	require.NoError(t, addConsoleNamespace(off, &ns))
	require.NotContains(t, ns.Named, "scheduler")
}

// The console's pages and API are served only with admin.enabled.
func TestConsoleOff(t *testing.T) {
	m := startServer(t, testConfig())
	resp, err := http.Get(m.URL() + "/console")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// The page drops feed updates older than the row it shows (rowVersion):
// out-of-order node and job events injected through its feed entry point.
func TestConsoleDropsStaleFeedUpdates(t *testing.T) {
	ctx := newBrowser(t, 2*time.Minute)
	cfg := schedulerConfig(t)
	cfg.Admin = consoleConfig().Admin
	m := startServer(t, cfg)
	signIn(t, ctx, m, testAdminPassword, "")
	node := registerConsoleNode(t, m, 9, "worker-9")
	row := "#node-" + node.id
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(row)))

	push := func(kind, payload string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.switchboardConsole.onPublication("scheduler:`+kind+`s", {type: "`+kind+`", payload: `+payload+`})`))
		require.NoError(t, err)
		return ok
	}
	nodeJSON := func(name string, version int) string {
		return fmt.Sprintf(`{"id": %q, "name": %q, "hostname": "worker-9", "totalCores": 4, "capacity": 4, "running": 0, "online": false, "status": "idle",
			"createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00.000Z", "rowVersion": %d}`, node.id, name, version)
	}
	require.False(t, push("node", nodeJSON("older", 0)), "rowVersion 0 is older than the registered row's 1")
	require.NotContains(t, text(t, ctx, row+" td.name"), "older")
	require.True(t, push("node", nodeJSON("newer", 50)))
	waitJS(t, ctx, `document.querySelector("`+row+` td.name").textContent.includes("newer")`)
	require.False(t, push("node", nodeJSON("late", 49)))
	require.True(t, push("node", nodeJSON("same version, fresher hub state", 50)))
	waitJS(t, ctx, `document.querySelector("`+row+` td.name").textContent.includes("fresher")`)

	jobJSON := func(status string, done, version int) string {
		return fmt.Sprintf(`{"id": "j-stale", "ownerId": "alice", "status": %q, "accessType": "private", "priority": 0, "iterations": 3000,
			"configHash": "h", "config": {}, "chunks": {"total": 3, "pending": %d, "running": 0, "completed": %d, "failed": 0, "cancelled": 0},
			"progress": %v, "result": null, "error": null, "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00.000Z",
			"finishedAt": null, "rowVersion": %d}`, status, 3-done, done, float64(done)/3, version)
	}
	jobRow := "#job-j-stale"
	require.True(t, push("job", jobJSON("running", 2, 5)))
	waitJS(t, ctx, `document.querySelector("`+jobRow+`") !== null && document.querySelector("`+jobRow+`").dataset.status === "running"`)
	require.Equal(t, "66%", text(t, ctx, jobRow+" .pct")) // floored
	require.False(t, push("job", jobJSON("running", 1, 4)), "an older progress event")
	require.True(t, push("job", jobJSON("completed", 3, 6)))
	waitJS(t, ctx, `document.querySelector("`+jobRow+`").dataset.status === "completed"`)
	require.False(t, push("job", jobJSON("running", 2, 5)))
	require.Equal(t, "100%", text(t, ctx, jobRow+" .pct"))
}
