package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// relay-cert writes a certificate browsers accept by hash; the relay
// serves it from relay.cert_file/key_file.
func TestRelayCertCommand(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "r.crt"), filepath.Join(dir, "r.key")
	code, out, stderr := runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "sha256: ")
	sum := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "sha256: ", 2)[1], "\n", 2)[0])

	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "exists; use --force")
	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", key, "--force", "--valid", "720h")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--valid")

	cfg := testConfig()
	cfg.Relay.Enabled, cfg.Relay.Address = true, "127.0.0.1:0"
	cfg.Relay.CertFile, cfg.Relay.KeyFile = cert, key
	m := startServer(t, cfg)
	c := relaytest.DialISSUN(t, m.RelayAddr(), 7)
	peer := c.QC.ConnectionState().TLS.PeerCertificates[0]
	got := sha256.Sum256(peer.Raw)
	require.Equal(t, sum, hex.EncodeToString(got[:]), "the printed hash is the served certificate's")
	require.Less(t, peer.NotAfter.Sub(peer.NotBefore), 14*24*time.Hour)
	require.Equal(t, x509.ECDSA, peer.PublicKeyAlgorithm)
	require.Contains(t, peer.DNSNames, "localhost")
}

func TestRelayBadCertFile(t *testing.T) {
	cfg := testConfig()
	cfg.Relay.Enabled, cfg.Relay.Address = true, "127.0.0.1:0"
	cfg.Relay.CertFile, cfg.Relay.KeyFile = filepath.Join(t.TempDir(), "missing.crt"), "x.key"
	m := &Main{Config: cfg}
	err := m.Run(t.Context())
	require.ErrorContains(t, err, "relay.cert_file")
	require.NoError(t, m.Shutdown(t.Context()))
}
