// Package brokertest is the conformance suite every hub.Broker and
// hub.PresenceManager pair must pass: the semantics written in the Broker
// interface docs, checked the same way for every engine.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Wait bounds every eventual condition of the suite.
const Wait = 10 * time.Second

const tick = 10 * time.Millisecond

// Event is one call of the hub.BrokerEventHandler.
type Event struct {
	Kind   string // "pub", "join" or "leave"
	Pub    *hub.Publication
	SP     hub.StreamPosition
	Client string // join/leave client ID
}

// Recorder is a hub.BrokerEventHandler that keeps every event by channel.
type Recorder struct {
	mu     sync.Mutex
	events map[string][]Event
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{events: map[string][]Event{}} }

func (r *Recorder) add(ch string, e Event) {
	r.mu.Lock()
	r.events[ch] = append(r.events[ch], e)
	r.mu.Unlock()
}

// HandlePublication records a publication.
func (r *Recorder) HandlePublication(ch string, pub *hub.Publication, sp hub.StreamPosition) {
	r.add(ch, Event{Kind: "pub", Pub: pub, SP: sp})
}

// HandleJoin records a join.
func (r *Recorder) HandleJoin(ch string, info *hub.ClientInfo) {
	r.add(ch, Event{Kind: "join", Client: info.ClientID})
}

// HandleLeave records a leave.
func (r *Recorder) HandleLeave(ch string, info *hub.ClientInfo) {
	r.add(ch, Event{Kind: "leave", Client: info.ClientID})
}

// Events returns a copy of channel's events.
func (r *Recorder) Events(ch string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events[ch]...)
}

// NewFunc returns a fresh broker and presence manager, not yet running,
// isolated from every other call's (own key prefix or own process state).
// The suite calls Run and, for hub.Closer brokers, Close.
type NewFunc func(t *testing.T) (hub.Broker, hub.PresenceManager)

// Run runs the conformance suite.
func Run(t *testing.T, newBroker NewFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"PublishHistoryOrder", testPublishHistoryOrder},
		{"EpochStable", testEpochStable},
		{"HistorySize", testHistorySize},
		{"HistoryTTL", testHistoryTTL},
		{"RemoveHistoryKeepsPosition", testRemoveHistory},
		{"SinceLimitReverse", testSinceLimitReverse},
		{"UnrecoverablePosition", testUnrecoverable},
		{"PublishWithoutHistory", testWithoutHistory},
		{"IdempotentPublish", testIdempotentPublish},
		{"Presence", testPresence},
		{"ClaimPresence", testClaimPresence},
		{"JoinLeaveOrder", testJoinLeaveOrder},
		{"ConcurrentOrder", testConcurrentOrder},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, p := newBroker(t)
			rec := NewRecorder()
			require.NoError(t, b.Run(rec))
			if c, ok := b.(hub.Closer); ok {
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), Wait)
					defer cancel()
					require.NoError(t, c.Close(ctx))
				})
			}
			tc.fn(t, &env{b: b, p: p, rec: rec})
		})
	}
}

type env struct {
	b   hub.Broker
	p   hub.PresenceManager
	rec *Recorder
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Wait)
	t.Cleanup(cancel)
	return c
}

var hist = hub.PublishOptions{HistorySize: 100, HistoryTTL: time.Minute}

// subscribe declares interest, retrying while the broker reports
// hub.ErrNotAvailable (a PUB/SUB connection still being set up).
func (e *env) subscribe(t *testing.T, ch string) {
	t.Helper()
	var err error
	require.Eventually(t, func() bool {
		err = e.b.Subscribe(ch)
		if err != nil && !errors.Is(err, hub.ErrNotAvailable) {
			t.Fatalf("subscribe %s: %v", ch, err)
		}
		return err == nil
	}, Wait, tick, "subscribe %s: %v", ch, err)
}

func (e *env) publish(t *testing.T, ch, data string, opts hub.PublishOptions) hub.StreamPosition {
	t.Helper()
	sp, err := e.b.Publish(ctx(t), ch, &hub.Publication{Data: []byte(data)}, opts)
	require.NoError(t, err)
	return sp
}

func (e *env) history(t *testing.T, ch string, opts hub.HistoryOptions) hub.HistoryResult {
	t.Helper()
	r, err := e.b.History(ctx(t), ch, opts)
	require.NoError(t, err)
	return r
}

func offsets(pubs []*hub.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func testPublishHistoryOrder(t *testing.T, e *env) {
	const ch = "order"
	e.subscribe(t, ch)
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1", ConnInfo: []byte(`{"a":1}`)}
	var epoch string
	for i := 1; i <= 5; i++ {
		pub := &hub.Publication{Data: []byte(fmt.Sprintf(`{"n":%d}`, i)), Info: info, Tags: map[string]string{"k": "v"}, Time: 1700000000000}
		sp, err := e.b.Publish(ctx(t), ch, pub, hist)
		require.NoError(t, err)
		require.Equal(t, uint64(i), sp.Offset)
		require.NotEmpty(t, sp.Epoch)
		if epoch == "" {
			epoch = sp.Epoch
		}
		require.Equal(t, epoch, sp.Epoch, "epoch changed between publications")
	}
	r := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	require.Equal(t, hub.StreamPosition{Offset: 5, Epoch: epoch}, r.Position)
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, offsets(r.Publications))
	p := r.Publications[2]
	require.Equal(t, `{"n":3}`, string(p.Data))
	require.Equal(t, "u1", p.Info.UserID)
	require.Equal(t, `{"a":1}`, string(p.Info.ConnInfo))
	require.Equal(t, map[string]string{"k": "v"}, p.Tags)
	require.Equal(t, int64(1700000000000), p.Time)

	require.Eventually(t, func() bool { return len(e.rec.Events(ch)) == 5 }, Wait, tick)
	for i, ev := range e.rec.Events(ch) {
		require.Equal(t, "pub", ev.Kind)
		require.Equal(t, uint64(i+1), ev.Pub.Offset)
		require.Equal(t, hub.StreamPosition{Offset: uint64(i + 1), Epoch: epoch}, ev.SP)
		require.Equal(t, fmt.Sprintf(`{"n":%d}`, i+1), string(ev.Pub.Data))
		require.Equal(t, "c1", ev.Pub.Info.ClientID)
	}
}

func testEpochStable(t *testing.T, e *env) {
	const ch = "epoch"
	r1 := e.history(t, ch, hub.HistoryOptions{})
	require.NotEmpty(t, r1.Position.Epoch, "a first read creates the epoch")
	require.Zero(t, r1.Position.Offset)
	r2 := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	require.Equal(t, r1.Position, r2.Position)
	sp := e.publish(t, ch, "x", hist)
	require.Equal(t, hub.StreamPosition{Offset: 1, Epoch: r1.Position.Epoch}, sp)
	require.Equal(t, sp, e.history(t, ch, hub.HistoryOptions{}).Position)
}

func testHistorySize(t *testing.T, e *env) {
	const ch = "size"
	opts := hub.PublishOptions{HistorySize: 3, HistoryTTL: time.Minute}
	for i := 0; i < 5; i++ {
		e.publish(t, ch, "x", opts)
	}
	r := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	require.Equal(t, []uint64{3, 4, 5}, offsets(r.Publications))
	require.Equal(t, uint64(5), r.Position.Offset)
}

// The stream expires TTL after its LAST publication: while publications
// keep coming, the first one stays.
func testHistoryTTL(t *testing.T, e *env) {
	const ch = "ttl"
	const ttl = 500 * time.Millisecond
	opts := hub.PublishOptions{HistorySize: 1000, HistoryTTL: ttl}
	first := e.publish(t, ch, "first", opts)
	start := time.Now()
	for time.Since(start) < 3*ttl {
		e.publish(t, ch, "more", opts)
		r := e.history(t, ch, hub.HistoryOptions{Limit: 1})
		require.Len(t, r.Publications, 1)
		require.Equal(t, uint64(1), r.Publications[0].Offset, "the first publication expired although later ones kept the stream alive")
		time.Sleep(ttl / 10) // pacing the publisher, not synchronisation
	}
	top := e.history(t, ch, hub.HistoryOptions{}).Position
	require.Eventually(t, func() bool {
		return len(e.history(t, ch, hub.HistoryOptions{Limit: -1}).Publications) == 0
	}, Wait, tick, "history did not expire after its TTL")
	after := e.history(t, ch, hub.HistoryOptions{}).Position
	require.Equal(t, top, after, "expiry of the stream must keep epoch and offset")
	require.Equal(t, first.Epoch, after.Epoch)
	sp := e.publish(t, ch, "again", opts)
	require.Equal(t, hub.StreamPosition{Offset: top.Offset + 1, Epoch: first.Epoch}, sp)
}

func testRemoveHistory(t *testing.T, e *env) {
	const ch = "remove"
	var sp hub.StreamPosition
	for i := 0; i < 3; i++ {
		sp = e.publish(t, ch, "x", hist)
	}
	require.NoError(t, e.b.RemoveHistory(ctx(t), ch))
	r := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	require.Empty(t, r.Publications)
	require.Equal(t, sp, r.Position, "RemoveHistory keeps epoch and offset")
	next := e.publish(t, ch, "y", hist)
	require.Equal(t, hub.StreamPosition{Offset: 4, Epoch: sp.Epoch}, next)
	require.Equal(t, []uint64{4}, offsets(e.history(t, ch, hub.HistoryOptions{Limit: -1}).Publications))
	require.NoError(t, e.b.RemoveHistory(ctx(t), "never-published"), "removing absent history is not an error")
}

func testSinceLimitReverse(t *testing.T, e *env) {
	const ch = "range"
	var sp hub.StreamPosition
	for i := 0; i < 10; i++ {
		sp = e.publish(t, ch, fmt.Sprint(i+1), hist)
	}
	at := func(o uint64) *hub.StreamPosition { return &hub.StreamPosition{Offset: o, Epoch: sp.Epoch} }
	cases := []struct {
		name string
		opts hub.HistoryOptions
		want []uint64
	}{
		{"all", hub.HistoryOptions{Limit: -1}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"limit", hub.HistoryOptions{Limit: 3}, []uint64{1, 2, 3}},
		{"none", hub.HistoryOptions{Limit: 0}, []uint64{}},
		{"since", hub.HistoryOptions{Since: at(5), Limit: -1}, []uint64{6, 7, 8, 9, 10}},
		{"since limit", hub.HistoryOptions{Since: at(5), Limit: 2}, []uint64{6, 7}},
		{"since top", hub.HistoryOptions{Since: at(10), Limit: -1}, []uint64{}},
		{"since zero", hub.HistoryOptions{Since: at(0), Limit: 2}, []uint64{1, 2}},
		{"reverse", hub.HistoryOptions{Reverse: true, Limit: 3}, []uint64{10, 9, 8}},
		{"reverse all", hub.HistoryOptions{Reverse: true, Limit: -1}, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"reverse since", hub.HistoryOptions{Reverse: true, Since: at(5), Limit: 2}, []uint64{4, 3}},
		{"reverse since first", hub.HistoryOptions{Reverse: true, Since: at(1), Limit: -1}, []uint64{}},
	}
	for _, c := range cases {
		r := e.history(t, ch, c.opts)
		require.Equal(t, c.want, offsets(r.Publications), c.name)
		require.Equal(t, sp, r.Position, c.name)
	}
	r := e.history(t, ch, hub.HistoryOptions{Since: at(3), Limit: 1})
	require.Equal(t, "4", string(r.Publications[0].Data))
}

// A position whose successor was trimmed away is recognisable: the first
// publication after it is not offset+1. A foreign epoch is answered with
// the stream's own.
func testUnrecoverable(t *testing.T, e *env) {
	const ch = "unrecoverable"
	opts := hub.PublishOptions{HistorySize: 3, HistoryTTL: time.Minute}
	var sp hub.StreamPosition
	for i := 0; i < 6; i++ {
		sp = e.publish(t, ch, "x", opts)
	}
	r := e.history(t, ch, hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 1, Epoch: sp.Epoch}, Limit: -1})
	require.Equal(t, []uint64{4, 5, 6}, offsets(r.Publications))
	require.Greater(t, r.Publications[0].Offset, uint64(2), "the gap after offset 1 must be visible")
	r = e.history(t, ch, hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 5, Epoch: "other"}, Limit: -1})
	require.Equal(t, sp.Epoch, r.Position.Epoch)
	require.NotEqual(t, "other", r.Position.Epoch)
}

func testWithoutHistory(t *testing.T, e *env) {
	const ch = "nohistory"
	e.subscribe(t, ch)
	sp := e.publish(t, ch, "x", hub.PublishOptions{})
	require.Zero(t, sp.Offset)
	require.Eventually(t, func() bool { return len(e.rec.Events(ch)) == 1 }, Wait, tick)
	ev := e.rec.Events(ch)[0]
	require.Equal(t, "x", string(ev.Pub.Data))
	require.Zero(t, ev.Pub.Offset)
}

// A repeated idempotency key on a channel returns the first position and
// neither stores nor delivers again, until the result's TTL passes; keys are
// per channel; concurrent repeats publish once.
func testIdempotentPublish(t *testing.T, e *env) {
	const ch, other, plain = "idem", "idem-other", "idem-plain"
	const ttl = 300 * time.Millisecond
	for _, c := range []string{ch, other, plain} {
		e.subscribe(t, c)
	}
	withKey := func(o hub.PublishOptions, key string) hub.PublishOptions {
		o.IdempotencyKey, o.IdempotentResultTTL = key, ttl
		return o
	}
	data := func(c string) []string {
		var out []string
		for _, ev := range e.rec.Events(c) {
			out = append(out, string(ev.Pub.Data))
		}
		return out
	}
	first := e.publish(t, ch, "a", withKey(hist, "k1"))
	require.Equal(t, uint64(1), first.Offset)
	require.Equal(t, first, e.publish(t, ch, "a again", withKey(hist, "k1")), "a repeat returns the first position")
	require.Equal(t, uint64(2), e.publish(t, ch, "b", withKey(hist, "k2")).Offset)
	e.publish(t, ch, "end", hist)
	require.Eventually(t, func() bool { return len(e.rec.Events(ch)) >= 3 }, Wait, tick)
	require.Equal(t, []string{"a", "b", "end"}, data(ch), "the repeat is not delivered")
	require.Equal(t, []uint64{1, 2, 3}, offsets(e.history(t, ch, hub.HistoryOptions{Limit: -1}).Publications))

	require.Equal(t, uint64(1), e.publish(t, other, "a", withKey(hist, "k1")).Offset, "keys are per channel")

	require.Zero(t, e.publish(t, plain, "x", withKey(hub.PublishOptions{}, "k1")).Offset)
	e.publish(t, plain, "x", withKey(hub.PublishOptions{}, "k1"))
	e.publish(t, plain, "end", hub.PublishOptions{})
	require.Eventually(t, func() bool { return len(e.rec.Events(plain)) >= 2 }, Wait, tick)
	require.Equal(t, []string{"x", "end"}, data(plain), "without history a repeat is not delivered either")

	var wg sync.WaitGroup
	got := make([]hub.StreamPosition, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp, err := e.b.Publish(ctx(t), ch, &hub.Publication{Data: []byte("c")}, withKey(hist, "kc"))
			if err == nil {
				got[i] = sp
			}
		}()
	}
	wg.Wait()
	for _, sp := range got {
		require.Equal(t, hub.StreamPosition{Offset: 4, Epoch: first.Epoch}, sp, "concurrent repeats publish once")
	}

	var again hub.StreamPosition
	require.Eventually(t, func() bool {
		again = e.publish(t, ch, "a later", withKey(hist, "k1"))
		return again != first
	}, Wait, tick, "the key's result never expired")
	require.Equal(t, uint64(5), again.Offset)
}

func testPresence(t *testing.T, e *env) {
	const ch = "presence"
	c := ctx(t)
	require.NoError(t, e.p.RemovePresence(c, ch, "nobody", "u0"), "removing from an empty channel is not an error")
	for _, x := range []struct{ client, user string }{{"c1", "u1"}, {"c2", "u1"}, {"c3", "u2"}} {
		require.NoError(t, e.p.AddPresence(c, ch, x.client, &hub.ClientInfo{ClientID: x.client, UserID: x.user}))
	}
	m, err := e.p.Presence(c, ch)
	require.NoError(t, err)
	require.Len(t, m, 3)
	require.Equal(t, "u2", m["c3"].UserID)
	st, err := e.p.PresenceStats(c, ch)
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 3, NumUsers: 2}, st)

	// Adding again refreshes the entry and replaces its info.
	require.NoError(t, e.p.AddPresence(c, ch, "c1", &hub.ClientInfo{ClientID: "c1", UserID: "u1", ChanInfo: []byte(`{"x":1}`)}))
	m, err = e.p.Presence(c, ch)
	require.NoError(t, err)
	require.Len(t, m, 3)
	require.Equal(t, `{"x":1}`, string(m["c1"].ChanInfo))

	require.NoError(t, e.p.RemovePresence(c, ch, "c2", "u1"))
	require.NoError(t, e.p.RemovePresence(c, ch, "c2", "u1"), "removing an absent client is not an error")
	require.NoError(t, e.p.RemovePresence(c, ch, "zzz", "u9"))
	st, err = e.p.PresenceStats(c, ch)
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 2, NumUsers: 2}, st)
	m, err = e.p.Presence(c, "presence-empty")
	require.NoError(t, err)
	require.Empty(t, m)
}

// testClaimPresence checks a conditional add (hub.PresenceClaimer), when
// the presence manager has it: the cap, the key, Ignore and Always.
func testClaimPresence(t *testing.T, e *env) {
	pc, ok := e.p.(hub.PresenceClaimer)
	if !ok {
		t.Skip("the presence manager has no conditional add")
	}
	const ch = "claims"
	c := ctx(t)
	info := func(id string) *hub.ClientInfo { return &hub.ClientInfo{ClientID: id, UserID: "u-" + id} }
	claim := func(id string, cl hub.PresenceClaim) hub.ClaimResult {
		t.Helper()
		res, err := pc.ClaimPresence(c, ch, id, info(id), cl)
		require.NoError(t, err)
		return res
	}
	require.Equal(t, hub.ClaimResult{Added: true}, claim("a", hub.PresenceClaim{Max: 2, Key: "1"}))
	require.Equal(t, hub.ClaimResult{Added: true}, claim("a", hub.PresenceClaim{Max: 1, Key: "1"}), "its own entry counts for nothing")
	res := claim("b", hub.PresenceClaim{Max: 2, Key: "1"})
	require.False(t, res.Added)
	require.Equal(t, "a", res.Holder, "the key is a's")
	require.Equal(t, "u-a", res.HolderInfo.UserID)
	res.HolderInfo.ChanInfo = append(res.HolderInfo.ChanInfo, 'x')
	res.HolderInfo.UserID = "changed"
	require.Equal(t, "u-a", claim("b", hub.PresenceClaim{Max: 2, Key: "1"}).HolderInfo.UserID, "the answer is a copy")
	require.Equal(t, hub.ClaimResult{Added: true}, claim("b", hub.PresenceClaim{Max: 2, Key: "2"}))
	require.Equal(t, hub.ClaimResult{Full: true}, claim("c", hub.PresenceClaim{Max: 2, Key: "3"}))
	require.Equal(t, hub.ClaimResult{Added: true}, claim("c", hub.PresenceClaim{Max: 2, Key: "3", Ignore: []string{"b"}}), "b counts for nothing")
	m, err := e.p.Presence(c, ch)
	require.NoError(t, err)
	require.Len(t, m, 3, "nothing written by a refused claim, the rest stays")

	// A plain add keeps the key; a removal frees it.
	require.NoError(t, e.p.AddPresence(c, ch, "a", info("a")))
	require.Equal(t, "a", claim("d", hub.PresenceClaim{Key: "1"}).Holder)
	require.NoError(t, e.p.RemovePresence(c, ch, "a", "u-a"))
	require.Equal(t, hub.ClaimResult{Added: true}, claim("d", hub.PresenceClaim{Key: "1"}), "freed by the removal")
	require.Equal(t, "d", claim("e", hub.PresenceClaim{Key: "1"}).Holder)

	// Ignore lets a holder's key be taken over; the old holder's removal
	// does not free it then.
	require.Equal(t, hub.ClaimResult{Added: true}, claim("e", hub.PresenceClaim{Key: "1", Ignore: []string{"d"}}))
	require.NoError(t, e.p.RemovePresence(c, ch, "d", "u-d"))
	require.Equal(t, "e", claim("f", hub.PresenceClaim{Key: "1"}).Holder)

	// Always adds whatever the conditions, taking only a free key.
	require.Equal(t, hub.ClaimResult{Added: true, KeyTaken: true, Holder: "e"}, claim("f", hub.PresenceClaim{Max: 1, Key: "1", Always: true}),
		"added, the key held by e")
	require.NoError(t, e.p.RemovePresence(c, ch, "f", "u-f"))
	require.Equal(t, "e", claim("g", hub.PresenceClaim{Key: "1"}).Holder, "f never held 1")
	require.Equal(t, hub.ClaimResult{Added: true}, claim("g", hub.PresenceClaim{Key: "7", Always: true}))
	require.Equal(t, "g", claim("h", hub.PresenceClaim{Key: "7"}).Holder, "a free key is taken")
	// A client's new key replaces its old one.
	require.Equal(t, hub.ClaimResult{Added: true}, claim("g", hub.PresenceClaim{Key: "8"}))
	require.Equal(t, hub.ClaimResult{Added: true}, claim("h", hub.PresenceClaim{Key: "7"}))
}

func testJoinLeaveOrder(t *testing.T, e *env) {
	const ch = "joinleave"
	e.subscribe(t, ch)
	c := ctx(t)
	info := &hub.ClientInfo{ClientID: "c1", UserID: "u1"}
	e.publish(t, ch, "1", hist)
	require.NoError(t, e.b.PublishJoin(c, ch, info))
	e.publish(t, ch, "2", hist)
	require.NoError(t, e.b.PublishLeave(c, ch, info))
	e.publish(t, ch, "3", hub.PublishOptions{})
	require.Eventually(t, func() bool { return len(e.rec.Events(ch)) == 5 }, Wait, tick)
	var got []string
	for _, ev := range e.rec.Events(ch) {
		if ev.Kind == "pub" {
			got = append(got, "pub "+string(ev.Pub.Data))
		} else {
			got = append(got, ev.Kind+" "+ev.Client)
		}
	}
	require.Equal(t, []string{"pub 1", "join c1", "pub 2", "leave c1", "pub 3"}, got)
}

// Concurrent publishers on several channels: every channel's deliveries
// arrive complete and in offset order.
func testConcurrentOrder(t *testing.T, e *env) {
	const channels, publishers, each = 4, 4, 50
	for i := 0; i < channels; i++ {
		e.subscribe(t, fmt.Sprint("conc", i))
	}
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, channels*publishers)
	for i := 0; i < channels; i++ {
		for j := 0; j < publishers; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < each; k++ {
					if _, err := e.b.Publish(c, fmt.Sprint("conc", i), &hub.Publication{Data: []byte("x")}, hist); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i := 0; i < channels; i++ {
		ch := fmt.Sprint("conc", i)
		require.Eventually(t, func() bool { return len(e.rec.Events(ch)) == publishers*each }, Wait, tick, ch)
		for k, ev := range e.rec.Events(ch) {
			require.Equal(t, uint64(k+1), ev.Pub.Offset, "%s delivery %d out of order", ch, k)
		}
	}
}
