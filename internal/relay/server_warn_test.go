package relay

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A relay without authentication on every interface says so at start; on
// loopback, or with tokens, it does not.
func TestRelayWarnsWhenOpenToTheNetwork(t *testing.T) {
	const warning = "relay is open to anyone"
	for _, c := range []struct {
		address string
		auth    string
		warns   bool
	}{
		{"0.0.0.0:0", AuthNone, true},
		{"127.0.0.1:0", AuthNone, false},
		{"0.0.0.0:0", AuthToken, false},
	} {
		var logs syncBuffer
		cfg := Config{Address: c.address, Auth: c.auth, Registerer: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		if c.auth == AuthToken {
			cfg.Verifier = auth.NewTokenVerifier("warn-test-secret", "", "")
		}
		s, err := New(cfg)
		require.NoError(t, err)
		s.Start()
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
		require.NoError(t, s.Shutdown(ctx))
		cancel()
		require.Equal(t, c.warns, bytes.Contains([]byte(logs.String()), []byte(warning)), "%s %s: %s", c.address, c.auth, logs.String())
	}
}
