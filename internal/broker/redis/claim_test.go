package redis

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Claims racing on two brokers (two processes) admit exactly the cap, and
// one holder per key.
func TestClaimPresenceRaceAcrossBrokers(t *testing.T) {
	prefix := testPrefix(t)
	bs := []*Broker{newTestBroker(t, Config{Prefix: prefix}), newTestBroker(t, Config{Prefix: prefix})}
	ctx := ctxT(t)
	const n, cap = 40, 7
	var added, keyed atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "c" + strconv.Itoa(i)
			b := bs[i%2]
			res, err := b.ClaimPresence(ctx, "room", id, &hub.ClientInfo{ClientID: id}, hub.PresenceClaim{Max: cap})
			if err == nil && res.Added {
				added.Add(1)
			}
			res, err = b.ClaimPresence(ctx, "dir", id, &hub.ClientInfo{ClientID: id}, hub.PresenceClaim{Key: "node-5"})
			if err == nil && res.Added {
				keyed.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(cap), added.Load())
	require.Equal(t, int32(1), keyed.Load())
	m, err := bs[0].Presence(ctx, "room")
	require.NoError(t, err)
	require.Len(t, m, cap)
}

// An expired entry counts for neither the cap nor its key, and its key
// fields go with it; the refresher keeps a claimed entry and its key (and
// the key hash's TTL) alive past PresenceTTL, and takes a lost key again.
func TestClaimPresenceExpiryAndRefresh(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	prefix := testPrefix(t)
	// a refreshes its entries; b never does (a process that died).
	a := newTestBroker(t, Config{Prefix: prefix, PresenceTTL: time.Minute, PresenceRefresh: 10 * time.Millisecond, Now: clock})
	b := newTestBroker(t, Config{Prefix: prefix, PresenceTTL: time.Minute, PresenceRefresh: -1, Now: clock})
	require.NoError(t, a.Run(brokertest.NewRecorder()))
	ctx := ctxT(t)
	claim := func(br *Broker, id, key string, max int) hub.ClaimResult {
		t.Helper()
		res, err := br.ClaimPresence(ctx, "r", id, &hub.ClientInfo{ClientID: id}, hub.PresenceClaim{Max: max, Key: key})
		require.NoError(t, err)
		return res
	}
	require.True(t, claim(a, "live", "1", 0).Added)
	require.True(t, claim(b, "dead", "2", 0).Added)
	require.Equal(t, "dead", claim(a, "x", "2", 0).Holder)
	require.True(t, claim(a, "y", "", 3).Added)
	require.NoError(t, a.RemovePresence(ctx, "r", "y", ""))

	score := func() float64 {
		v, err := a.client.Do(ctx, a.client.B().Zscore().Key(a.key("presence.expire", "r")).Member("live").Build()).AsFloat64()
		require.NoError(t, err)
		return v
	}
	first := score()
	advance(50 * time.Second)
	require.Eventually(t, func() bool { return score() > first }, 5*time.Second, 10*time.Millisecond, "entry not refreshed")
	pttl, err := a.client.Do(ctx, a.client.B().Pttl().Key(a.key("presence.keys", "r")).Build()).AsInt64()
	require.NoError(t, err)
	require.Greater(t, pttl, int64(50_000), "the refresher extends the key hash's TTL")
	advance(30 * time.Second) // past the first expiry: "dead" expired, "live" was refreshed

	require.Equal(t, "live", claim(b, "z", "1", 0).Holder, "the refreshed entry keeps its key")
	require.True(t, claim(b, "z", "2", 2).Added, "the expired entry counts for nothing and its key is free")
	fields, err := a.client.Do(ctx, a.client.B().Hkeys().Key(a.key("presence.keys", "r")).Build()).AsStrSlice()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"k:1", "c:live", "t:live", "k:2", "c:z", "t:z"}, fields, "the expired entry's key fields are gone")
	require.Equal(t, hub.ClaimResult{Full: true}, claim(b, "w", "3", 2))

	// A key Redis lost (a restart without persistence) is taken again by
	// the next refresh.
	require.NoError(t, a.client.Do(ctx, a.client.B().Del().Key(a.key("presence.keys", "r")).Build()).Error())
	require.Eventually(t, func() bool {
		h, err := a.client.Do(ctx, a.client.B().Hget().Key(a.key("presence.keys", "r")).Field("k:1").Build()).ToString()
		return err == nil && h == "live"
	}, 5*time.Second, 10*time.Millisecond)
}

func FuzzParseClaim(f *testing.F) {
	info := string(encodeInfo(&hub.ClientInfo{ClientID: "c", UserID: "u", ChanInfo: []byte(`{"node_id":"5"}`)}))
	f.Add("a", "", "")
	f.Add("a", "holder", "")
	f.Add("f", "", "")
	f.Add("k", "holder", info)
	f.Add("k", "holder", info[:len(info)/2])
	f.Add("x", "y", "z")
	f.Fuzz(func(t *testing.T, kind, holder, enc string) {
		for _, reply := range [][]string{{kind}, {kind, holder}, {kind, holder, enc}} {
			res, err := parseClaim(reply)
			if err != nil {
				require.Equal(t, hub.ClaimResult{}, res)
				continue
			}
			n := 0
			for _, b := range []bool{res.Added, res.Full, res.HolderInfo != nil} {
				if b {
					n++
				}
			}
			require.LessOrEqual(t, n, 1, "one outcome")
			require.Equal(t, res.KeyTaken, res.Added && res.Holder != "", "a holder with an added entry only as KeyTaken")
		}
	})
}

// An entry removed while a refresh runs, after its snapshot, is not
// brought back by the refresh's write (nor its claim key); one added
// again meanwhile stays.
func TestRefreshDoesNotResurrectRemovedEntries(t *testing.T) {
	b := newTestBroker(t, Config{Prefix: testPrefix(t), PresenceTTL: time.Minute, PresenceRefresh: time.Hour})
	ctx := ctxT(t)
	claim := func(id, key string) {
		t.Helper()
		res, err := b.ClaimPresence(ctx, "r", id, &hub.ClientInfo{ClientID: id}, hub.PresenceClaim{Key: key})
		require.NoError(t, err)
		require.True(t, res.Added)
	}
	claim("keyed", "5")
	claim("again", "6")
	require.NoError(t, b.AddPresence(ctx, "r", "plain", &hub.ClientInfo{ClientID: "plain"}))
	b.local.afterSnapshot = func() {
		for _, id := range []string{"keyed", "plain", "again"} {
			require.NoError(t, b.RemovePresence(ctx, "r", id, ""))
		}
		claim("again", "6")
	}
	b.refreshLocal()
	m, err := b.Presence(ctx, "r")
	require.NoError(t, err)
	require.Len(t, m, 1)
	require.Contains(t, m, "again")
	fields, err := b.client.Do(ctx, b.client.B().Hkeys().Key(b.key("presence.keys", "r")).Build()).AsStrSlice()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"k:6", "c:again", "t:again"}, fields, "the removed entry's key is free")
}

// A released entry stays until it expires: the refresher lets it go.
func TestReleasePresence(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := newTestBroker(t, Config{Prefix: testPrefix(t), PresenceTTL: time.Minute, PresenceRefresh: time.Hour, Now: clock})
	ctx := ctxT(t)
	res, err := b.ClaimPresence(ctx, "r", "c1", &hub.ClientInfo{ClientID: "c1"}, hub.PresenceClaim{Key: "5"})
	require.NoError(t, err)
	require.True(t, res.Added)
	require.NoError(t, b.ReleasePresence(ctx, "r", "c1"))
	m, err := b.Presence(ctx, "r")
	require.NoError(t, err)
	require.Contains(t, m, "c1", "not removed")
	require.Equal(t, "c1", claimHolder(t, b, "5"), "its key stays")
	b.refreshLocal()
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	m, err = b.Presence(ctx, "r")
	require.NoError(t, err)
	require.NotContains(t, m, "c1", "not refreshed: expired")
}

func claimHolder(t *testing.T, b *Broker, key string) string {
	t.Helper()
	res, err := b.ClaimPresence(ctxT(t), "r", "probe", &hub.ClientInfo{ClientID: "probe"}, hub.PresenceClaim{Key: key})
	require.NoError(t, err)
	require.False(t, res.Added)
	return res.Holder
}
