package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/prometheus/procfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// processRSS returns this process's resident set size in bytes.
func processRSS(t testing.TB) int64 {
	t.Helper()
	p, err := procfs.Self()
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	st, err := p.NewStatus()
	require.NoError(t, err)
	return int64(st.VmRSS)
}

// The attack scripts of issue 8 against the whole server: every play fails
// with a JSON-RPC execution error naming its limit, the server's RSS stays
// bounded, and the hub keeps answering meanwhile.
func TestCircleAttacksThroughTheBinary(t *testing.T) {
	priv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	key := hex.EncodeToString(priv.PubKey().SerializeCompressed())
	cfg := testConfig()
	cfg.Circles.Keys = []string{key}
	cfg.Circles.DataDir = t.TempDir()
	cfg.Circles.MaxMemory = 64 << 20
	cfg.Circles.MaxCPU = config.Duration(time.Second)
	cfg.Circles.ScriptTimeout = config.Duration(20 * time.Second)
	cfg.Circles.MaxSteps = 1 << 50
	cfg.Circles.StoreMaxKeys = 100
	m := startServer(t, cfg)
	before := processRSS(t)

	attacks := []struct{ script, limit string }{
		{"s = \"z\" * 1000000\nfor i in range(13):\n    s = s + s", "memory limit exceeded (64 MiB)"},
		{`["z"*1000000]*2000`, "output exceeds 1048576 bytes"},
		{"while True:\n    pass", "cpu limit exceeded (1s)"},
		{"for i in range(100000):\n    store.set(\"k%d\" % i, \"x\")", "store quota exceeded"},
		{`len("z" * 1000000000)`, "memory limit exceeded (64 MiB)"},
	}
	var wg sync.WaitGroup
	errs := make([]map[string]any, len(attacks))
	for i, a := range attacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(context.Background(), "ws://"+m.Addr()+"/"+key, nil)
			if !assert.NoError(t, err) {
				return
			}
			defer c.CloseNow()
			errs[i] = playErr(t, c, a.script)
		}()
	}
	// The hub answers while the plays run.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	probe := time.NewTicker(20 * time.Millisecond)
	defer probe.Stop()
	for served, running := 0, true; running; served++ {
		status, body := apiCall(t, m, "publish", map[string]any{"channel": "chat:x", "data": map[string]int{"n": served}})
		require.Equal(t, 200, status, "%v", body)
		require.Nil(t, body["error"], "%v", body)
		select {
		case <-done:
			running = false
		case <-probe.C:
		}
	}
	for i, a := range attacks {
		require.NotNil(t, errs[i], "attack %d succeeded", i)
		require.Equal(t, float64(-32000), errs[i]["code"], "%v", errs[i])
		msg, _ := errs[i]["data"].(string)
		if strings.Contains(a.limit, "cpu") && strings.HasPrefix(msg, "timeout:") {
			continue // a starved sandbox may reach the wall time first
		}
		require.Contains(t, msg, a.limit, "attack %d", i)
	}
	after := processRSS(t)
	require.Less(t, after-before, int64(128<<20), "server RSS grew by %d MiB", (after-before)>>20)

	// The circle still plays.
	c, _, err := websocket.Dial(context.Background(), "ws://"+m.Addr()+"/"+key, nil)
	require.NoError(t, err)
	defer c.CloseNow()
	res, rerr := (&rpcConn{t: t, c: c}).call("play", map[string]any{"script": "40 + 2"})
	require.Nil(t, rerr)
	require.JSONEq(t, `"42"`, string(res))
}

// playErr plays src on c and returns the JSON-RPC error (nil on success).
// Unlike rpcConn it may wait long: a starved sandbox under -race is slow.
func playErr(t *testing.T, c *websocket.Conn, src string) map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "play", "params": map[string]string{"script": src}})
	if !assert.NoError(t, c.Write(ctx, websocket.MessageText, req)) {
		return nil
	}
	_, data, err := c.Read(ctx)
	if !assert.NoError(t, err) {
		return nil
	}
	var resp struct {
		Error map[string]any `json:"error"`
	}
	assert.NoError(t, json.Unmarshal(data, &resp))
	return resp.Error
}

// In Redis mode the server's own queue workers run plays in the sandbox
// too.
func TestCircleRedisModeUsesTheSandbox(t *testing.T) {
	url := testenv.RedisURL(t)
	priv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	key := hex.EncodeToString(priv.PubKey().SerializeCompressed())
	cfg := testConfig()
	cfg.Circles.Keys = []string{key}
	cfg.Circles.DataDir = t.TempDir()
	cfg.Circles.RedisURL = url
	cfg.Circles.MaxMemory = 64 << 20
	m := startServer(t, cfg)
	c, _, err := websocket.Dial(context.Background(), "ws://"+m.Addr()+"/"+key, nil)
	require.NoError(t, err)
	defer c.CloseNow()
	rerr := playErr(t, c, "s = \"z\" * 1000000\nfor i in range(13):\n    s = s + s")
	require.NotNil(t, rerr)
	require.Contains(t, rerr["data"], "memory limit exceeded (64 MiB)")
	res, perr := (&rpcConn{t: t, c: c}).call("play", map[string]any{"script": "40 + 2"})
	require.Nil(t, perr)
	require.JSONEq(t, `"42"`, string(res))
}

// Started by hand, the hidden subcommand refuses with a clear message.
func TestSandboxWorkerByHand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"sandbox-worker"}, &out, &errOut)
	require.Equal(t, 4, code)
	require.Contains(t, errOut.String(), "sandbox-worker exited with status 4")
	var help bytes.Buffer
	run([]string{"--help"}, &help, &help)
	require.NotContains(t, help.String(), "sandbox-worker", "the subcommand is hidden")
}
