package main

import (
	"context"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
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
	waitFor(t, c.connected, "connected to A")

	_, body := apiCall(t, b, "info", map[string]any{})
	nodes := body["result"].(map[string]any)["nodes"].([]any)
	require.Len(t, nodes, 2)
	require.Equal(t, b.Hub().NodeID(), nodes[0].(map[string]any)["uid"])
	require.Equal(t, a.Hub().NodeID(), nodes[1].(map[string]any)["uid"])

	_, body = apiCall(t, b, "subscribe", map[string]any{"user": "gina", "channel": "chat:across"})
	require.Contains(t, body, "result")
	require.Equal(t, "chat:across", waitFor(t, serverSubs, "server-side subscribe from B"))
	_, body = apiCall(t, b, "channels", map[string]any{})
	require.Equal(t, map[string]any{"chat:across": map[string]any{"num_clients": float64(1)}}, body["result"].(map[string]any)["channels"])

	_, body = apiCall(t, b, "disconnect", map[string]any{"user": "gina"})
	require.Contains(t, body, "result")
	require.Equal(t, uint32(3503), waitFor(t, disconnected, "force disconnect from B"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	_, body = apiCall(t, b, "info", map[string]any{})
	require.Len(t, body["result"].(map[string]any)["nodes"], 1, "A left at once")
}
