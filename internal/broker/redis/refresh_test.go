package redis

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// clockBrokers returns two brokers on one prefix sharing a clock moved by
// advance, whose refreshes run only when a test calls refreshLocal.
func clockBrokers(t *testing.T) (b1, b2 *Broker, advance func(time.Duration)) {
	t.Helper()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := Config{Prefix: testPrefix(t), PresenceTTL: time.Minute, PresenceRefresh: time.Hour, Now: clock}
	return newTestBroker(t, cfg), newTestBroker(t, cfg), func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

func expiryOf(t *testing.T, b *Broker, ch, id string) float64 {
	t.Helper()
	v, err := b.client.Do(ctxT(t), b.client.B().Zscore().Key(b.key("presence.expire", ch)).Member(id).Build()).AsFloat64()
	require.NoError(t, err)
	return v
}

func tokenOf(t *testing.T, b *Broker, ch, id string) string {
	t.Helper()
	v, err := b.client.Do(ctxT(t), b.client.B().Hget().Key(b.key("presence.keys", ch)).Field("t:"+id).Build()).ToString()
	require.NoError(t, err)
	return v
}

func localTok(b *Broker, ch, id string) (string, bool) {
	b.local.mu.Lock()
	defer b.local.mu.Unlock()
	e, ok := b.local.entries[presenceKey{ch, id}]
	return e.tok, ok
}

// An entry holding this broker's info under another token of its own (a
// write the local record missed, or an older write a Redis restore
// brought back) is still refreshed, and the record adopts its token.
func TestRefreshAdoptsOwnOtherToken(t *testing.T) {
	b, _, advance := clockBrokers(t)
	ctx := ctxT(t)
	info := &hub.ClientInfo{ClientID: "s", UserID: "u"}
	require.NoError(t, b.AddPresence(ctx, "plain", "s", info))
	_, err := b.ClaimPresence(ctx, "keyed", "s", info, hub.PresenceClaim{Key: "5", Always: true})
	require.NoError(t, err)
	old := b.local.tokPrefix + "old"
	for _, ch := range []string{"plain", "keyed"} {
		require.NoError(t, b.client.Do(ctx, b.client.B().Hset().Key(b.key("presence.keys", ch)).FieldValue().FieldValue("t:s", old).Build()).Error())
	}
	first := expiryOf(t, b, "plain", "s")
	advance(time.Second)
	b.refreshLocal()
	for _, ch := range []string{"plain", "keyed"} {
		require.Greater(t, expiryOf(t, b, ch, "s"), first, ch+": refreshed")
		require.Equal(t, old, tokenOf(t, b, ch, "s"), ch+": its token kept")
		tok, ok := localTok(b, ch, "s")
		require.True(t, ok, ch)
		require.Equal(t, old, tok, ch+": adopted")
	}
	// Another process's token with the same info is not ours.
	require.NoError(t, b.client.Do(ctx, b.client.B().Hset().Key(b.key("presence.keys", "plain")).FieldValue().FieldValue("t:s", "ffff.1").Build()).Error())
	second := expiryOf(t, b, "plain", "s")
	advance(time.Second)
	b.refreshLocal()
	require.Equal(t, second, expiryOf(t, b, "plain", "s"), "another's write is not refreshed")
}

// Two writes of one entry by this process at once leave the local record
// with the token Redis holds: the second waits for the first's record.
func TestConcurrentOwnWritesRecordRedisOrder(t *testing.T) {
	b, _, _ := clockBrokers(t)
	ctx := ctxT(t)
	info := &hub.ClientInfo{ClientID: "s", UserID: "u"}
	k := presenceKey{"ch", "s"}
	var fired atomic.Bool
	second := make(chan error, 1)
	b.local.afterWrite = func() {
		if fired.Swap(true) {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err := b.ClaimPresence(ctx, "ch", "s", info, hub.PresenceClaim{Key: "5", Always: true})
			second <- err
		}()
		require.Eventually(t, func() bool {
			select {
			case <-done:
				return true
			default:
			}
			b.local.mu.Lock()
			defer b.local.mu.Unlock()
			return b.local.writing[k] != nil && b.local.writing[k].n == 2
		}, testenv.Wait, testenv.Tick)
	}
	_, err := b.ClaimPresence(ctx, "ch", "s", info, hub.PresenceClaim{Key: "5", Always: true})
	require.NoError(t, err)
	require.NoError(t, <-second)
	tok, ok := localTok(b, "ch", "s")
	require.True(t, ok)
	require.Equal(t, tokenOf(t, b, "ch", "s"), tok)
}

// A refresh finding another process's write drops the local record, so
// that after that process removes the entry no refresh writes the stale
// info back.
func TestRefreshDropsEntryTakenByAnotherProcess(t *testing.T) {
	b1, b2, _ := clockBrokers(t)
	ctx := ctxT(t)
	for _, keyed := range []bool{false, true} {
		ch := "plain"
		if keyed {
			ch = "keyed"
		}
		first := &hub.ClientInfo{ClientID: "s", UserID: "first"}
		second := &hub.ClientInfo{ClientID: "s", UserID: "second"}
		if keyed {
			_, err := b1.ClaimPresence(ctx, ch, "s", first, hub.PresenceClaim{Key: "5"})
			require.NoError(t, err)
			_, err = b2.ClaimPresence(ctx, ch, "s", second, hub.PresenceClaim{Key: "5", Always: true})
			require.NoError(t, err)
		} else {
			require.NoError(t, b1.AddPresence(ctx, ch, "s", first))
			require.NoError(t, b2.AddPresence(ctx, ch, "s", second))
		}
		b1.refreshLocal()
		_, ok := localTok(b1, ch, "s")
		require.False(t, ok, ch+": dropped")
		require.NoError(t, b2.RemovePresence(ctx, ch, "s", ""))
		b1.refreshLocal()
		m, err := b1.Presence(ctx, ch)
		require.NoError(t, err)
		require.Empty(t, m, ch+": no ghost")
	}
}

// A refresh over another process's expired entry does not inherit its
// claim key.
func TestRefreshOverExpiredEntryDropsItsKey(t *testing.T) {
	b1, b2, advance := clockBrokers(t)
	ctx := ctxT(t)
	require.NoError(t, b1.AddPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "first"}))
	_, err := b2.ClaimPresence(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "second"}, hub.PresenceClaim{Key: "5", Always: true})
	require.NoError(t, err)
	advance(2 * time.Minute) // b2's entry expires, not pruned yet
	b1.refreshLocal()
	m, err := b1.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Equal(t, "first", m["s"].UserID)
	fields, err := b1.client.Do(ctx, b1.client.B().Hkeys().Key(b1.key("presence.keys", "ch")).Build()).AsStrSlice()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"t:s"}, fields, "the expired entry's key is free")
}
