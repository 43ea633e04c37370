package main

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
)

// controlRecorder is a node of a control network that records the
// messages it receives (type and sender).
type controlRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *controlRecorder) HandleControl(data []byte) {
	var m struct {
		Type string `json:"t"`
		Node string `json:"n"`
	}
	if json.Unmarshal(data, &m) == nil {
		r.mu.Lock()
		r.msgs = append(r.msgs, m.Type+" "+m.Node)
		r.mu.Unlock()
	}
}

func (r *controlRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// A Run that fails after the hub started (here: the HTTP port is taken)
// shuts the hub down, so it stops announcing itself on the control plane
// (the plane closes with the other components) and the other nodes see
// it leave at once.
func TestFailedRunShutsTheHubDown(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	network := memory.NewControlNetwork()
	observer := network.Node()
	rec := &controlRecorder{}
	require.NoError(t, observer.Run("observer", rec))
	defer observer.Close(context.Background())

	cfg := testConfig()
	cfg.HTTPServer.Port = busy.Addr().(*net.TCPAddr).Port
	m := &Main{Config: cfg, Control: network.Node()}
	require.ErrorContains(t, m.Run(context.Background()), "listen")
	require.True(t, m.Hub().Closing(), "the hub was shut down")
	id := m.Hub().NodeID()
	require.Equal(t, []string{"node " + id, "leave " + id}, rec.got(),
		"announced at start, then left: no announcer is left running")
}
