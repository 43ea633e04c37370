package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	server "github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func startBenchRelay(t *testing.T) (string, string) {
	t.Helper()
	return startBenchRelayWith(t, server.Config{})
}

// startBenchRelayWith starts a relay with cfg on a free loopback port and
// returns its address and certificate pin.
func startBenchRelayWith(t *testing.T, cfg server.Config) (string, string) {
	t.Helper()
	cfg.Address, cfg.Registerer = "127.0.0.1:0", prometheus.NewRegistry()
	s, err := server.New(cfg)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	cert := s.Certificate()
	sum := sha256.Sum256(cert.Certificate[0])
	return s.Addr().String(), hex.EncodeToString(sum[:])
}

func TestRelayBench(t *testing.T) {
	addr, pin := startBenchRelay(t)
	for _, c := range []struct {
		name       string
		protocol   string
		unreliable bool
	}{{"native", "native", false}, {"native unreliable", "native", true}, {"issun", "issun", false}} {
		t.Run(c.name, func(t *testing.T) {
			cmd := &RelayCmd{Addr: addr, Pin: pin, Protocol: c.protocol, Clients: 12, RoomSize: 4, Rate: 20,
				Duration: 500 * time.Millisecond, Payload: 32, Unreliable: c.unreliable, Sockets: 2,
				ServerPID: os.Getpid(), Idle: 10 * time.Millisecond}
			res, err := cmd.run(context.Background())
			require.NoError(t, err)
			require.Equal(t, 12, res.Connected, res.FirstError)
			require.Equal(t, 3, res.Rooms)
			require.Positive(t, res.Sent)
			require.Equal(t, res.Sent*3, res.Expected, "three receivers per event")
			if !c.unreliable {
				require.Equal(t, res.Expected, res.Delivered, "nothing lost")
				require.Zero(t, res.Duplicates)
			}
			require.Positive(t, res.Latency.Count)
			require.Positive(t, res.ServerRSSIdle, "--idle with --server-pid reads the RSS")
			require.Positive(t, res.ServerRSSAfter)
			if runtime.GOOS == "linux" {
				require.NotNil(t, res.KernelDrops, "the relay's UDP port is on this host")
			}
			var out bytes.Buffer
			res.text(&out)
			require.Contains(t, out.String(), "deliveries/s")
			require.NoError(t, res.failure())
		})
	}
}

// A relay with relay.auth token accepts the clients of --secret (native
// HELLO and the ISSUN SwitchboardAuth event) and refuses them without it.
func TestRelayBenchTokens(t *testing.T) {
	const secret = "bench-relay-secret"
	addr, pin := startBenchRelayWith(t, server.Config{Auth: server.AuthToken, Verifier: auth.NewTokenVerifier(secret, "", "")})
	for _, protocol := range []string{"native", "issun"} {
		t.Run(protocol, func(t *testing.T) {
			cmd := &RelayCmd{Addr: addr, Pin: pin, Protocol: protocol, Clients: 4, RoomSize: 2, Rate: 20,
				Duration: 300 * time.Millisecond, Payload: 32, Sockets: 1, Secret: secret}
			res, err := cmd.run(context.Background())
			require.NoError(t, err)
			require.Equal(t, 4, res.Connected, res.FirstError)
			require.Positive(t, res.Sent)
			require.Equal(t, res.Expected, res.Delivered, "nothing lost")

			cmd.Secret = ""
			res, err = cmd.run(context.Background())
			if err == nil {
				require.Zero(t, res.Connected, "no client gets in without a token")
				require.NotEmpty(t, res.FirstError)
				var out bytes.Buffer
				res.text(&out)
				require.Contains(t, out.String(), "refused or failed to connect: 4 of 4\nfirst error: ")
				require.NotContains(t, out.String(), "disconnected during the run")
			}
		})
	}
}

func TestRelayBenchFlags(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("# no tokens\n\n"), 0o600))
	for _, c := range []struct {
		cmd  RelayCmd
		want string
	}{
		{RelayCmd{Clients: 1, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true}, "--clients"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 8, Insecure: true}, "--payload"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64}, "--pin or --insecure"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Pin: "zz"}, `--pin: "zz" is not 64 hex digits`},
		{RelayCmd{Addr: "a:1", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Pin: " , "}, "--pin: no hash"},
		{RelayCmd{Addr: "nohost", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true}, `--addr: "nohost" is not host:port`},
		{RelayCmd{Addr: "a:1,b", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true}, `--addr: "b" is not host:port`},
		{RelayCmd{Addr: ":5000", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true}, `--addr: ":5000" is not host:port`},
		{RelayCmd{Addr: "a:1", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true,
			TokenFile: filepath.Join(t.TempDir(), "missing")}, "--token-file: token file: open"},
		{RelayCmd{Addr: "a:1", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true,
			TokenFile: empty}, "--token-file: token file " + empty + ": no tokens"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true, Protocol: "issun", Unreliable: true}, "--unreliable"},
		{RelayCmd{Addr: " , ", Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true}, "--addr: no address"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true, Sockets: -1}, "--sockets"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true, Idle: time.Second}, "--idle: needs --server-pid"},
		{RelayCmd{Clients: 10, RoomSize: 8, Rate: 1, Duration: time.Second, Payload: 64, Insecure: true, Secret: "s", TokenFile: "f"}, "mutually exclusive"},
	} {
		require.ErrorContains(t, c.cmd.validate(), c.want)
	}
}

// With several --addr, --spread rooms puts each room wholly on one relay.
func TestRelayBenchSpreadsRooms(t *testing.T) {
	a, _ := startBenchRelay(t)
	b, _ := startBenchRelay(t)
	cmd := &RelayCmd{Addr: a + "," + b, Spread: "rooms", Insecure: true, Protocol: "native", Clients: 8, RoomSize: 2, Rate: 20,
		Duration: 300 * time.Millisecond, Payload: 32}
	require.Equal(t, []string{a, b, a, b}, []string{cmd.addrFor(0, 0), cmd.addrFor(2, 1), cmd.addrFor(5, 2), cmd.addrFor(6, 3)})
	res, err := cmd.run(context.Background())
	require.NoError(t, err)
	require.Equal(t, 8, res.Connected, res.FirstError)
	require.Equal(t, 2, res.Relays)
	require.Equal(t, res.Expected, res.Delivered)
	require.Equal(t, res.Delivered, res.SameRelay.Count, "rooms never span relays here")
	require.Zero(t, res.CrossRelay.Count)
	cmd.Spread = "clients"
	require.Equal(t, []string{a, b, a}, []string{cmd.addrFor(0, 0), cmd.addrFor(1, 0), cmd.addrFor(2, 1)})
}

// Two relays with development certificates of their own: --pin takes
// both hashes, and each client accepts either.
func TestRelayBenchSeveralPins(t *testing.T) {
	a1, p1 := startBenchRelay(t)
	a2, p2 := startBenchRelay(t)
	require.NotEqual(t, p1, p2)
	cmd := &RelayCmd{Addr: a1 + "," + a2, Pin: p1 + "," + p2, Spread: "clients", Protocol: "native", Clients: 4, RoomSize: 2, Rate: 20,
		Duration: 200 * time.Millisecond, Payload: 32, Sockets: 1}
	require.NoError(t, cmd.validate())
	res, err := cmd.run(context.Background())
	require.NoError(t, err)
	require.Equal(t, 4, res.Connected, res.FirstError)

	cmd.Pin = p1 // the second relay's certificate is not pinned
	res, err = cmd.run(context.Background())
	if err == nil {
		require.Equal(t, 2, res.Connected)
		require.Contains(t, res.FirstError, "is not --pin")
	}
}
