package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

type rpcConn struct {
	t    *testing.T
	c    *websocket.Conn
	next int
}

func (r *rpcConn) call(method string, params any) (json.RawMessage, map[string]any) {
	r.t.Helper()
	r.next++
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": r.next, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(r.t, r.c.Write(ctx, websocket.MessageText, req))
	_, data, err := r.c.Read(ctx)
	require.NoError(r.t, err)
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  map[string]any  `json:"error"`
	}
	require.NoError(r.t, json.Unmarshal(data, &resp), string(data))
	return resp.Result, resp.Error
}

func TestCirclesThroughTheBinary(t *testing.T) {
	circlePriv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	circleKey := hex.EncodeToString(circlePriv.PubKey().SerializeUncompressed()) // either encoding names the circle
	cfg := testConfig()
	cfg.Circles.Keys = []string{circleKey}
	cfg.Circles.EnableAuth = true
	cfg.Circles.DataDir = t.TempDir()
	m := startServer(t, cfg)
	canonical := hex.EncodeToString(circlePriv.PubKey().SerializeCompressed())

	// Unknown circle: 404 with the documented body, before any upgrade.
	resp, err := http.Get(m.URL() + "/02" + strings.Repeat("ab", 32))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, string(body), `"error":"Circle not found"`)
	// Other routes are not shadowed.
	resp, err = http.Get(m.URL() + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A hub client watches the circle's channel (subscribed by the server API).
	watcher := newGoClient(t, m, "watcher", false, token(t, "watcher", time.Hour))
	pubs := make(chan string, 4)
	watcher.OnPublication(func(e centrifuge.ServerPublicationEvent) { pubs <- e.Channel + " " + string(e.Data) })
	subscribed := make(chan string, 1)
	watcher.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) { subscribed <- e.Channel })
	require.NoError(t, watcher.Connect())
	receive(t, watcher.connected, "watcher connected")
	apiCall(t, m, "subscribe", map[string]any{"user": "watcher", "channel": canonical + ":news"})
	receive(t, subscribed, "watcher subscribed")

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws://"+m.Addr()+"/"+canonical, nil)
	require.NoError(t, err)
	defer c.CloseNow()
	rc := &rpcConn{t: t, c: c}

	_, rerr := rc.call("play", map[string]any{"script": "1"})
	require.Equal(t, float64(-32001), rerr["code"], "play before auth")

	user, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	userPub := hex.EncodeToString(user.PubKey().SerializeUncompressed())
	res, rerr := rc.call("fetch_nonce", map[string]any{"pubkey": userPub})
	require.Nil(t, rerr)
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	require.NoError(t, json.Unmarshal(res, &nonce))
	sig := hex.EncodeToString(eip191.Sign(user, []byte(nonce.Nonce)))
	res, rerr = rc.call("authenticate", map[string]any{"pubkey": userPub, "signature": sig})
	require.Nil(t, rerr)
	require.JSONEq(t, `{"authenticated":true}`, string(res))

	res, rerr = rc.call("play", map[string]any{"script": "x = 40\nx + 2"})
	require.Nil(t, rerr)
	require.JSONEq(t, `"42"`, string(res))
	res, rerr = rc.call("play", map[string]any{"script": `store.set("k", "v")` + "\n" + `publish("news", {"from": CALLER_ID[:4]})` + "\nprint(store.get(\"k\"))"})
	require.Nil(t, rerr, "%v", rerr)
	require.JSONEq(t, `"v\n"`, string(res))
	callerPrefix := hex.EncodeToString(user.PubKey().SerializeCompressed())[:4]
	require.Equal(t, canonical+`:news {"from":"`+callerPrefix+`"}`, receive(t, pubs, "script publication reached the hub"))
}

func TestRunnerThroughTheBinary(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the worker gateway test runs a Node worker")
	}
	_, file, _, _ := runtime.Caller(0)
	worker := filepath.Join(filepath.Dir(file), "..", "..", "sdk", "worker-node", "examples", "worker.js")
	cfg := testConfig()
	cfg.Runner.Command = []string{"node", worker}
	cfg.Runner.Token = "runner-secret"
	cfg.Runner.CORS.Origins = []string{"https://*.example.com"}
	m := startServer(t, cfg)

	// runner.cors.origins reaches the gateway through the origin policy.
	for origin, want := range map[string]string{"https://app.example.com": "https://app.example.com", "https://evil.example": ""} {
		req, _ := http.NewRequest(http.MethodOptions, m.URL()+"/__runner/task/app.tasks.add", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.Header.Get("Access-Control-Allow-Origin"), origin)
	}

	post := func(path, tok, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("x-runner-token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var status int
	var body string
	require.Eventually(t, func() bool {
		status, body = post("/__runner/task/app.tasks.add", "runner-secret", `{"input":{"a":2,"b":3}}`)
		return status == http.StatusOK
	}, testenv.Wait, testenv.Tick, "worker answers")
	require.JSONEq(t, `{"ok":true,"result":5}`, body)
	status, _ = post("/__runner/task/app.tasks.add", "wrong", `{"input":{"a":2,"b":3}}`)
	require.Equal(t, http.StatusUnauthorized, status)

	// The same worker serves the hub's rpc.
	c := newGoClient(t, m, "rpcuser", false, token(t, "rpcuser", time.Hour))
	require.NoError(t, c.Connect())
	receive(t, c.connected, "connected")
	res, err := c.RPC(context.Background(), "app.tasks.add", []byte(`{"a":20,"b":22}`))
	require.NoError(t, err)
	require.Equal(t, "42", string(res.Data))
	_, err = c.RPC(context.Background(), "app.tasks.missing", []byte(`{}`))
	require.ErrorContains(t, err, "method not found")
}

func TestKeygenAndPlayCommands(t *testing.T) {
	dir := t.TempDir()
	var keyOut, errOut strings.Builder
	require.Equal(t, 0, run([]string{"keygen"}, &keyOut, &errOut), errOut.String())
	var circleKey string
	for _, line := range strings.Split(keyOut.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "public_key_compressed: "); ok {
			circleKey = v
		}
	}
	require.Len(t, circleKey, 66)
	keyFile := filepath.Join(dir, "me.key")
	var me strings.Builder
	require.Equal(t, 0, run([]string{"keygen"}, &me, &errOut))
	require.NoError(t, writeFile(keyFile, me.String()))
	script := filepath.Join(dir, "s.star")
	require.NoError(t, writeFile(script, "x = 40\nx + 2\n"))

	cfg := testConfig()
	cfg.Circles.Keys = []string{circleKey}
	cfg.Circles.EnableAuth = true
	cfg.Circles.DataDir = dir
	m := startServer(t, cfg)
	var out strings.Builder
	code := run([]string{"play", "--url", "ws://" + m.Addr() + "/" + circleKey, "--key-file", keyFile, script}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Equal(t, "42\n", out.String())
	code = run([]string{"play", "--url", "ws://" + m.Addr() + "/" + circleKey, "--key-file", filepath.Join(dir, "missing"), script}, &out, &errOut)
	require.Equal(t, 2, code)
}
