package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func TestRelayOffByDefault(t *testing.T) {
	m := startServer(t, testConfig())
	require.Empty(t, m.RelayAddr())
}

func TestRelayPortFlag(t *testing.T) {
	cfg := testConfig()
	require.NoError(t, relayPort(&cfg, 5123))
	require.True(t, cfg.Relay.Enabled)
	require.Equal(t, ":5123", cfg.Relay.Address)
	require.ErrorContains(t, relayPort(&cfg, 70000), "--relay-port: 70000 is out of range")
	cfg.Relay.Address = "nonsense"
	require.ErrorContains(t, relayPort(&cfg, 1), "relay.address")
}

// An ISSUN client joins a room through the whole program; the server
// API's presence of relay:R lists it, and the relay's metrics are served.
func TestRelayRoomPresenceThroughAPI(t *testing.T) {
	cfg := testConfig()
	cfg.Relay.Enabled = true
	cfg.Relay.Address = "127.0.0.1:0"
	m := startServer(t, cfg)
	require.NotEmpty(t, m.RelayAddr())

	a := relaytest.DialISSUN(t, m.RelayAddr(), 1)
	b := relaytest.DialISSUN(t, m.RelayAddr(), 2)
	for _, c := range []*relaytest.ISSUN{a, b} {
		c.Send(&wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "pong::SwitchboardJoin",
			Payload: wire.RoomRequest{Room: "table-1"}.Append(nil)})
		require.Equal(t, "pong::SwitchboardJoined", c.Next().TypeName)
	}
	a.Send(&wire.Event{Scope: wire.Scope{Kind: wire.ScopeBroadcast}, TypeName: "pong::Move", Payload: []byte{1}})
	for ev := b.Next(); ev.TypeName != "pong::Move"; ev = b.Next() {
	}

	status, body := apiCall(t, m, "presence", map[string]any{"channel": "relay:table-1"})
	require.Equal(t, 200, status, "%v", body)
	presence := body["result"].(map[string]any)["presence"].(map[string]any)
	require.Len(t, presence, 2)

	a.Close()
	b.Close()
	require.Eventually(t, func() bool {
		_, body := apiCall(t, m, "presence", map[string]any{"channel": "relay:table-1"})
		p, _ := body["result"].(map[string]any)["presence"].(map[string]any)
		return len(p) == 0
	}, testenv.Wait, testenv.Tick)
}
