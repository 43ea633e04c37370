package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// TestServerAPIAcrossNodes boots two servers joined by one loopback control
// plane: the server API of B acts on a client connected to A.
func TestServerAPIAcrossNodes(t *testing.T) {
	net := memory.NewControlNetwork()
	boot := func() *Main {
		m := &Main{Config: testConfig(), Control: net.Node()}
		require.NoError(t, m.Run(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, m.Shutdown(ctx))
		})
		return m
	}
	a, b := boot(), boot()

	c := newGoClient(t, a, "gina", false, token(t, "gina", time.Hour))
	serverSubs := make(chan string, 4)
	c.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) { serverSubs <- e.Channel })
	disconnected := make(chan uint32, 1)
	c.OnDisconnected(func(e centrifuge.DisconnectedEvent) { disconnected <- e.Code })
	require.NoError(t, c.Connect())
	receive(t, c.connected, "connected to A")

	_, body := apiCall(t, b, "info", map[string]any{})
	nodes := body["result"].(map[string]any)["nodes"].([]any)
	require.Len(t, nodes, 2)
	require.Equal(t, b.Hub().NodeID(), nodes[0].(map[string]any)["uid"])
	require.Equal(t, a.Hub().NodeID(), nodes[1].(map[string]any)["uid"])

	_, body = apiCall(t, b, "subscribe", map[string]any{"user": "gina", "channel": "chat:across"})
	require.Contains(t, body, "result")
	require.Equal(t, "chat:across", receive(t, serverSubs, "server-side subscribe from B"))
	_, body = apiCall(t, b, "channels", map[string]any{})
	require.Equal(t, map[string]any{"chat:across": map[string]any{"num_clients": float64(1)}}, body["result"].(map[string]any)["channels"])

	_, body = apiCall(t, b, "disconnect", map[string]any{"user": "gina"})
	require.Contains(t, body, "result")
	require.Equal(t, uint32(3503), receive(t, disconnected, "force disconnect from B"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	_, body = apiCall(t, b, "info", map[string]any{})
	require.Len(t, body["result"].(map[string]any)["nodes"], 1, "A left at once")
}

// TestRedisServerAPIAcrossNodes: three servers on one Redis are one server
// for info, channels, subscribe and disconnect; a clean stop leaves at once.
func TestRedisServerAPIAcrossNodes(t *testing.T) {
	node := redisNodes(t)
	a, b, c := node(), node(), node()
	infoIDs := func(m *Main) []string {
		_, body := apiCall(t, m, "info", map[string]any{})
		var ids []string
		for _, n := range body["result"].(map[string]any)["nodes"].([]any) {
			ids = append(ids, n.(map[string]any)["uid"].(string))
		}
		slices.Sort(ids)
		return ids
	}
	all := []string{a.Hub().NodeID(), b.Hub().NodeID(), c.Hub().NodeID()}
	slices.Sort(all)
	require.Eventually(t, func() bool { return slices.Equal(infoIDs(a), all) && slices.Equal(infoIDs(c), all) }, testenv.Wait, testenv.Tick, "info lists three nodes")

	gc := newGoClient(t, a, "hugo", false, token(t, "hugo", time.Hour))
	serverSubs := make(chan string, 4)
	gc.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) { serverSubs <- e.Channel })
	disconnected := make(chan uint32, 1)
	gc.OnDisconnected(func(e centrifuge.DisconnectedEvent) { disconnected <- e.Code })
	require.NoError(t, gc.Connect())
	receive(t, gc.connected, "connected to A")

	_, body := apiCall(t, b, "subscribe", map[string]any{"user": "hugo", "channel": "chat:redis"})
	require.Contains(t, body, "result")
	require.Equal(t, "chat:redis", receive(t, serverSubs, "server-side subscribe sent to B"))
	_, body = apiCall(t, c, "channels", map[string]any{"pattern": "chat:redis"})
	require.Equal(t, map[string]any{"chat:redis": map[string]any{"num_clients": float64(1)}}, body["result"].(map[string]any)["channels"])

	_, body = apiCall(t, c, "disconnect", map[string]any{"user": "hugo"})
	require.Contains(t, body, "result")
	require.Equal(t, uint32(3503), receive(t, disconnected, "disconnect sent to C"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	rest := []string{b.Hub().NodeID(), c.Hub().NodeID()}
	slices.Sort(rest)
	require.Eventually(t, func() bool { return slices.Equal(infoIDs(b), rest) }, testenv.Wait, testenv.Tick, "A left the list at once (well before the TTL)")
}
