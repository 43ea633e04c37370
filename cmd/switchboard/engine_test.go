package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// redisNodes returns a function that starts a server on the Redis engine;
// every server it starts shares one key prefix of its own, so they form
// one cluster apart from other tests. mods change each server's config.
// It skips t without Redis.
func redisNodes(t *testing.T, mods ...func(*config.Config)) func() *Main {
	t.Helper()
	url := testenv.RedisURL(t)
	prefix := fmt.Sprintf("sbtest.cmd.%s.%d", t.Name(), time.Now().UnixNano())
	return func() *Main {
		cfg := testConfig()
		cfg.Engine.Type = config.BrokerRedis
		cfg.Engine.Redis.Address = url
		cfg.Engine.Redis.Prefix = prefix
		for _, m := range mods {
			m(&cfg)
		}
		return startServer(t, cfg)
	}
}

// Two processes on one Redis behave as one server for publications,
// history and presence.
func TestRedisEngineTwoNodes(t *testing.T) {
	node := redisNodes(t)
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
	require.Eventually(t, func() bool { return slices.Contains(gc.publications(), `{"from":"a"}`) }, testenv.Wait, testenv.Tick, "publication on A reaches a client on B")

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

// --engine and --redis-url: the URL is shared by the engine and the circle
// queues; --engine redis takes an address from the file too.
func TestEngineFlags(t *testing.T) {
	const url = "redis://10.0.0.1:6379/2"
	for _, tc := range []struct {
		name          string
		flags         ServeCmd
		env           map[string]string
		engine, addr  string
		circles, errs string
	}{
		{name: "redis url alone keeps the memory engine", flags: ServeCmd{RedisURL: url},
			engine: "memory", addr: url, circles: url},
		{name: "engine and url", flags: ServeCmd{Engine: "redis", RedisURL: url},
			engine: "redis", addr: url, circles: url},
		{name: "engine with the address from the file", flags: ServeCmd{Engine: "redis"},
			env:    map[string]string{"SWITCHBOARD_ENGINE_REDIS_ADDRESS": url},
			engine: "redis", addr: url},
		{name: "flag wins over the file", flags: ServeCmd{Engine: "redis", RedisURL: url},
			env:    map[string]string{"SWITCHBOARD_ENGINE_REDIS_ADDRESS": "redis://10.0.0.9:6379", "SWITCHBOARD_CIRCLES_REDIS_URL": "redis://10.0.0.9:6379"},
			engine: "redis", addr: url, circles: url},
		{name: "memory over a redis file", flags: ServeCmd{Engine: "memory"},
			env:    map[string]string{"SWITCHBOARD_ENGINE_TYPE": "redis"},
			engine: "memory", addr: config.DefaultRedisAddress},
		{name: "engine redis without an address", flags: ServeCmd{Engine: "redis"}, errs: "--engine redis needs --redis-url"},
		{name: "unknown engine", flags: ServeCmd{Engine: "Redis"}, errs: `--engine: unknown engine "Redis"`},
		{name: "bad url", flags: ServeCmd{RedisURL: "tcp://x"}, errs: "--redis-url: redis address: scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			s := tc.flags
			s.Port = -1
			cfg, _, err := s.loadConfig()
			if tc.errs != "" {
				require.ErrorContains(t, err, tc.errs)
				require.Equal(t, 2, exitStatus(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.engine, cfg.Engine.Type)
			require.Equal(t, tc.addr, cfg.Engine.Redis.Address)
			require.Equal(t, tc.circles, cfg.Circles.RedisURL)
		})
	}
}

// The engine and the circle queues on one URL share one Redis client.
func TestSharedRedisClient(t *testing.T) {
	url := testenv.RedisURL(t)
	priv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	cfg := testConfig()
	cfg.Engine.Type = config.BrokerRedis
	cfg.Engine.Redis.Address = url
	cfg.Engine.Redis.Prefix = fmt.Sprintf("sbtest.shared.%d", time.Now().UnixNano())
	cfg.Circles.Keys = []string{hex.EncodeToString(priv.PubKey().SerializeCompressed())}
	cfg.Circles.DataDir = t.TempDir()
	cfg.Circles.RedisURL = url
	m := startServer(t, cfg)
	require.Len(t, m.redisClients, 1, "one client for one URL")
	_, body := apiCall(t, m, "publish", map[string]any{"channel": "chat:shared", "data": map[string]any{}})
	require.Contains(t, body, "result", "body %v", body)
}

// An idempotency key is one across processes: a repeat sent to another
// node answers the first result and publishes nothing.
func TestRedisEngineIdempotentPublish(t *testing.T) {
	url := testenv.RedisURL(t)
	prefix := fmt.Sprintf("sbtest.idem.%d", time.Now().UnixNano())
	node := func() *Main {
		cfg := testConfig()
		cfg.Engine.Type = config.BrokerRedis
		cfg.Engine.Redis.Address = url
		cfg.Engine.Redis.Prefix = prefix
		return startServer(t, cfg)
	}
	a, b := node(), node()
	req := map[string]any{"channel": "chat:idem", "data": map[string]any{"n": 1}, "idempotency_key": "order-17"}
	_, first := apiCall(t, a, "publish", req)
	_, again := apiCall(t, b, "publish", req)
	require.Contains(t, first, "result", "body %v", first)
	require.Equal(t, first, again)
	_, body := apiCall(t, b, "history", map[string]any{"channel": "chat:idem", "limit": -1})
	require.Len(t, body["result"].(map[string]any)["publications"], 1, "body %v", body)
}
