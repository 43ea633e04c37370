package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// Two processes on one Redis behave as one server for publications,
// history and presence.
func TestRedisEngineTwoNodes(t *testing.T) {
	url := testenv.RedisURL(t)
	prefix := fmt.Sprintf("sbtest.cmd.%d", time.Now().UnixNano())
	node := func() *Main {
		cfg := testConfig()
		cfg.Engine.Type = config.BrokerRedis
		cfg.Engine.Redis.Address = url
		cfg.Engine.Redis.Prefix = prefix
		return startServer(t, cfg)
	}
	a, b := node(), node()

	gc := newGoClient(t, b, "bob", false, token(t, "bob", time.Hour))
	require.NoError(t, gc.Connect())
	<-gc.connected
	s, subscribed := gc.sub(t, "chat:two", centrifuge.SubscriptionConfig{})
	require.NoError(t, s.Subscribe())
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("not subscribed")
	}

	_, body := apiCall(t, a, "publish", map[string]any{"channel": "chat:two", "data": map[string]any{"from": "a"}})
	res := body["result"].(map[string]any)
	require.Equal(t, float64(1), res["offset"], "body %v", body)
	eventually(t, func() bool { return slices.Contains(gc.publications(), `{"from":"a"}`) }, "publication on A reaches a client on B")

	_, body = apiCall(t, b, "history", map[string]any{"channel": "chat:two", "limit": 10})
	hist := body["result"].(map[string]any)
	require.Len(t, hist["publications"], 1)
	require.Equal(t, res["epoch"], hist["epoch"], "both nodes see one stream")

	_, body = apiCall(t, a, "presence", map[string]any{"channel": "chat:two"})
	require.Len(t, body["result"].(map[string]any)["presence"], 1, "presence of a client on B, asked on A: %v", body)
}

// Redis unreachable at start: the server starts, /health is 503 naming
// Redis, and API publish fails fast with a Centrifugo error.
func TestRedisEngineUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cfg := testConfig()
	cfg.Engine.Type = config.BrokerRedis
	cfg.Engine.Redis.Address = "redis://" + addr
	m := startServer(t, cfg)

	resp, err := http.Get(m.URL() + "/health")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), "redis")

	start := time.Now()
	_, out := apiCall(t, m, "publish", map[string]any{"channel": "chat:x", "data": map[string]any{}})
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, float64(100), out["error"].(map[string]any)["code"], "body %v", out)
}
