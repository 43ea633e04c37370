package redis

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
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

// slowClient holds every single command naming a key that contains slow
// until release is closed (a Redis slow to answer one call).
type slowClient struct {
	rueidis.Client
	slow    string
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (c *slowClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	for _, s := range cmd.Commands() {
		if strings.Contains(s, c.slow) {
			c.once.Do(func() { close(c.entered) })
			<-c.release
			break
		}
	}
	return c.Client.Do(ctx, cmd)
}

// One add slow to answer delays no other add or claim, even while a
// refresh runs: nothing waits on a lock that a Redis call holds.
func TestSlowAddBlocksNoClaimDuringRefresh(t *testing.T) {
	rc, err := NewClient(testenv.RedisURL(t), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(rc.Close)
	sc := &slowClient{Client: rc, slow: "slowch", entered: make(chan struct{}), release: make(chan struct{})}
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := newTestBroker(t, Config{Client: sc, Prefix: testPrefix(t), PresenceTTL: time.Minute, PresenceRefresh: time.Hour, Now: clock})
	ctx := ctxT(t)
	require.NoError(t, b.AddPresence(ctx, "ch", "x", &hub.ClientInfo{ClientID: "x"}))
	var released sync.Once
	release := func() { released.Do(func() { close(sc.release) }) }
	t.Cleanup(release)
	slowDone := make(chan error, 1)
	go func() { slowDone <- b.AddPresence(ctx, "slowch", "y", &hub.ClientInfo{ClientID: "y"}) }()
	<-sc.entered
	score := func() float64 {
		v, err := rc.Do(ctx, rc.B().Zscore().Key(b.key("presence.expire", "ch")).Member("x").Build()).AsFloat64()
		require.NoError(t, err)
		return v
	}
	first := score()
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	refreshed := make(chan struct{})
	go func() { defer close(refreshed); b.refreshLocal() }()
	require.Eventually(t, func() bool { return score() > first }, testenv.Wait, testenv.Tick, "the refresh wrote")

	claimed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := b.ClaimPresence(cctx, "ch", "z", &hub.ClientInfo{ClientID: "z"}, hub.PresenceClaim{Key: "1"})
		claimed <- err
	}()
	select {
	case err := <-claimed:
		require.NoError(t, err)
	case <-time.After(time.Second):
		release()
		t.Fatal("a claim with 50 ms waited behind the slow add")
	}
	<-refreshed
	release()
	require.NoError(t, <-slowDone)
}
