// Package controltest is the conformance suite of hub.ControlPlane: every
// implementation (the memory loopback, Redis PUB/SUB) runs Run from its own
// tests, so that the hub can rely on one contract.
package controltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// NewNetwork returns a function that makes planes joined to one fresh
// network (the nodes sharing one engine). Planes that hold resources are
// released by the implementation's t.Cleanup.
type NewNetwork func(t *testing.T) func() hub.ControlPlane

// waitFor bounds how long a message may take to arrive.
const waitFor = 5 * time.Second

// recorder is a ControlHandler keeping what it received.
type recorder struct {
	mu  sync.Mutex
	got [][]byte
}

func (r *recorder) HandleControl(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, bytes.Clone(data))
}

func (r *recorder) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got...)
}

type node struct {
	id    string
	plane hub.ControlPlane
	rec   *recorder
}

func start(t *testing.T, newPlane func() hub.ControlPlane, n int) []node {
	t.Helper()
	out := make([]node, n)
	for i := range out {
		out[i] = node{id: fmt.Sprintf("node-%d-%s", i, rand.Text()[:8]), plane: newPlane(), rec: &recorder{}}
		require.NoError(t, out[i].plane.Run(out[i].id, out[i].rec))
	}
	return out
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

// eventually waits until r received want, in order, and nothing else.
func eventually(t *testing.T, r *recorder, want ...[]byte) {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.messages()) >= len(want) }, waitFor, 5*time.Millisecond)
	require.Equal(t, want, r.messages())
}

// Run checks the contract documented on hub.ControlPlane.
func Run(t *testing.T, newNetwork NewNetwork) {
	t.Run("BroadcastReachesEveryNodeUnchanged", func(t *testing.T) {
		ns := start(t, newNetwork(t), 3)
		big := make([]byte, 256<<10)
		_, _ = rand.Read(big)
		require.NoError(t, ns[0].plane.Broadcast(ctx(t), []byte("hello")))
		require.NoError(t, ns[1].plane.Broadcast(ctx(t), big))
		for _, n := range ns {
			eventually(t, n.rec, []byte("hello"), big)
		}
	})
	t.Run("SendReachesOnlyItsNode", func(t *testing.T) {
		ns := start(t, newNetwork(t), 3)
		require.NoError(t, ns[0].plane.Send(ctx(t), ns[2].id, []byte("for 2")))
		require.NoError(t, ns[0].plane.Send(ctx(t), ns[0].id, []byte("for 0")))
		// A marker broadcast after the sends: when it has arrived, so
		// would any misrouted send (order per sender).
		require.NoError(t, ns[0].plane.Broadcast(ctx(t), []byte("marker")))
		eventually(t, ns[2].rec, []byte("for 2"), []byte("marker"))
		eventually(t, ns[0].rec, []byte("for 0"), []byte("marker"))
		eventually(t, ns[1].rec, []byte("marker"))
	})
	t.Run("OrderPerSender", func(t *testing.T) {
		ns := start(t, newNetwork(t), 2)
		var want [][]byte
		for i := range 200 {
			m := []byte(fmt.Sprintf("m%03d", i))
			want = append(want, m)
			if i%2 == 0 {
				require.NoError(t, ns[0].plane.Broadcast(ctx(t), m))
			} else {
				require.NoError(t, ns[0].plane.Send(ctx(t), ns[1].id, m))
			}
		}
		eventually(t, ns[1].rec, want...)
	})
	t.Run("SendToAbsentNodeIsNoError", func(t *testing.T) {
		ns := start(t, newNetwork(t), 2)
		require.NoError(t, ns[0].plane.Send(ctx(t), "no-such-node", []byte("lost")))
		require.NoError(t, ns[0].plane.Broadcast(ctx(t), []byte("marker")))
		eventually(t, ns[1].rec, []byte("marker"))
	})
	t.Run("EndedContextFails", func(t *testing.T) {
		ns := start(t, newNetwork(t), 1)
		c, cancel := context.WithCancel(context.Background())
		cancel()
		require.Error(t, ns[0].plane.Broadcast(c, []byte("x")))
		require.Error(t, ns[0].plane.Send(c, ns[0].id, []byte("x")))
	})
	t.Run("ClosedNodeReceivesNothing", func(t *testing.T) {
		ns := start(t, newNetwork(t), 2)
		cl, ok := ns[1].plane.(hub.Closer)
		if !ok {
			t.Skip("the plane has no Close")
		}
		require.NoError(t, cl.Close(ctx(t)))
		require.NoError(t, ns[0].plane.Broadcast(ctx(t), []byte("after close")))
		require.NoError(t, ns[0].plane.Send(ctx(t), ns[1].id, []byte("after close")))
		eventually(t, ns[0].rec, []byte("after close"))
		require.Empty(t, ns[1].rec.messages())
	})
}
