package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestAPIAuthAndMalformedBodies(t *testing.T) {
	m := startServer(t, testConfig())
	post := func(path, key, auth, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, m.URL()+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, path, key, auth, body string
		status                      int
		contains                    string
	}{
		{"no key", "/api/info", "", "", `{}`, 401, `"code":101`},
		{"wrong key", "/api/info", "nope", "", `{}`, 401, `unauthorized`},
		{"authorization header", "/api/info", "", "apikey " + testAPIKey, `{}`, 200, `"nodes"`},
		{"malformed json", "/api/publish", testAPIKey, "", `{"channel":`, 400, `"error"`},
		{"not an object", "/api/publish", testAPIKey, "", `[1,2]`, 400, `JSON object`},
		{"wrong type", "/api/publish", testAPIKey, "", `{"channel":5}`, 400, `malformed request`},
		{"unknown method", "/api/nope", testAPIKey, "", `{}`, 404, `"code":104`},
		{"missing channel", "/api/publish", testAPIKey, "", `{"data":{}}`, 200, `"code":107`},
		{"missing data", "/api/publish", testAPIKey, "", `{"channel":"chat:x"}`, 200, `data required`},
		{"unknown namespace", "/api/publish", testAPIKey, "", `{"channel":"nope:x","data":{}}`, 200, `"code":102`},
		{"bad disconnect code", "/api/disconnect", testAPIKey, "", `{"user":"u","disconnect":{"code":1000}}`, 200, `"code":107`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.path, tc.key, tc.auth, tc.body)
			require.Equal(t, tc.status, status, body)
			require.Contains(t, body, tc.contains)
			require.True(t, json.Valid([]byte(body)), body)
		})
	}
	req, _ := http.NewRequest(http.MethodGet, m.URL()+"/api/info", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	big := `{"channel":"chat:x","data":"` + strings.Repeat("x", 2<<20) + `"}`
	status, _ := post("/api/publish", testAPIKey, "", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
}

func TestAPIMethods(t *testing.T) {
	m := startServer(t, testConfig())
	c := newGoClient(t, m, "erin", false, token(t, "erin", time.Hour))
	serverSubs := make(chan string, 4)
	unsubs := make(chan string, 4)
	c.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) { serverSubs <- e.Channel })
	c.OnUnsubscribed(func(e centrifuge.ServerUnsubscribedEvent) { unsubs <- e.Channel })
	pubs := make(chan string, 8)
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) { pubs <- e.Channel + " " + string(e.Data) })
	disconnected := make(chan uint32, 1)
	c.OnDisconnected(func(e centrifuge.DisconnectedEvent) { disconnected <- e.Code })
	require.NoError(t, c.Connect())
	receive(t, c.connected, "connected")

	_, body := apiCall(t, m, "subscribe", map[string]any{"user": "erin", "channel": "chat:srv"})
	require.Contains(t, body, "result")
	require.Equal(t, "chat:srv", receive(t, serverSubs, "server-side subscribe"))

	_, body = apiCall(t, m, "publish", map[string]any{"channel": "chat:srv", "data": map[string]any{"a": 1}})
	res := body["result"].(map[string]any)
	require.Equal(t, float64(1), res["offset"])
	require.NotEmpty(t, res["epoch"])
	require.Equal(t, `chat:srv {"a":1}`, receive(t, pubs, "publication on server-side sub"))

	_, body = apiCall(t, m, "broadcast", map[string]any{"channels": []string{"chat:srv", "nope:x"}, "data": map[string]any{"b": 2}})
	responses := body["result"].(map[string]any)["responses"].([]any)
	require.Contains(t, responses[0], "result")
	require.Equal(t, float64(102), responses[1].(map[string]any)["error"].(map[string]any)["code"])

	_, body = apiCall(t, m, "presence", map[string]any{"channel": "chat:srv"})
	presence := body["result"].(map[string]any)["presence"].(map[string]any)
	require.Len(t, presence, 1)
	_, body = apiCall(t, m, "presence_stats", map[string]any{"channel": "chat:srv"})
	require.Equal(t, map[string]any{"num_clients": float64(1), "num_users": float64(1)}, body["result"])

	_, body = apiCall(t, m, "history", map[string]any{"channel": "chat:srv", "limit": 10})
	hist := body["result"].(map[string]any)
	require.Len(t, hist["publications"], 2)
	require.Equal(t, float64(2), hist["offset"])
	_, body = apiCall(t, m, "history", map[string]any{"channel": "chat:srv", "since": map[string]any{"offset": 0, "epoch": "other"}})
	require.Equal(t, float64(112), body["error"].(map[string]any)["code"])

	_, body = apiCall(t, m, "channels", map[string]any{"pattern": "chat:*"})
	require.Contains(t, body["result"].(map[string]any)["channels"], "chat:srv")
	_, body = apiCall(t, m, "info", map[string]any{})
	node := body["result"].(map[string]any)["nodes"].([]any)[0].(map[string]any)
	require.Equal(t, float64(1), node["num_clients"])

	_, body = apiCall(t, m, "batch", map[string]any{"commands": []any{
		map[string]any{"publish": map[string]any{"channel": "chat:srv", "data": map[string]any{"c": 3}}},
		map[string]any{"presence_stats": map[string]any{"channel": "chat:srv"}},
		map[string]any{"nope": map[string]any{}},
	}})
	require.NotContains(t, body, "result", "batch has no result wrapper (Centrifugo v6)")
	replies := body["replies"].([]any)
	require.Contains(t, replies[0], "publish")
	require.Contains(t, replies[1], "presence_stats")
	require.Contains(t, replies[2], "error")

	_, body = apiCall(t, m, "history_remove", map[string]any{"channel": "chat:srv"})
	require.Contains(t, body, "result")
	_, body = apiCall(t, m, "unsubscribe", map[string]any{"user": "erin", "channel": "chat:srv"})
	require.Contains(t, body, "result")
	require.Equal(t, "chat:srv", receive(t, unsubs, "server-side unsubscribe"))

	_, body = apiCall(t, m, "rpc", map[string]any{"method": "x"})
	require.Equal(t, float64(104), body["error"].(map[string]any)["code"])

	_, body = apiCall(t, m, "disconnect", map[string]any{"user": "erin"})
	require.Contains(t, body, "result")
	require.Equal(t, uint32(3503), receive(t, disconnected, "force disconnect"))
}

func TestShutdownDisconnectsWithReconnectCode(t *testing.T) {
	m := &Main{Config: testConfig()}
	require.NoError(t, m.Run(context.Background()))
	c := newGoClient(t, m, "frank", false, token(t, "frank", time.Hour))
	codes := make(chan uint32, 4)
	c.OnConnecting(func(e centrifuge.ConnectingEvent) { codes <- e.Code })
	require.NoError(t, c.Connect())
	receive(t, c.connected, "connected")
	<-codes // initial connecting event
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.Shutdown(ctx))
	require.Equal(t, uint32(3001), receive(t, codes, "reconnecting after shutdown"))
	require.NoError(t, m.Shutdown(ctx), "idempotent")
}

// TestOriginCheck: client.allowed_origins is one policy for both WebSocket
// routes, /connection/websocket and /{circle_key}.
func TestOriginCheck(t *testing.T) {
	circlePriv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	circleKey := hex.EncodeToString(circlePriv.PubKey().SerializeCompressed())
	for _, tc := range []struct {
		name    string
		allowed []string
		origins map[string]bool // "SAME": the server's own origin
	}{
		{"any", []string{"*"}, map[string]bool{"http://evil.example": true, "": true}},
		{"wildcard", []string{"https://*.example.com"}, map[string]bool{
			"https://app.example.com": true, "https://example.com": false, "http://app.example.com": false, "": true}},
		{"exact", []string{"http://good.example"}, map[string]bool{
			"http://good.example": true, "http://evil.example": false, "SAME": false, "": true}},
		{"empty", nil, map[string]bool{"http://good.example": false, "SAME": true, "": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Client.AllowedOrigins = tc.allowed
			cfg.Circles.Keys = []string{circleKey}
			cfg.Circles.DataDir = t.TempDir()
			m := startServer(t, cfg)
			dial := func(path, origin string) int {
				req, _ := http.NewRequest(http.MethodGet, m.URL()+path, nil)
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				if origin != "" {
					req.Header.Set("Origin", origin)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				return resp.StatusCode
			}
			for o, want := range tc.origins {
				if o == "SAME" {
					o = m.URL()
				}
				status := http.StatusForbidden
				if want {
					status = http.StatusSwitchingProtocols
				}
				for _, path := range []string{"/connection/websocket", "/" + circleKey} {
					require.Equal(t, status, dial(path, o), "%s from %q", path, o)
				}
			}
		})
	}
}

func TestBadAllowedOriginIsAConfigError(t *testing.T) {
	cfg := testConfig()
	cfg.Client.AllowedOrigins = []string{"http://ok.example", "example.com"}
	m := &Main{Config: cfg}
	err := m.Run(context.Background())
	require.ErrorContains(t, err, `client.allowed_origins[1]: "example.com" is not an origin`)
	require.NoError(t, m.Shutdown(context.Background()))
}

func TestHealthAndMetrics(t *testing.T) {
	m := startServer(t, testConfig())
	resp, err := http.Get(m.URL() + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	apiCall(t, m, "publish", map[string]any{"channel": "chat:m", "data": map[string]any{}})
	resp, err = http.Get(m.URL() + "/metrics")
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, name := range []string{"switchboard_connections", "switchboard_subscriptions", "switchboard_client_commands_total",
		"switchboard_client_command_duration_seconds", "switchboard_api_requests_total", "switchboard_broker_operation_seconds",
		"switchboard_delivery_slow_disconnects_total", "go_goroutines"} {
		require.Contains(t, fams, name)
	}
	var publishes float64
	for _, mt := range fams["switchboard_api_requests_total"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "method" && l.GetValue() == "publish" {
				publishes += mt.GetCounter().GetValue()
			}
		}
	}
	require.Equal(t, 1.0, publishes, "the one publish call is counted")
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	runCLI := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, _ := runCLI("version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "switchboard ")

	cfgPath := dir + "/config.json"
	code, _, errOut := runCLI("genconfig", "-o", cfgPath)
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI("genconfig", "-o", cfgPath)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "exists")
	code, out, _ = runCLI("checkconfig", "-c", cfgPath)
	require.Equal(t, 0, code)
	require.Contains(t, out, "valid")

	code, out, errOut = runCLI("gentoken", "-c", cfgPath, "--user", "alice", "--ttl", "1h")
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Split(strings.TrimSpace(out), "."), 3)

	bad := dir + "/bad.yaml"
	require.NoError(t, writeFile(bad, "client:\n  tokne: {}\n"))
	code, _, errOut = runCLI("checkconfig", "-c", bad)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "client.tokne")

	code, _, errOut = runCLI("serve", "--port", "99999")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--port")
	code, _, errOut = runCLI("serve", "--nope")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--nope")
	code, _, errOut = runCLI("gentoken", "--user", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "secret")
}

func TestMessageSizeLimit(t *testing.T) {
	cfg := testConfig()
	cfg.WebSocket.MessageSizeLimit = 1024
	m := startServer(t, cfg)
	// A plain WebSocket client: centrifuge-go's Publish can block for
	// good once the server closes the connection under it.
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+m.Addr()+"/connection/websocket", nil)
	require.NoError(t, err)
	defer c.CloseNow()
	connect := `{"id":1,"connect":{"token":"` + token(t, "gina", time.Hour) + `"}}`
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(connect)))
	_, reply, err := c.Read(ctx)
	require.NoError(t, err)
	require.Contains(t, string(reply), `"connect"`, "connected")
	require.Eventually(t, func() bool { return m.Hub().NumClients() == 1 }, testenv.Wait, testenv.Tick)
	big := `{"id":2,"publish":{"channel":"chat:big","data":{"x":"` + strings.Repeat("x", 4096) + `"}}}`
	// The server may close as soon as it has read the frame header, so
	// the write itself can fail with a reset; otherwise the close says why.
	if err = c.Write(ctx, websocket.MessageText, []byte(big)); err == nil {
		for err == nil {
			_, _, err = c.Read(ctx)
		}
		require.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err), "closed for the oversized message: %v", err)
	}
	require.Eventually(t, func() bool { return m.Hub().NumClients() == 0 }, testenv.Wait, testenv.Tick, "server dropped the oversized connection")
}
