package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// Interop tests with the official Go client, github.com/centrifugal/centrifuge-go.

type goClient struct {
	*centrifuge.Client
	mu        sync.Mutex
	pubs      []string
	joins     []string
	leaves    []string
	connected chan struct{}
	errs      chan error
}

func newGoClient(t *testing.T, m *Main, user string, protobuf bool, tok string) *goClient {
	t.Helper()
	return newGoClientURL(t, "ws://"+m.Addr()+"/connection/websocket", protobuf, tok)
}

// newGoClientURL is newGoClient for a server known only by its WebSocket URL.
func newGoClientURL(t *testing.T, url string, protobuf bool, tok string) *goClient {
	t.Helper()
	cfg := centrifuge.Config{Token: tok}
	var c *centrifuge.Client
	if protobuf {
		c = centrifuge.NewProtobufClient(url+"?cf_protocol=protobuf", cfg)
	} else {
		c = centrifuge.NewJsonClient(url, cfg)
	}
	gc := &goClient{Client: c, connected: make(chan struct{}, 8), errs: make(chan error, 16)}
	c.OnConnected(func(centrifuge.ConnectedEvent) { gc.connected <- struct{}{} })
	c.OnError(func(e centrifuge.ErrorEvent) {
		select {
		case gc.errs <- e.Error:
		default:
		}
	})
	t.Cleanup(c.Close)
	return gc
}

func (gc *goClient) sub(t *testing.T, ch string, cfg centrifuge.SubscriptionConfig) (*centrifuge.Subscription, chan centrifuge.SubscribedEvent) {
	t.Helper()
	s, err := gc.NewSubscription(ch, cfg)
	require.NoError(t, err)
	subscribed := make(chan centrifuge.SubscribedEvent, 8)
	s.OnSubscribed(func(e centrifuge.SubscribedEvent) { subscribed <- e })
	s.OnPublication(func(e centrifuge.PublicationEvent) {
		gc.mu.Lock()
		gc.pubs = append(gc.pubs, string(e.Data))
		gc.mu.Unlock()
	})
	s.OnJoin(func(e centrifuge.JoinEvent) {
		gc.mu.Lock()
		gc.joins = append(gc.joins, e.User)
		gc.mu.Unlock()
	})
	s.OnLeave(func(e centrifuge.LeaveEvent) {
		gc.mu.Lock()
		gc.leaves = append(gc.leaves, e.User)
		gc.mu.Unlock()
	})
	return s, subscribed
}

func (gc *goClient) publications() []string {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	return append([]string(nil), gc.pubs...)
}

// receive takes one value from ch, failing t after testenv.Wait.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testenv.Wait):
		t.Fatalf("timeout waiting for %s", what)
	}
	var zero T
	return zero
}

func TestCentrifugeGoInterop(t *testing.T) {
	for _, protobuf := range []bool{false, true} {
		t.Run(fmt.Sprintf("protobuf=%v", protobuf), func(t *testing.T) {
			m := startServer(t, testConfig())
			ctx := context.Background()

			alice := newGoClient(t, m, "alice", protobuf, token(t, "alice", time.Hour))
			sub, subscribed := alice.sub(t, "chat:room", centrifuge.SubscriptionConfig{})
			require.NoError(t, sub.Subscribe())
			require.NoError(t, alice.Connect())
			receive(t, alice.connected, "alice connected")
			ev := receive(t, subscribed, "alice subscribed")
			require.True(t, ev.Recoverable)

			// Publication from the server API reaches the subscriber.
			status, body := apiCall(t, m, "publish", map[string]any{"channel": "chat:room", "data": map[string]any{"text": "from api"}})
			require.Equal(t, 200, status)
			require.Contains(t, body, "result")
			require.Eventually(t, func() bool { return len(alice.publications()) == 1 }, testenv.Wait, testenv.Tick, "api publication delivered")
			require.JSONEq(t, `{"text":"from api"}`, alice.publications()[0])

			// Client publish.
			_, err := sub.Publish(ctx, []byte(`{"text":"from alice"}`))
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(alice.publications()) == 2 }, testenv.Wait, testenv.Tick, "client publication delivered")

			// Join of a second user, presence and stats, leave.
			bob := newGoClient(t, m, "bob", protobuf, token(t, "bob", time.Hour))
			bsub, bsubscribed := bob.sub(t, "chat:room", centrifuge.SubscriptionConfig{})
			require.NoError(t, bsub.Subscribe())
			require.NoError(t, bob.Connect())
			receive(t, bsubscribed, "bob subscribed")
			require.Eventually(t, func() bool {
				alice.mu.Lock()
				defer alice.mu.Unlock()
				return strings.Contains(strings.Join(alice.joins, ","), "bob")
			}, testenv.Wait, testenv.Tick, "alice sees bob join")
			pres, err := sub.Presence(ctx)
			require.NoError(t, err)
			require.Len(t, pres.Clients, 2)
			stats, err := sub.PresenceStats(ctx)
			require.NoError(t, err)
			require.Equal(t, 2, stats.NumClients)
			require.Equal(t, 2, stats.NumUsers)
			require.NoError(t, bsub.Unsubscribe())
			require.Eventually(t, func() bool {
				alice.mu.Lock()
				defer alice.mu.Unlock()
				return len(alice.leaves) == 1 && alice.leaves[0] == "bob"
			}, testenv.Wait, testenv.Tick, "alice sees bob leave")

			// History.
			hist, err := sub.History(ctx, centrifuge.WithHistoryLimit(10))
			require.NoError(t, err)
			require.Len(t, hist.Publications, 2)
			require.Equal(t, uint64(2), hist.Offset)

			// Forbidden channel and unknown namespace.
			_, err = alice.Publish(ctx, "locked:x", []byte(`{}`))
			require.ErrorContains(t, err, "permission denied")
			locked, lockedSubscribed := alice.sub(t, "locked:x", centrifuge.SubscriptionConfig{})
			subErr := make(chan error, 1)
			locked.OnError(func(e centrifuge.SubscriptionErrorEvent) {
				select {
				case subErr <- e.Error:
				default:
				}
			})
			require.NoError(t, locked.Subscribe())
			err = receive(t, subErr, "forbidden subscribe error")
			require.ErrorContains(t, err, "permission denied")
			require.Empty(t, lockedSubscribed)

			// RPC with no handler configured.
			_, err = alice.RPC(ctx, "anything", []byte(`{}`))
			require.ErrorContains(t, err, "method not found")
		})
	}
}

func TestCentrifugeGoRecovery(t *testing.T) {
	m := startServer(t, testConfig())
	c := newGoClient(t, m, "carol", false, token(t, "carol", time.Hour))
	sub, subscribed := c.sub(t, "chat:recover", centrifuge.SubscriptionConfig{})
	require.NoError(t, sub.Subscribe())
	require.NoError(t, c.Connect())
	receive(t, subscribed, "subscribed")
	apiCall(t, m, "publish", map[string]any{"channel": "chat:recover", "data": map[string]any{"n": 1}})
	require.Eventually(t, func() bool { return len(c.publications()) == 1 }, testenv.Wait, testenv.Tick, "first publication")

	// Force a reconnect, publish while the client is away.
	_, _ = apiCall(t, m, "disconnect", map[string]any{"user": "carol", "disconnect": map[string]any{"code": 3011, "reason": "force reconnect"}})
	require.Eventually(t, func() bool { return m.Hub().NumClients() == 0 }, testenv.Wait, testenv.Tick, "client disconnected")
	apiCall(t, m, "publish", map[string]any{"channel": "chat:recover", "data": map[string]any{"n": 2}})
	apiCall(t, m, "publish", map[string]any{"channel": "chat:recover", "data": map[string]any{"n": 3}})

	ev := receive(t, subscribed, "resubscribed")
	require.True(t, ev.WasRecovering)
	require.True(t, ev.Recovered)
	require.Eventually(t, func() bool { return len(c.publications()) == 3 }, testenv.Wait, testenv.Tick, "missed publications recovered")
	require.JSONEq(t, `{"n":3}`, c.publications()[2])
}

func TestCentrifugeGoExpiredToken(t *testing.T) {
	m := startServer(t, testConfig())
	tok, err := auth.SignConnect(testSecret, "dave", time.Hour, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	url := "ws://" + m.Addr() + "/connection/websocket"
	refreshed := make(chan struct{}, 1)
	c := centrifuge.NewJsonClient(url, centrifuge.Config{Token: tok, GetToken: func(centrifuge.ConnectionTokenEvent) (string, error) {
		select {
		case refreshed <- struct{}{}:
		default:
		}
		return token(t, "dave", time.Hour), nil
	}})
	t.Cleanup(c.Close)
	connected := make(chan struct{}, 1)
	c.OnConnected(func(centrifuge.ConnectedEvent) { connected <- struct{}{} })
	require.NoError(t, c.Connect())
	// The server answers "token expired" (109); the client asks for a new one.
	receive(t, refreshed, "token refresh after expiry")
	receive(t, connected, "connected with fresh token")
}
