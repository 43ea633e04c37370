package clientproto

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	redisbroker "github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// lossyBroker is the memory broker with a PUB/SUB that can lose or hold
// back publications, and a History that can hang until its context ends.
type lossyBroker struct {
	*memory.Broker
	h            hub.BrokerEventHandler
	mu           sync.Mutex
	drop         int // publications still to lose
	hold         bool
	held         []heldPub
	blockHistory atomic.Bool
}

type heldPub struct {
	ch  string
	pub *hub.Publication
	sp  hub.StreamPosition
}

func newLossyBroker(clk *clocktest.Fake) *lossyBroker {
	return &lossyBroker{Broker: memory.New(clk.Now)}
}

func (b *lossyBroker) Run(h hub.BrokerEventHandler) error {
	b.h = h
	return b.Broker.Run(b)
}

func (b *lossyBroker) HandlePublication(ch string, pub *hub.Publication, sp hub.StreamPosition) {
	b.mu.Lock()
	switch {
	case b.drop > 0:
		b.drop--
		b.mu.Unlock()
		return
	case b.hold:
		b.held = append(b.held, heldPub{ch, pub, sp})
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.h.HandlePublication(ch, pub, sp)
}

func (b *lossyBroker) HandleJoin(ch string, info *hub.ClientInfo)  { b.h.HandleJoin(ch, info) }
func (b *lossyBroker) HandleLeave(ch string, info *hub.ClientInfo) { b.h.HandleLeave(ch, info) }

func (b *lossyBroker) loseNext(n int) {
	b.mu.Lock()
	b.drop = n
	b.mu.Unlock()
}

func (b *lossyBroker) setHold(on bool) {
	b.mu.Lock()
	b.hold = on
	b.mu.Unlock()
}

// release delivers the held publications, late but in order.
func (b *lossyBroker) release() {
	b.mu.Lock()
	held := b.held
	b.held, b.hold = nil, false
	b.mu.Unlock()
	for _, p := range held {
		b.h.HandlePublication(p.ch, p.pub, p.sp)
	}
}

func (b *lossyBroker) History(ctx context.Context, ch string, o hub.HistoryOptions) (hub.HistoryResult, error) {
	if b.blockHistory.Load() {
		<-ctx.Done()
		return hub.HistoryResult{}, fmt.Errorf("lossy broker: history: %w", ctx.Err())
	}
	return b.Broker.History(ctx, ch, o)
}

// newBrokerHarness is newHarness on a given broker, with the hub's
// position checks every minute of the fake clock and no pings.
func newBrokerHarness(t *testing.T, clk *clocktest.Fake, b hub.Broker, hmod func(*hub.Config), mod func(*Config)) *harness {
	t.Helper()
	hc := hub.Config{Broker: b, Presence: memory.NewPresence(), Clock: clk, PositionCheckInterval: time.Minute,
		Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{
			"chat": {AllowSubscribeForClient: true, AllowPublishForSubscriber: true, AllowHistoryForSubscriber: true,
				Presence: true, HistorySize: 1000, HistoryTTL: time.Hour, ForceRecovery: true},
		}}}
	if hmod != nil {
		hmod(&hc)
	}
	h, err := hub.New(hc)
	require.NoError(t, err)
	// No pings: the tests move the fake clock by minutes.
	cfg := Config{Hub: h, Tokens: auth.NewTokenVerifier(secret, "", ""), PingInterval: -1}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
		srv.Close()
	})
	return &harness{t: t, hub: h, srv: srv, clock: clk}
}

func newLossyHarness(t *testing.T, hmod func(*hub.Config), mod func(*Config)) (*harness, *lossyBroker) {
	clk := clocktest.New(time.Now())
	b := newLossyBroker(clk)
	return newBrokerHarness(t, clk, b, hmod, mod), b
}

// subscribedSession connects a JSON session and subscribes it to ch.
func subscribedSession(t *testing.T, h *harness, ch string) (*Session, *fakeTransport) {
	t.Helper()
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + ch + `"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe"`), testenv.Wait, testenv.Tick, "subscribed")
	return s, ft
}

func publishN(t *testing.T, h *harness, ch string, n int) hub.StreamPosition {
	t.Helper()
	var sp hub.StreamPosition
	for i := 0; i < n; i++ {
		var err error
		sp, err = h.hub.Publish(context.Background(), ch, []byte(fmt.Sprintf(`{"n":%d}`, i)), nil, nil)
		require.NoError(t, err)
	}
	return sp
}

const insufficientPush = `"unsubscribe":{"code":2500,"reason":"insufficient state"}`

// A lost PUB/SUB message shows as an offset gap: the client-side
// subscription ends with 2500 and a resubscribe with recovery repairs it.
func TestOffsetGapUnsubscribesWithInsufficientState(t *testing.T) {
	h, b := newLossyHarness(t, nil, nil)
	s, ft := subscribedSession(t, h, "chat:g")
	publishN(t, h, "chat:g", 1)
	require.Eventually(t, hasMessage(ft, `"offset":1`), testenv.Wait, testenv.Tick, "first publication")
	b.loseNext(1)
	sp := publishN(t, h, "chat:g", 2) // offset 2 lost, offset 3 reveals it
	require.Eventually(t, hasMessage(ft, insufficientPush), testenv.Wait, testenv.Tick, "unsubscribe 2500")
	require.False(t, hasMessage(ft, `"offset":3`)(), "nothing delivered past the gap")
	require.Nil(t, ft.disconnect(), "the connection stays")
	require.Eventually(t, func() bool { return h.hub.NumSubscriptions() == 0 }, testenv.Wait, testenv.Tick, "released from the hub")

	s.HandleMessage([]byte(`{"id":3,"subscribe":{"channel":"chat:g","recover":true,"offset":1,"epoch":"` + sp.Epoch + `"}}`))
	require.Eventually(t, hasMessage(ft, `"id":3,"subscribe"`), testenv.Wait, testenv.Tick, "resubscribed")
	r := replyOf(t, ft, 3)
	require.True(t, r.Subscribe.Recovered)
	require.Len(t, r.Subscribe.Publications, 2)
	require.Equal(t, uint64(2), r.Subscribe.Publications[0].Offset)
	require.Equal(t, uint64(3), r.Subscribe.Publications[1].Offset)
	// Presence of the new subscription survived the old one's release.
	p, err := h.hub.Presence(context.Background(), "chat:g")
	require.NoError(t, err)
	require.Len(t, p, 1)
}

// A server-side subscription cannot be resubscribed by the client: the
// gap disconnects with 3010 (the client reconnects and recovers).
func TestOffsetGapDisconnectsServerSideSubscription(t *testing.T) {
	h, b := newLossyHarness(t, nil, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connected")
	require.NoError(t, s.ServerSubscribe(context.Background(), "chat:s", hub.ServerSubscribe{}))
	b.loseNext(1)
	publishN(t, h, "chat:s", 2)
	require.Eventually(t, func() bool { d := ft.disconnect(); return d != nil && d.Code == 3010 }, testenv.Wait, testenv.Tick, "disconnect 3010")
}

// A lost last publication reveals no gap: the periodic check against the
// stream top finds it at the second check that sees it behind.
func TestPositionCheckFindsLostLastPublication(t *testing.T) {
	h, b := newLossyHarness(t, nil, nil)
	_, ft := subscribedSession(t, h, "chat:p")
	b.loseNext(1)
	publishN(t, h, "chat:p", 1)
	h.clock.Advance(time.Minute)
	require.False(t, hasMessage(ft, insufficientPush)(), "one check may see a publication in flight")
	h.clock.Advance(time.Minute)
	require.Eventually(t, hasMessage(ft, insufficientPush), testenv.Wait, testenv.Tick, "unsubscribe 2500 at the second check")
}

// A publication late but delivered before the next check is no loss.
func TestPositionCheckToleratesPublicationsInFlight(t *testing.T) {
	h, b := newLossyHarness(t, nil, nil)
	_, ft := subscribedSession(t, h, "chat:f")
	b.setHold(true)
	publishN(t, h, "chat:f", 1)
	h.clock.Advance(time.Minute)
	b.release()
	require.Eventually(t, hasMessage(ft, `"offset":1`), testenv.Wait, testenv.Tick, "late publication delivered")
	h.clock.Advance(time.Minute)
	h.clock.Advance(time.Minute)
	require.False(t, hasMessage(ft, insufficientPush)())
	require.Equal(t, 1, h.hub.NumSubscriptions())
}

// After the broker resubscribed a channel (PUB/SUB reconnect) its
// subscribers are checked at once and after the settle time, without
// waiting for the periodic check.
func TestResubscribeChecksPositionsAtOnce(t *testing.T) {
	h, b := newLossyHarness(t, func(c *hub.Config) { c.PositionCheckInterval = -1 }, nil)
	_, ft := subscribedSession(t, h, "chat:r")
	b.loseNext(1)
	publishN(t, h, "chat:r", 1)
	h.hub.HandleResubscribed([]string{"chat:r"})
	h.clock.Advance(0)
	require.False(t, hasMessage(ft, insufficientPush)())
	h.clock.Advance(hub.DefaultPositionSettle)
	require.Eventually(t, hasMessage(ft, insufficientPush), testenv.Wait, testenv.Tick, "unsubscribe 2500 after the resubscribe")
}

// A broker that hangs fails the command within its deadline with a
// temporary 100; the session keeps serving commands.
func TestCommandDeadlineWithHangingBroker(t *testing.T) {
	h, b := newLossyHarness(t, nil, func(c *Config) { c.CommandTimeout = 50 * time.Millisecond })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connected")
	b.blockHistory.Store(true)
	start := time.Now()
	s.HandleMessage([]byte(`{"id":2,"subscribe":{"channel":"chat:d"}}`))
	require.Less(t, time.Since(start), 5*time.Second, "the command returned at its deadline")
	require.Eventually(t, hasMessage(ft, `"id":2,"error":{"code":100`), testenv.Wait, testenv.Tick, "error 100")
	require.Equal(t, 0, h.hub.NumSubscriptions(), "the failed subscription was rolled back")
	s.HandleMessage([]byte(`{"id":3,"ping":{}}`))
	require.Eventually(t, hasMessage(ft, `"id":3`), testenv.Wait, testenv.Tick, "next command served")
	b.blockHistory.Store(false)
	s.HandleMessage([]byte(`{"id":4,"subscribe":{"channel":"chat:d"}}`))
	require.Eventually(t, hasMessage(ft, `"id":4,"subscribe"`), testenv.Wait, testenv.Tick, "subscribe works again")
	require.Nil(t, ft.disconnect())
}

// A command waiting on the broker ends when its connection goes.
func TestCommandContextEndsWithConnection(t *testing.T) {
	h, b := newLossyHarness(t, nil, func(c *Config) { c.CommandTimeout = time.Hour })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connected")
	b.blockHistory.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.HandleMessage([]byte(`{"id":2,"subscribe":{"channel":"chat:c"}}`))
	}()
	require.Eventually(t, func() bool { return h.hub.NumSubscriptions() == 1 }, testenv.Wait, testenv.Tick, "subscribe waiting on history")
	s.Disconnect(hub.DisconnectConnectionClosed)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the command did not end with its connection")
	}
}

func replyOf(t *testing.T, ft *fakeTransport, id uint32) *protocol.Reply {
	t.Helper()
	for _, m := range ft.messages() {
		var r protocol.Reply
		if json.Unmarshal([]byte(m), &r) == nil && r.Id == id {
			return &r
		}
	}
	t.Fatalf("no reply %d", id)
	return nil
}

// offsetsOf lists, in arrival order, the offsets a JSON session received
// on ch: recovered ones in subscribe replies, then pushes.
func offsetsOf(t *testing.T, ft *fakeTransport) []uint64 {
	var out []uint64
	for _, m := range ft.messages() {
		if m == "" {
			continue
		}
		var r protocol.Reply
		require.NoError(t, json.Unmarshal([]byte(m), &r))
		if r.Subscribe != nil {
			for _, p := range r.Subscribe.Publications {
				out = append(out, p.Offset)
			}
		}
		if r.Push != nil && r.Push.Pub != nil {
			out = append(out, r.Push.Pub.Offset)
		}
	}
	return out
}

// Sessions subscribe with recovery from the stream's start while
// publications keep coming: every one of them sees every offset exactly
// once, in order, whether a publication reached it from history or live.
func TestRecoveringSubscribesRaceWithPublishes(t *testing.T) {
	engines := map[string]func(t *testing.T, clk *clocktest.Fake) hub.Broker{
		"memory": func(_ *testing.T, clk *clocktest.Fake) hub.Broker { return memory.New(clk.Now) },
		"redis": func(t *testing.T, _ *clocktest.Fake) hub.Broker {
			url := testenv.RedisURL(t)
			b, err := redisbroker.New(redisbroker.Config{Address: url, Prefix: fmt.Sprintf("sbtest.recovery.%d", time.Now().UnixNano())})
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = b.Close(ctx)
			})
			return b
		},
	}
	for name, newBroker := range engines {
		t.Run(name, func(t *testing.T) {
			clk := clocktest.New(time.Now())
			h := newBrokerHarness(t, clk, newBroker(t, clk), nil, nil)
			const ch, pubs, sessions = "chat:race", 200, 12 // pubs below the recovery cap of 300
			ctx := context.Background()
			hr, err := h.hub.History(ctx, ch, hub.HistoryOptions{})
			require.NoError(t, err)
			epoch := hr.Position.Epoch

			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < pubs; i++ {
					_, err := h.hub.Publish(ctx, ch, []byte(fmt.Sprintf(`{"n":%d}`, i+1)), nil, nil)
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
				}
			}()
			fts := make([]*fakeTransport, sessions)
			for i := range fts {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					s, ft := h.session(FormatJSON)
					fts[i] = ft
					s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, fmt.Sprintf("u%d", i)) + `"}}` + "\n" +
						`{"id":2,"subscribe":{"channel":"` + ch + `","recover":true,"offset":0,"epoch":"` + epoch + `"}}`))
				}(i)
			}
			wg.Wait()
			for i, ft := range fts {
				require.Eventually(t, func() bool {
					o := offsetsOf(t, ft)
					return len(o) > 0 && o[len(o)-1] == pubs
				}, testenv.Wait, testenv.Tick, "session %d got the last publication", i)
				require.False(t, hasMessage(ft, insufficientPush)(), "session %d", i)
				require.True(t, replyOf(t, ft, 2).Subscribe.Recovered, "session %d", i)
				o := offsetsOf(t, ft)
				require.Len(t, o, pubs, "session %d: %v", i, o)
				for j, off := range o {
					require.Equal(t, uint64(j+1), off, "session %d: %v", i, o)
				}
			}
		})
	}
}
