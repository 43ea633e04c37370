package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	server "github.com/switchboard-rt/switchboard/internal/relay"
)

// The whole game through an in-process relay, sped up.
func TestPongLocal(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(match{local: true, points: 2, tick: time.Millisecond}, &out))
	s := out.String()
	require.Contains(t, s, "first to 2")
	require.True(t, strings.Contains(s, "final score 2:") || strings.Contains(s, ":2\n"), s)
	require.Contains(t, s, "final score")
}

func TestPongNeedsPin(t *testing.T) {
	require.ErrorContains(t, run(match{addr: "127.0.0.1:1", pin: "xyz", points: 1, tick: time.Millisecond}, &bytes.Buffer{}), "-pin")
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
	require.NoError(t, run(m, &out))
	require.Contains(t, out.String(), "final score")

	m.token = ""
	err = run(m, &bytes.Buffer{})
	require.Error(t, err)
	// The relay answers ERROR 2 and closes with 3500; whichever the client reads first.
	require.Regexp(t, "authentication required|invalid token", err.Error())
}
