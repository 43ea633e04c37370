package hub_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// BenchmarkClusterChannels: a channels survey over three loopback nodes
// with 1,000 channels each (encoding, decoding and merging the answers).
func BenchmarkClusterChannels(b *testing.B) {
	cl := newCluster(b, "a", "b", "c")
	for _, name := range []string{"a", "b", "c"} {
		for i := range 1000 {
			require.NoError(b, cl.hubs[name].AddSubscriber(fmt.Sprintf("chat:%s-%d", name, i), &fakeSub{}, false))
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if n := len(cl.hubs["a"].ClusterChannels(ctx)); n != 3000 {
			b.Fatalf("%d channels", n)
		}
	}
}

// BenchmarkDisconnectAcrossNodes: an API disconnect sent on one node for a
// user connected to another (loopback; the command is queued there).
func BenchmarkDisconnectAcrossNodes(b *testing.B) {
	cl := newCluster(b, "a", "b")
	connect(b, cl.hubs["a"], "a1", "alice")
	ctx := context.Background()
	d := hub.Disconnect{Code: 4000, Reason: "x"}
	b.ReportAllocs()
	for b.Loop() {
		// The whitelist keeps the client connected, so every iteration
		// reaches it.
		if err := cl.hubs["b"].DisconnectUser(ctx, "alice", "", d, []string{"a1"}); err != nil {
			b.Fatal(err)
		}
	}
}
