package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	clientrelay "github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func relayConfig() config.Config {
	cfg := testConfig()
	cfg.Relay.Enabled = true
	cfg.Relay.Address = "127.0.0.1:0"
	return cfg
}

// dialRelay connects a native client (client/relay) as user to m's relay.
func dialRelay(t *testing.T, m *Main, user string, o clientrelay.Options) *clientrelay.Client {
	t.Helper()
	cert := m.relay.Certificate()
	o.CertHashes = [][32]byte{sha256.Sum256(cert.Certificate[0])}
	o.Token = token(t, user, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	c, err := clientrelay.Dial(ctx, m.RelayAddr(), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// issunRelay connects an ISSUN-profile client authenticated as user.
func issunRelay(t *testing.T, m *Main, id wire.NodeID, user string) *relaytest.ISSUN {
	t.Helper()
	c := relaytest.DialISSUN(t, m.RelayAddr(), id)
	c.Send(&wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "pong::SwitchboardAuth",
		Payload: wire.AuthRequest{Token: token(t, user, time.Hour)}.Append(nil)})
	require.Equal(t, "pong::SwitchboardWelcome", c.Next().TypeName)
	return c
}

// requireGoAway waits for c to end and returns the GOAWAY that ended it.
func requireGoAway(t *testing.T, c *clientrelay.Client) wire.GoAway {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testenv.Wait):
		t.Fatal("the relay client was not disconnected")
	}
	var g *clientrelay.GoAwayError
	require.ErrorAs(t, c.Err(), &g)
	return g.GoAway
}

// requireNotResumable tries to resume c's session and expects a refusal.
func requireNotResumable(t *testing.T, m *Main, c *clientrelay.Client, user string) {
	t.Helper()
	cert := m.relay.Certificate()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	r, err := clientrelay.Dial(ctx, m.RelayAddr(), clientrelay.Options{ResumeToken: c.ResumeToken(),
		Token: token(t, user, time.Hour), CertHashes: [][32]byte{sha256.Sum256(cert.Certificate[0])}})
	if err == nil {
		_ = r.Close()
		t.Fatal("a disconnected session was resumed")
	}
	var refusedErr *clientrelay.RequestError
	var refusedClose *clientrelay.RefusedError
	require.True(t, errors.As(err, &refusedErr) || errors.As(err, &refusedClose), "refused: %v", err)
}

// The server API's disconnect reaches relay connections: the native one
// gets GOAWAY with the code and reason, the ISSUN one the QUIC close, and
// the session cannot be resumed. info counts them; a whitelisted session
// and another user's stay.
func TestServerAPIDisconnectsRelayConnections(t *testing.T) {
	m := startServer(t, relayConfig())
	native := dialRelay(t, m, "alice", clientrelay.Options{Name: "alice-native"})
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	_, err := native.Join(ctx, "arena", clientrelay.JoinOptions{Create: true})
	require.NoError(t, err)
	issun := issunRelay(t, m, 2, "alice")
	kept := dialRelay(t, m, "alice", clientrelay.Options{Name: "alice-kept"})
	bob := dialRelay(t, m, "bob", clientrelay.Options{Name: "bob"})

	_, body := apiCall(t, m, "info", map[string]any{})
	node := body["result"].(map[string]any)["nodes"].([]any)[0].(map[string]any)
	require.Equal(t, float64(4), node["num_clients"], "relay connections are counted")
	require.Equal(t, float64(2), node["num_users"])

	status, body := apiCall(t, m, "disconnect", map[string]any{"user": "alice",
		"disconnect": map[string]any{"code": 4001, "reason": "banned"}, "whitelist": []string{kept.SessionID()}})
	require.Equal(t, 200, status, "%v", body)
	require.Contains(t, body, "result")

	require.Equal(t, wire.GoAway{Code: 4001, Reason: "banned"}, requireGoAway(t, native))
	ae := issun.ClosedWith()
	require.Equal(t, uint64(4001), uint64(ae.ErrorCode))
	require.Equal(t, "banned", ae.ErrorMessage)
	requireNotResumable(t, m, native, "alice")

	// One session by its id (the relay's session id, the presence
	// client id), with the default code: force disconnect, no reconnect.
	status, body = apiCall(t, m, "disconnect", map[string]any{"user": "alice", "client": kept.SessionID()})
	require.Equal(t, 200, status, "%v", body)
	require.Equal(t, wire.GoAway{Code: 3503, Reason: "force disconnect"}, requireGoAway(t, kept))
	select {
	case <-bob.Done():
		t.Fatalf("bob was disconnected: %v", bob.Err())
	default:
	}
	require.Eventually(t, func() bool {
		_, body := apiCall(t, m, "info", map[string]any{})
		return body["result"].(map[string]any)["nodes"].([]any)[0].(map[string]any)["num_clients"] == float64(1)
	}, testenv.Wait, testenv.Tick, "only bob is left")
}

// The server API's refresh with expired closes relay connections as an
// expired token does (3005).
func TestServerAPIRefreshExpiresRelayConnections(t *testing.T) {
	m := startServer(t, relayConfig())
	native := dialRelay(t, m, "carol", clientrelay.Options{})
	issun := issunRelay(t, m, 3, "carol")
	status, body := apiCall(t, m, "refresh", map[string]any{"user": "carol", "expired": true})
	require.Equal(t, 200, status, "%v", body)
	require.Equal(t, wire.GoAway{Code: 3005, Reason: "connection expired", RetryAfterMillis: 1000}, requireGoAway(t, native),
		"3005 invites a reconnect with a fresh token")
	require.Equal(t, uint64(3005), uint64(issun.ClosedWith().ErrorCode))
}

// With the Redis engine, a disconnect sent to node A reaches relay
// connections on node B.
func TestRedisServerAPIDisconnectsRelayOnOtherNode(t *testing.T) {
	node := redisNodes(t, func(cfg *config.Config) {
		cfg.Relay.Enabled = true
		cfg.Relay.Address = "127.0.0.1:0"
	})
	a, b := node(), node()
	require.Eventually(t, func() bool {
		_, body := apiCall(t, a, "info", map[string]any{})
		return len(body["result"].(map[string]any)["nodes"].([]any)) == 2
	}, testenv.Wait, testenv.Tick, "A knows B")
	native := dialRelay(t, b, "dave", clientrelay.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	_, err := native.Join(ctx, "lobby", clientrelay.JoinOptions{Create: true})
	require.NoError(t, err)
	issun := issunRelay(t, b, 4, "dave")

	status, body := apiCall(t, a, "disconnect", map[string]any{"user": "dave",
		"disconnect": map[string]any{"code": 4002, "reason": "moved"}})
	require.Equal(t, 200, status, "%v", body)
	require.Equal(t, wire.GoAway{Code: 4002, Reason: "moved"}, requireGoAway(t, native))
	ae := issun.ClosedWith()
	require.Equal(t, uint64(4002), uint64(ae.ErrorCode))
	require.Equal(t, "moved", ae.ErrorMessage)
	requireNotResumable(t, b, native, "dave")
}
