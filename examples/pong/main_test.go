package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	server "github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// TestMain runs the program itself when PONG_MAIN holds its arguments
// (TestPongSignal starts it so).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("PONG_MAIN"); ok {
		os.Args = append([]string{"pong"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startRelay runs a relay for a test on addr (127.0.0.1:0 for a free
// port), with cert when not nil.
func startRelay(t *testing.T, addr string, cert *tls.Certificate) *server.Server {
	t.Helper()
	s, err := server.New(server.Config{Address: addr, Registerer: prometheus.NewRegistry(), EventRate: -1, Certificate: cert})
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func pinOf(s *server.Server) string {
	sum := sha256.Sum256(s.Certificate().Certificate[0])
	return hex.EncodeToString(sum[:])
}

// waitGame waits until both players are in a room of s.
func waitGame(t *testing.T, s *server.Server) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range s.Rooms() {
			if n == 2 {
				return true
			}
		}
		return false
	}, testenv.Wait, time.Millisecond, "no game on the relay")
}

// A relay restart in the middle of the game: both players reconnect,
// rejoin the room (recreated) and the game ends normally, the sends
// made between connections dropped.
func TestPongRidesOutRestart(t *testing.T) {
	s1 := startRelay(t, "127.0.0.1:0", nil)
	addr, cert := s1.Addr().String(), s1.Certificate()
	m := match{addr: addr, pin: pinOf(s1), points: 5, tick: time.Millisecond}
	var out lockedWriter
	var buf bytes.Buffer
	out.w = &buf
	res := make(chan error, 1)
	go func() { res <- run(context.Background(), m, &out) }()
	waitGame(t, s1)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, s1.Shutdown(ctx))
	s2 := startRelay(t, addr, &cert)
	select {
	case err := <-res:
		out.mu.Lock()
		defer out.mu.Unlock()
		require.NoError(t, err, buf.String())
		require.Contains(t, buf.String(), "host: relay rejoined")
		require.Contains(t, buf.String(), "guest: relay rejoined")
		require.Contains(t, buf.String(), "final score")
	case <-time.After(time.Minute):
		t.Fatal("the game did not end after the restart")
	}
	require.Eventually(t, func() bool { return s2.NumConnections() == 0 }, testenv.Wait, testenv.Tick)
}

// SIGINT (and SIGTERM) end the program with status 0 after both players
// left: the relay has no one left at once, not after the idle timeout.
func TestPongSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			s := startRelay(t, "127.0.0.1:0", nil)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PONG_MAIN=-addr "+s.Addr().String()+" -pin "+pinOf(s)+" -points 1000000")
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			waitGame(t, s)
			require.NoError(t, cmd.Process.Signal(sig))
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("exit %v, stderr %s", ee, stderr.String())
			}
			require.NoError(t, err)
			require.Contains(t, stderr.String(), "pong: stopped")
			// The idle timeout is 30 s: a connection gone without a close
			// would still be counted.
			require.Eventually(t, func() bool { return s.NumConnections() == 0 && len(s.Rooms()) == 0 }, 2*time.Second, testenv.Tick,
				"connections %d rooms %v", s.NumConnections(), s.Rooms())
		})
	}
}

// The whole game through an in-process relay, sped up.
func TestPongLocal(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), match{local: true, points: 2, tick: time.Millisecond}, &out))
	s := out.String()
	require.Contains(t, s, "first to 2")
	require.True(t, strings.Contains(s, "final score 2:") || strings.Contains(s, ":2\n"), s)
	require.Contains(t, s, "final score")
}

func TestPongNeedsPin(t *testing.T) {
	require.ErrorContains(t, run(context.Background(), match{addr: "127.0.0.1:1", pin: "xyz", points: 1, tick: time.Millisecond}, &bytes.Buffer{}), "-pin")
}

// Against a relay with relay.auth token: -token lets both players in, and
// without it the relay refuses them.
func TestPongToken(t *testing.T) {
	const secret = "pong-secret"
	s, err := server.New(server.Config{Address: "127.0.0.1:0", Registerer: prometheus.NewRegistry(), EventRate: -1,
		Auth: server.AuthToken, Verifier: auth.NewTokenVerifier(secret, "", "")})
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	sum := sha256.Sum256(s.Certificate().Certificate[0])
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "pong-player", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(secret))
	require.NoError(t, err)
	m := match{addr: s.Addr().String(), pin: hex.EncodeToString(sum[:]), token: tok, points: 1, tick: time.Millisecond}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), m, &out))
	require.Contains(t, out.String(), "final score")

	m.token = ""
	err = run(context.Background(), m, &bytes.Buffer{})
	require.Error(t, err)
	// The relay answers ERROR 2 and closes with 3500; whichever the client reads first.
	require.Regexp(t, "authentication required|invalid token", err.Error())
}
