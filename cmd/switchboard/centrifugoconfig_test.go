package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The Centrifugo configuration of docs/benchmarks.md, plus keys that only
// switch off or tune Centrifugo features Switchboard lacks, starts the
// server with one warning naming those keys; Centrifugo's environment
// variable names work as aliases.
func TestCentrifugoConfigStarts(t *testing.T) {
	doc, err := os.ReadFile("../../docs/benchmarks.md")
	require.NoError(t, err)
	block := regexp.MustCompile("(?s)same configuration.*?```json\n(.*?)```").FindSubmatch(doc)
	require.NotNil(t, block, "no Centrifugo configuration in docs/benchmarks.md")
	var cfgDoc map[string]any
	require.NoError(t, json.Unmarshal(block[1], &cfgDoc))
	cfgDoc["http_server"].(map[string]any)["port"] = 0
	cfgDoc["usage_stats"] = map[string]any{"disabled": true}
	cfgDoc["admin"] = map[string]any{"enabled": false, "password": "p", "secret": "s", "insecure": false}
	cfgDoc["prometheus"] = map[string]any{"enabled": true}
	cfgDoc["health"] = map[string]any{"enabled": true}
	path := filepath.Join(t.TempDir(), "config.json")
	b, err := json.Marshal(cfgDoc)
	require.NoError(t, err)
	require.NoError(t, writeFile(path, string(b)))

	t.Setenv("CENTRIFUGO_HTTP_API_KEY", "alias-api-key")
	t.Setenv("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "alias-secret")
	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, "alias-secret", cfg.Client.Token.HMACSecretKey)

	var logs lockedBuffer
	m := &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, m.Shutdown(ctx))
	})

	var warnings []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "without effect") {
			warnings = append(warnings, line)
		}
	}
	require.Len(t, warnings, 1, "logs:\n%s", logs.String())
	for _, key := range []string{"usage_stats.disabled", "admin.insecure", "prometheus.enabled", "health.enabled"} {
		require.Contains(t, warnings[0], key)
	}

	// The server answers with the aliased API key.
	req, err := http.NewRequest(http.MethodPost, m.URL()+"/api/info", strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", "alias-api-key")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A key that would turn a missing feature on still refuses to start.
	cfgDoc["admin"] = map[string]any{"enabled": true, "insecure": true}
	b, err = json.Marshal(cfgDoc)
	require.NoError(t, err)
	require.NoError(t, writeFile(path, string(b)))
	_, err = config.Load(path)
	require.ErrorContains(t, err, `key "admin.insecure" is a Centrifugo feature not supported by Switchboard`)
}
