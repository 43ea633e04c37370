package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// twoNodes is hubs a and b on one loopback control plane, with the API
// served by b.
func twoNodes(t *testing.T) (a, b *hub.Hub, api *Handler) {
	t.Helper()
	net := memory.NewControlNetwork()
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	mk := func(name string) *hub.Hub {
		h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(), Clock: clk,
			Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{"chat": {}}},
			Cluster:    hub.ClusterConfig{Control: net.Node(), NodeID: "id-" + name, NodeName: name, Version: "v-test"}})
		require.NoError(t, err)
		_, err = h.RegisterFormat("nop", nopCodec{})
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, h.Shutdown(ctx))
		})
		return h
	}
	a, b = mk("a"), mk("b")
	api, err := New(Config{Hub: b, Key: testKey, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	return a, b, api
}

func call(t *testing.T, h *Handler, method, body string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/"+method, strings.NewReader(body))
	r.Header.Set("X-API-Key", testKey)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	return strings.TrimSpace(w.Body.String())
}

func TestAPIReachesUsersOnEveryNode(t *testing.T) {
	a, b, api := twoNodes(t)
	onA := &fakeClient{hub: a, id: "a1", user: "alice"}
	require.NoError(t, a.AddClient(onA))
	require.NoError(t, b.AddSubscriber("chat:x", &nopSub{}, false))
	require.NoError(t, a.AddSubscriber("chat:x", &nopSub{}, false))
	require.NoError(t, a.AddSubscriber("chat:y", &nopSub{}, false))

	require.JSONEq(t, `{"result":{"nodes":[
		{"uid":"id-b","name":"b","version":"v-test","num_clients":0,"num_users":0,"num_channels":1,"num_subs":1},
		{"uid":"id-a","name":"a","version":"v-test","num_clients":0,"num_users":0,"num_channels":0,"num_subs":0}]}}`,
		call(t, api, "info", `{}`), "a's figures are those of its last announcement")
	require.JSONEq(t, `{"result":{"channels":{"chat:x":{"num_clients":2},"chat:y":{"num_clients":1}}}}`,
		call(t, api, "channels", `{}`))
	require.JSONEq(t, `{"result":{"channels":{"chat:y":{"num_clients":1}}}}`, call(t, api, "channels", `{"pattern":"*y"}`))

	for _, c := range []struct{ method, body string }{
		{"subscribe", `{"user":"alice","channel":"chat:z","info":{"r":1}}`},
		{"unsubscribe", `{"user":"alice","channel":"chat:z"}`},
		{"refresh", `{"user":"alice","info":{"v":2}}`},
		{"disconnect", `{"user":"alice","disconnect":{"code":4000,"reason":"bye"}}`},
	} {
		require.Equal(t, `{"result":{}}`, call(t, api, c.method, c.body), c.method)
	}
	want := []string{`subscribe chat:z {"r":1}`, "unsubscribe chat:z", `refresh {"v":2}`, "disconnect bye"}
	require.Eventually(t, func() bool { return len(onA.got()) == len(want) }, 5*time.Second, time.Millisecond, "%v", onA.got())
	require.Equal(t, want, onA.got(), "commands keep their order")
	require.Eventually(t, func() bool { return a.NumClients() == 0 }, 5*time.Second, time.Millisecond)
}

// deadlineRPC reports whether its context carries a deadline.
type deadlineRPC struct{ got chan time.Duration }

func (d deadlineRPC) HandleRPC(ctx context.Context, _ hub.RPCRequest) ([]byte, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		d.got <- -1
	} else {
		d.got <- time.Until(dl)
	}
	return nil, nil
}

func TestRequestContextHasDeadline(t *testing.T) {
	_, b, _ := twoNodes(t)
	rpc := deadlineRPC{got: make(chan time.Duration, 1)}
	api, err := New(Config{Hub: b, Key: testKey, RPC: rpc, Timeout: time.Minute, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.Equal(t, `{"result":{}}`, call(t, api, "rpc", `{"method":"m"}`))
	d := <-rpc.got
	require.Greater(t, d, 50*time.Second)
	require.LessOrEqual(t, d, time.Minute)
}
