package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
)

const (
	testSecret = "test-secret-key"
	testAPIKey = "test-api-key"
)

// testConfig is a config with a fully featured "chat" namespace and a
// "locked" namespace where clients may do nothing.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.HTTPServer.Port = 0
	cfg.Client.Token.HMACSecretKey = testSecret
	cfg.HTTPAPI.Key = testAPIKey
	chat := config.NamespaceOptions{
		Presence: true, JoinLeave: true, ForcePushJoinLeave: true, HistorySize: 100,
		HistoryTTL: config.Duration(5 * time.Minute), ForceRecovery: true,
		AllowSubscribeForClient: true, AllowPublishForSubscriber: true,
		AllowPresenceForSubscriber: true, AllowHistoryForSubscriber: true, AllowUserLimitedChannels: true,
	}
	cfg.Channel.Namespaces = []config.Namespace{
		{Name: "chat", NamespaceOptions: chat},
		{Name: "locked"},
	}
	cfg.Channel.WithoutNamespace = config.NamespaceOptions{AllowSubscribeForClient: true, AllowPublishForSubscriber: true}
	return cfg
}

// startServer boots the whole program on port 0 and stops it with the test.
func startServer(t testing.TB, cfg config.Config) *Main {
	t.Helper()
	return startMain(t, &Main{Config: cfg})
}

// startMain is startServer for a Main set up by the caller (a Logger).
func startMain(t testing.TB, m *Main) *Main {
	t.Helper()
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, m.Shutdown(ctx))
	})
	return m
}

func token(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.SignConnect(testSecret, user, ttl, time.Now())
	require.NoError(t, err)
	return tok
}

// apiCall posts to /api/{method} and returns the HTTP status and decoded body.
func apiCall(t testing.TB, m *Main, method string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, m.URL()+"/api/"+method, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out), "body: %s", data)
	return resp.StatusCode, out
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
