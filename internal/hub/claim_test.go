package hub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// plainPresence is a presence manager without conditional adds.
type plainPresence struct{ hub.PresenceManager }

// ClaimPresence goes to the engine's conditional add, and fails with
// ErrNotAvailable when the engine has none (CanClaimPresence false).
func TestClaimPresenceDelegates(t *testing.T) {
	ctx := context.Background()
	h := newHub(t, chatNamespaces())
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1"}
	require.True(t, h.CanClaimPresence())
	res, err := h.ClaimPresence(ctx, "chat:a", info, hub.PresenceClaim{Max: 1, Key: "k"})
	require.NoError(t, err)
	require.True(t, res.Added)
	res, err = h.ClaimPresence(ctx, "chat:a", &hub.ClientInfo{ClientID: "c2"}, hub.PresenceClaim{Key: "k"})
	require.NoError(t, err)
	require.Equal(t, "c1", res.Holder)

	plain := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: plainPresence{memory.NewPresence()}, Namespaces: chatNamespaces()})
	t.Cleanup(func() { require.NoError(t, plain.Shutdown(ctx)) })
	require.False(t, plain.CanClaimPresence())
	_, err = plain.ClaimPresence(ctx, "chat:a", info, hub.PresenceClaim{Max: 1})
	require.True(t, errors.Is(err, hub.ErrNotAvailable), "%v", err)
}

// ReleasePresence removes the entry on an engine whose entries never
// expire (no hub.PresenceReleaser).
func TestReleasePresenceWithoutReleaser(t *testing.T) {
	ctx := context.Background()
	h := newHub(t, chatNamespaces())
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1"}
	require.NoError(t, h.AddPresence(ctx, "chat:a", info))
	require.NoError(t, h.ReleasePresence(ctx, "chat:a", "c1", "u1"))
	m, err := h.Presence(ctx, "chat:a")
	require.NoError(t, err)
	require.Empty(t, m)
}

// RemovePresenceIf goes to the engine's conditional removal, and fails
// with ErrNotAvailable when the engine has none.
func TestRemovePresenceIfDelegates(t *testing.T) {
	ctx := context.Background()
	h := newHub(t, chatNamespaces())
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1"}
	require.NoError(t, h.AddPresence(ctx, "chat:a", info))
	removed, err := h.RemovePresenceIf(ctx, "chat:a", &hub.ClientInfo{ClientID: "c1", UserID: "other"})
	require.NoError(t, err)
	require.False(t, removed)
	removed, err = h.RemovePresenceIf(ctx, "chat:a", info)
	require.NoError(t, err)
	require.True(t, removed)

	plain := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: plainPresence{memory.NewPresence()}, Namespaces: chatNamespaces()})
	t.Cleanup(func() { require.NoError(t, plain.Shutdown(ctx)) })
	_, err = plain.RemovePresenceIf(ctx, "chat:a", info)
	require.True(t, errors.Is(err, hub.ErrNotAvailable), "%v", err)
}
