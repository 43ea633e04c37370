package memory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// recorder is a hub.BrokerEventHandler that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	pubs []string
	ev   []string
}

func (r *recorder) HandlePublication(ch string, p *hub.Publication, sp hub.StreamPosition) {
	r.mu.Lock()
	r.pubs = append(r.pubs, fmt.Sprintf("%s %d %s %d", ch, p.Offset, p.Data, sp.Offset))
	r.mu.Unlock()
}
func (r *recorder) HandleJoin(ch string, i *hub.ClientInfo) {
	r.mu.Lock()
	r.ev = append(r.ev, "join "+ch+" "+i.ClientID)
	r.mu.Unlock()
}
func (r *recorder) HandleLeave(ch string, i *hub.ClientInfo) {
	r.mu.Lock()
	r.ev = append(r.ev, "leave "+ch+" "+i.ClientID)
	r.mu.Unlock()
}

// clock is an injected, manually advanced time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newBroker(t *testing.T) (*Broker, *recorder, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	b := New(c.now)
	r := &recorder{}
	require.NoError(t, b.Run(r))
	t.Cleanup(func() { require.NoError(t, b.Close(context.Background())) })
	return b, r, c
}

var keep = hub.PublishOptions{HistorySize: 3, HistoryTTL: time.Minute}

func publish(t *testing.T, b *Broker, ch, data string, o hub.PublishOptions) hub.StreamPosition {
	t.Helper()
	sp, err := b.Publish(context.Background(), ch, &hub.Publication{Data: []byte(data)}, o)
	require.NoError(t, err)
	return sp
}

func offsets(r hub.HistoryResult) []uint64 {
	out := []uint64{}
	for _, p := range r.Publications {
		out = append(out, p.Offset)
	}
	return out
}

func TestRunNeedsHandler(t *testing.T) {
	require.Error(t, New(nil).Run(nil))
}

func TestPublishWithoutHistoryIsDeliveredOnly(t *testing.T) {
	b, r, _ := newBroker(t)
	sp := publish(t, b, "a", "x", hub.PublishOptions{})
	require.Equal(t, hub.StreamPosition{}, sp)
	require.Equal(t, []string{"a 0 x 0"}, r.pubs)
	hr, err := b.History(context.Background(), "a", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Empty(t, hr.Publications)
	require.Zero(t, hr.Position.Offset)
}

func TestHistorySizeOffsetsAndEpoch(t *testing.T) {
	b, r, _ := newBroker(t)
	ctx := context.Background()
	var sp hub.StreamPosition
	for i := 1; i <= 5; i++ {
		sp = publish(t, b, "a", fmt.Sprint(i), keep)
		require.Equal(t, uint64(i), sp.Offset)
	}
	require.NotEmpty(t, sp.Epoch)
	require.Len(t, r.pubs, 5)
	require.Equal(t, "a 5 5 5", r.pubs[4], "delivered with its offset and position")

	for _, tc := range []struct {
		name string
		opts hub.HistoryOptions
		want []uint64
	}{
		{"all kept (size 3)", hub.HistoryOptions{Limit: -1}, []uint64{3, 4, 5}},
		{"limit", hub.HistoryOptions{Limit: 2}, []uint64{3, 4}},
		{"position only", hub.HistoryOptions{Limit: 0}, []uint64{}},
		{"reverse", hub.HistoryOptions{Limit: 2, Reverse: true}, []uint64{5, 4}},
		{"since", hub.HistoryOptions{Limit: -1, Since: &hub.StreamPosition{Offset: 3, Epoch: sp.Epoch}}, []uint64{4, 5}},
		{"since the top", hub.HistoryOptions{Limit: -1, Since: &hub.StreamPosition{Offset: 5}}, []uint64{}},
		{"since before the window", hub.HistoryOptions{Limit: -1, Since: &hub.StreamPosition{Offset: 1}}, []uint64{3, 4, 5}},
		{"reverse since", hub.HistoryOptions{Limit: -1, Reverse: true, Since: &hub.StreamPosition{Offset: 5}}, []uint64{4, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hr, err := b.History(ctx, "a", tc.opts)
			require.NoError(t, err)
			require.Equal(t, tc.want, offsets(hr))
			require.Equal(t, hub.StreamPosition{Offset: 5, Epoch: sp.Epoch}, hr.Position)
		})
	}
}

func TestHistoryTTLAndMetaTTL(t *testing.T) {
	b, _, c := newBroker(t)
	ctx := context.Background()
	o := hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute, MetaTTL: time.Hour}
	first := publish(t, b, "a", "1", o)
	c.add(30 * time.Second)
	publish(t, b, "a", "2", o)
	c.add(31 * time.Second)
	hr, err := b.History(ctx, "a", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2}, offsets(hr), "the stream lives until TTL after its last publication, as Centrifugo's")

	c.add(time.Minute)
	b.removeExpired()
	hr, err = b.History(ctx, "a", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Empty(t, hr.Publications)
	require.Equal(t, hub.StreamPosition{Offset: 2, Epoch: first.Epoch}, hr.Position, "the stream position outlives its publications")

	c.add(2 * time.Hour)
	b.removeExpired()
	hr, err = b.History(ctx, "a", hub.HistoryOptions{})
	require.NoError(t, err)
	require.Zero(t, hr.Position.Offset)
	require.NotEqual(t, first.Epoch, hr.Position.Epoch, "after the meta TTL the stream starts over with a new epoch")
}

func TestHistoryReadCreatesStableEpoch(t *testing.T) {
	b, _, _ := newBroker(t)
	ctx := context.Background()
	h1, err := b.History(ctx, "fresh", hub.HistoryOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, h1.Position.Epoch)
	sp := publish(t, b, "fresh", "x", keep)
	require.Equal(t, h1.Position.Epoch, sp.Epoch)
}

// RemoveHistory drops the publications but keeps the stream position, as
// the Redis engine does (the conformance suite checks both).
func TestRemoveHistoryKeepsPosition(t *testing.T) {
	b, _, _ := newBroker(t)
	ctx := context.Background()
	sp := publish(t, b, "a", "1", keep)
	require.NoError(t, b.RemoveHistory(ctx, "a"))
	sp2 := publish(t, b, "a", "2", keep)
	require.Equal(t, uint64(2), sp2.Offset)
	require.Equal(t, sp.Epoch, sp2.Epoch)
	require.NoError(t, b.RemoveHistory(ctx, "never"))
}

func TestJoinLeaveAndNoopSubscribe(t *testing.T) {
	b, r, _ := newBroker(t)
	ctx := context.Background()
	require.NoError(t, b.Subscribe("a"))
	require.NoError(t, b.Unsubscribe("a"))
	require.NoError(t, b.PublishJoin(ctx, "a", &hub.ClientInfo{ClientID: "c1"}))
	require.NoError(t, b.PublishLeave(ctx, "a", &hub.ClientInfo{ClientID: "c1"}))
	require.Equal(t, []string{"join a c1", "leave a c1"}, r.ev)
}

func TestConcurrentPublishesDeliverInOffsetOrder(t *testing.T) {
	b, r, _ := newBroker(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				_, err := b.Publish(context.Background(), "a", &hub.Publication{Data: []byte("x")}, hub.PublishOptions{HistorySize: 1000, HistoryTTL: time.Minute})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.pubs, 800)
	for i, p := range r.pubs {
		require.Equal(t, fmt.Sprintf("a %d x %d", i+1, i+1), p)
	}
}

func TestCloseIsIdempotentAndHonoursContext(t *testing.T) {
	b := New(nil)
	require.NoError(t, b.Run(&recorder{}))
	require.NoError(t, b.Close(context.Background()))
	require.NoError(t, b.Close(context.Background()))

	never := New(nil) // Run never called: the sweeper's done never closes
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, never.Close(ctx), context.Canceled)
}

func TestPresence(t *testing.T) {
	p := NewPresence()
	ctx := context.Background()
	for _, c := range []struct{ id, user string }{{"c1", "u1"}, {"c2", "u1"}, {"c3", "u2"}} {
		require.NoError(t, p.AddPresence(ctx, "a", c.id, &hub.ClientInfo{ClientID: c.id, UserID: c.user}))
	}
	require.NoError(t, p.AddPresence(ctx, "b", "c9", &hub.ClientInfo{ClientID: "c9", UserID: "u9"}))
	st, err := p.PresenceStats(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 3, NumUsers: 2}, st)

	require.NoError(t, p.RemovePresence(ctx, "a", "c1", "u1"))
	require.NoError(t, p.RemovePresence(ctx, "a", "missing", "u1"))
	got, err := p.Presence(ctx, "a")
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "u1", got["c2"].UserID)
	st, err = p.PresenceStats(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 2, NumUsers: 2}, st)

	for _, id := range []string{"c2", "c3"} {
		require.NoError(t, p.RemovePresence(ctx, "a", id, ""))
	}
	got, err = p.Presence(ctx, "a")
	require.NoError(t, err)
	require.Empty(t, got)
	st, err = p.PresenceStats(ctx, "empty")
	require.NoError(t, err)
	require.Zero(t, st)
}

// Idempotent results expire on the injected clock, the sweep drops them,
// and a stream kept only for results outlives a shorter meta TTL.
func TestIdempotentResultsExpire(t *testing.T) {
	b, r, c := newBroker(t)
	o := hub.PublishOptions{IdempotencyKey: "k", IdempotentResultTTL: 5 * time.Minute, MetaTTL: time.Minute}
	require.Equal(t, hub.StreamPosition{}, publish(t, b, "a", "x", o))
	c.add(4 * time.Minute)
	b.removeExpired()
	publish(t, b, "a", "x", o)
	require.Equal(t, []string{"a 0 x 0"}, r.pubs, "the result outlives the meta TTL")
	c.add(time.Minute)
	publish(t, b, "a", "y", o)
	require.Equal(t, []string{"a 0 x 0", "a 0 y 0"}, r.pubs, "after the result TTL the key publishes again")

	c.add(5*time.Minute + time.Second)
	b.removeExpired()
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n := len(s.streams)
		s.mu.Unlock()
		require.Zero(t, n, "expired results and their stream are swept")
	}
}

// RemovePresenceIf removes an entry only while it holds the info given,
// with its claim key.
func TestRemovePresenceIf(t *testing.T) {
	p := NewPresence()
	ctx := context.Background()
	old := &hub.ClientInfo{ClientID: "s", UserID: "old", ChanInfo: []byte(`{"p":"a"}`)}
	res, err := p.ClaimPresence(ctx, "ch", "s", old, hub.PresenceClaim{Key: "5"})
	require.NoError(t, err)
	require.True(t, res.Added)
	again := &hub.ClientInfo{ClientID: "s", UserID: "new"}
	_, err = p.ClaimPresence(ctx, "ch", "s", again, hub.PresenceClaim{Key: "5", Always: true})
	require.NoError(t, err)
	removed, err := p.RemovePresenceIf(ctx, "ch", "s", old)
	require.NoError(t, err)
	require.False(t, removed, "rewritten meanwhile")
	m, err := p.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Equal(t, "new", m["s"].UserID)

	removed, err = p.RemovePresenceIf(ctx, "ch", "s", &hub.ClientInfo{ClientID: "s", UserID: "new"})
	require.NoError(t, err)
	require.True(t, removed)
	m, err = p.Presence(ctx, "ch")
	require.NoError(t, err)
	require.Empty(t, m)
	res, err = p.ClaimPresence(ctx, "ch", "probe", &hub.ClientInfo{ClientID: "probe"}, hub.PresenceClaim{Key: "5"})
	require.NoError(t, err)
	require.True(t, res.Added, "its key is free")
}
