package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// twoBrokers returns two brokers (two processes) on one prefix whose
// refreshes run only when a test calls refreshLocal.
func twoBrokers(t *testing.T) (*Broker, *Broker) {
	t.Helper()
	p := testPrefix(t)
	cfg := Config{Prefix: p, PresenceTTL: time.Minute, PresenceRefresh: time.Hour}
	return newTestBroker(t, cfg), newTestBroker(t, cfg)
}

// An entry removed during a refresh and written meanwhile by another
// process under the same client ID (a session handed over) is not taken
// by the refresher's second removal.
func TestRefreshUndoKeepsAnotherProcessEntry(t *testing.T) {
	b1, b2 := twoBrokers(t)
	ctx := ctxT(t)
	require.NoError(t, b1.AddPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "first"}))
	b1.local.afterSnapshot = func() {
		require.NoError(t, b1.RemovePresence(ctx, "ch", "s", ""))
		require.NoError(t, b2.AddPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "second"}))
	}
	b1.refreshLocal()
	m, err := b2.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Contains(t, m, "s")
	require.Equal(t, "second", m["s"].UserID)
}

// The same when this process writes the entry again with the same info
// after the snapshot and the removal: a new write, kept.
func TestRefreshUndoKeepsOwnNewWrite(t *testing.T) {
	b1, _ := twoBrokers(t)
	ctx := ctxT(t)
	info := &hub.ClientInfo{ClientID: "s", UserID: "u"}
	require.NoError(t, b1.AddPresence(ctx, "ch", "s", info))
	b1.local.afterSnapshot = func() {
		require.NoError(t, b1.RemovePresence(ctx, "ch", "s", ""))
		require.NoError(t, b1.AddPresence(ctx, "ch", "s", info))
		require.NoError(t, b1.ReleasePresence(ctx, "ch", "s")) // not held locally: the undo considers it
	}
	b1.refreshLocal()
	m, err := b1.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Contains(t, m, "s", "the write after the removal stays")
}

// A refresh in flight never replaces another process's write: the
// issuer's released entry, rewritten by the claimer meanwhile, stays the
// claimer's, with its claim key.
func TestRefreshKeepsAnotherProcessRewrite(t *testing.T) {
	b1, b2 := twoBrokers(t)
	ctx := ctxT(t)
	for _, keyed := range []bool{true, false} {
		ch := "plain"
		if keyed {
			ch = "keyed"
		}
		if keyed {
			_, err := b1.ClaimPresence(ctx, ch, "s", &hub.ClientInfo{ClientID: "s", UserID: "first"}, hub.PresenceClaim{Key: "5"})
			require.NoError(t, err)
		} else {
			require.NoError(t, b1.AddPresence(ctx, ch, "s", &hub.ClientInfo{ClientID: "s", UserID: "first"}))
		}
		b1.local.afterSnapshot = func() {
			require.NoError(t, b1.ReleasePresence(ctx, ch, "s"))
			if keyed {
				res, err := b2.ClaimPresence(ctx, ch, "s", &hub.ClientInfo{ClientID: "s", UserID: "second"}, hub.PresenceClaim{Key: "5", Always: true})
				require.NoError(t, err)
				require.True(t, res.Added)
			} else {
				require.NoError(t, b2.AddPresence(ctx, ch, "s", &hub.ClientInfo{ClientID: "s", UserID: "second"}))
			}
		}
		b1.refreshLocal()
		b1.local.afterSnapshot = nil
		m, err := b2.Presence(ctx, ch)
		require.NoError(t, err)
		require.Equal(t, "second", m["s"].UserID, ch)
		if keyed {
			res, err := b2.ClaimPresence(ctx, ch, "probe", &hub.ClientInfo{ClientID: "probe"}, hub.PresenceClaim{Key: "5"})
			require.NoError(t, err)
			require.Equal(t, "s", res.Holder)
			require.Equal(t, "second", res.HolderInfo.UserID)
		}
	}
}

// A refresh brings back an entry this process holds that is gone (a
// Redis that lost it) or expired.
func TestRefreshRestoresLostEntry(t *testing.T) {
	b1, _ := twoBrokers(t)
	ctx := ctxT(t)
	require.NoError(t, b1.AddPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s"}))
	require.NoError(t, b1.client.Do(ctx, b1.client.B().Del().Key(b1.presenceKeys("ch")...).Build()).Error())
	b1.refreshLocal()
	m, err := b1.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Contains(t, m, "s")
}

// A refresh under way blocks no add or claim: they run while it waits
// on Redis (the refresher holds no lock over its calls).
func TestRefreshBlocksNoClaim(t *testing.T) {
	b, _ := twoBrokers(t)
	ctx := ctxT(t)
	require.NoError(t, b.AddPresence(ctx, "ch", "x", &hub.ClientInfo{ClientID: "x"}))
	inHook := make(chan struct{})
	release := make(chan struct{})
	b.local.afterSnapshot = func() {
		close(inHook)
		<-release
	}
	done := make(chan struct{})
	go func() { defer close(done); b.refreshLocal() }()
	<-inHook
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := b.ClaimPresence(cctx, "ch", "y", &hub.ClientInfo{ClientID: "y"}, hub.PresenceClaim{Key: "1"})
	require.NoError(t, err)
	require.True(t, res.Added)
	require.NoError(t, b.AddPresence(cctx, "ch", "z", &hub.ClientInfo{ClientID: "z"}))
	close(release)
	<-done
}

// RemovePresenceIf removes an entry only while it holds the info given.
func TestRemovePresenceIf(t *testing.T) {
	b1, b2 := twoBrokers(t)
	ctx := ctxT(t)
	old := &hub.ClientInfo{ClientID: "s", UserID: "old", ChanInfo: []byte(`{"p":"a"}`)}
	res, err := b1.ClaimPresence(ctx, "ch", "s", old, hub.PresenceClaim{Key: "5"})
	require.NoError(t, err)
	require.True(t, res.Added)
	require.NoError(t, b2.AddPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "new"}))
	removed, err := b2.RemovePresenceIf(ctx, "ch", "s", old)
	require.NoError(t, err)
	require.False(t, removed, "rewritten meanwhile")
	m, err := b2.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Equal(t, "new", m["s"].UserID)

	removed, err = b1.RemovePresenceIf(ctx, "ch", "s", m["s"])
	require.NoError(t, err)
	require.True(t, removed)
	m, err = b2.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Empty(t, m)
	require.Equal(t, "", claimHolderOf(t, b2, "ch", "5"), "its key is free")
}

func claimHolderOf(t *testing.T, b *Broker, ch, key string) string {
	t.Helper()
	res, err := b.ClaimPresence(ctxT(t), ch, "probe", &hub.ClientInfo{ClientID: "probe"}, hub.PresenceClaim{Key: key})
	require.NoError(t, err)
	if res.Added {
		require.NoError(t, b.RemovePresence(ctxT(t), ch, "probe", ""))
	}
	return res.Holder
}
