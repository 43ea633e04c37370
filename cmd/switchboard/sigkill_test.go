package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// A node killed with SIGKILL says goodbye to no one: its client comes back
// on another node and recovers what it missed from the shared history, its
// presence entry vanishes within the presence TTL and info drops it within
// the node TTL.
func TestRedisNodeSIGKILL(t *testing.T) {
	url := testenv.RedisURL(t)
	prefix := fmt.Sprintf("sbtest.cmd.sigkill.%d", time.Now().UnixNano())
	const (
		presenceTTL = 2 * time.Second
		// nodeTTL is the hub's default: three announce intervals.
		nodeTTL = 3 * hub.DefaultAnnounceInterval
		// margin absorbs a loaded machine's scheduling and Redis round trips.
		margin = 3 * time.Second
		ch     = "chat:sigkill"
	)

	// Node A is a real child process, so the kill is a real process kill.
	conf := filepath.Join(t.TempDir(), "a.json")
	require.NoError(t, writeFile(conf, fmt.Sprintf(`{
  "http_server": {"port": 0},
  "client": {"token": {"hmac_secret_key": %q}},
  "http_api": {"key": %q},
  "engine": {"type": "redis", "redis": {"address": %q, "prefix": %q, "presence_ttl": %q}},
  "channel": {"namespaces": [{"name": "chat", "presence": true, "history_size": 100, "history_ttl": "300s",
    "force_recovery": true, "allow_subscribe_for_client": true, "allow_presence_for_subscriber": true}]}
}`, testSecret, testAPIKey, url, prefix, presenceTTL.String())))
	a := startProgram(t, "serve", "-c", conf)
	t.Cleanup(func() { _ = a.cmd.Process.Kill() }) // runs before startProgram's own cleanup
	lines := a.readUntil(t, func(l string) bool { return strings.Contains(l, " listening on ") })
	aAddr := strings.TrimPrefix(strings.Fields(strings.SplitN(lines[len(lines)-1], " listening on ", 2)[1])[0], "http://")

	cfg := testConfig()
	cfg.Engine.Type = config.BrokerRedis
	cfg.Engine.Redis.Address = url
	cfg.Engine.Redis.Prefix = prefix
	cfg.Engine.Redis.PresenceTTL = config.Duration(presenceTTL)
	b := startServer(t, cfg)

	infoIDs := func() []string {
		_, body := apiCall(t, b, "info", map[string]any{})
		var ids []string
		for _, n := range body["result"].(map[string]any)["nodes"].([]any) {
			ids = append(ids, n.(map[string]any)["uid"].(string))
		}
		return ids
	}
	presenceIDs := func() []string {
		_, body := apiCall(t, b, "presence", map[string]any{"channel": ch})
		var ids []string
		for id := range body["result"].(map[string]any)["presence"].(map[string]any) {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	publish := func(n int) {
		t.Helper()
		status, body := apiCall(t, b, "publish", map[string]any{"channel": ch, "data": map[string]any{"n": n}})
		require.Equal(t, 200, status)
		require.Contains(t, body, "result", "publish %d: %v", n, body)
	}

	var aID string
	require.Eventually(t, func() bool {
		ids := infoIDs()
		if len(ids) != 2 || ids[0] != b.Hub().NodeID() {
			return false
		}
		aID = ids[1]
		return true
	}, testenv.Wait, testenv.Tick, "info on B lists A and B")

	lb := newSwitchProxy(t, aAddr)
	gc := newGoClientURL(t, "ws://"+lb.ln.Addr().String()+"/connection/websocket", false, token(t, "ivan", time.Hour))
	s, subscribed := gc.sub(t, ch, centrifuge.SubscriptionConfig{})
	require.NoError(t, s.Subscribe())
	require.NoError(t, gc.Connect())
	ev := receive(t, subscribed, "subscribed on A")
	require.True(t, ev.Recoverable)

	var oldClient string
	require.Eventually(t, func() bool {
		ids := presenceIDs()
		if len(ids) != 1 {
			return false
		}
		oldClient = ids[0]
		return true
	}, testenv.Wait, testenv.Tick, "B's presence shows the client on A")
	publish(1)
	require.Eventually(t, func() bool { return slices.Equal(gc.publications(), []string{`{"n":1}`}) }, testenv.Wait, testenv.Tick, "publication on B reaches the client on A")

	// A dies without a word; the load balancer has nowhere to send the client.
	lb.setTarget("")
	require.NoError(t, a.cmd.Process.Kill())
	killed := time.Now()
	receive(t, a.exited, "A exits on SIGKILL")
	publish(2)
	publish(3)

	// Nobody removes A's presence entry: it expires.
	require.Eventually(t, func() bool { return !slices.Contains(presenceIDs(), oldClient) },
		time.Until(killed.Add(presenceTTL+margin)), testenv.Tick, "A's presence entry gone within the presence TTL")

	// The client comes back on B and recovers exactly what it missed.
	lb.setTarget(b.Addr())
	ev = receive(t, subscribed, "resubscribed on B")
	require.True(t, ev.WasRecovering)
	require.True(t, ev.Recovered, "recovered on B after A was killed")
	require.Eventually(t, func() bool { return len(gc.publications()) >= 3 }, testenv.Wait, testenv.Tick, "missed publications")
	require.Equal(t, []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}, gc.publications())
	publish(4) // once it arrives, no late duplicate can hide before it
	require.Eventually(t, func() bool { return len(gc.publications()) >= 4 }, testenv.Wait, testenv.Tick, "a new publication on B")
	require.Equal(t, []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`}, gc.publications())
	require.Eventually(t, func() bool {
		ids := presenceIDs()
		return len(ids) == 1 && ids[0] != oldClient && b.Hub().NumClients() == 1
	}, testenv.Wait, testenv.Tick, "presence shows only the client's new connection on B")

	// A never said it left: info drops it when its last announcement is
	// older than the node TTL.
	require.Eventually(t, func() bool { return !slices.Contains(infoIDs(), aID) },
		time.Until(killed.Add(nodeTTL+margin)), testenv.Tick, "info drops A within the node TTL")
	require.Equal(t, []string{b.Hub().NodeID()}, infoIDs())
}
