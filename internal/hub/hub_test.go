package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// rawCodec encodes pushes as "kind:channel:data" for assertions.
type rawCodec struct{ name string }

func (c rawCodec) EncodePublication(ch string, p *hub.Publication) ([]byte, error) {
	return []byte(fmt.Sprintf("%s pub %s %d %s", c.name, ch, p.Offset, p.Data)), nil
}
func (c rawCodec) EncodeJoin(ch string, i *hub.ClientInfo) ([]byte, error) {
	return []byte(c.name + " join " + ch + " " + i.UserID), nil
}
func (c rawCodec) EncodeLeave(ch string, i *hub.ClientInfo) ([]byte, error) {
	return []byte(c.name + " leave " + ch + " " + i.UserID), nil
}
func (c rawCodec) EncodeMessage(data []byte) ([]byte, error) {
	return []byte(c.name + " message " + string(data)), nil
}

// newHubConfig returns a hub with raw formats registered under names (ids
// 0, 1, … in that order).
func newHubConfig(t testing.TB, cfg hub.Config, names ...string) *hub.Hub {
	t.Helper()
	h, err := hub.New(cfg)
	require.NoError(t, err)
	for i, n := range names {
		id, err := h.RegisterFormat(n, rawCodec{n})
		require.NoError(t, err)
		require.Equal(t, hub.FormatID(i), id)
	}
	return h
}

type fakeSub struct {
	format hub.FormatID
	mu     sync.Mutex
	got    []string
}

func (f *fakeSub) Format() hub.FormatID { return f.format }
func (f *fakeSub) Deliver(_ string, _ uint64, frame []byte) {
	f.mu.Lock()
	f.got = append(f.got, string(frame))
	f.mu.Unlock()
}
func (f *fakeSub) frames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func newHub(t testing.TB, ns hub.Namespaces) *hub.Hub {
	t.Helper()
	b := memory.New(nil)
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence(), Namespaces: ns}, "json", "pb")
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	return h
}

func chatNamespaces() hub.Namespaces {
	return hub.Namespaces{Named: map[string]hub.ChannelOptions{
		"chat": {HistorySize: 3, HistoryTTL: time.Minute, Presence: true, JoinLeave: true},
	}}
}

func TestFanoutEncodesOncePerFormat(t *testing.T) {
	h := newHub(t, chatNamespaces())
	var subs []*fakeSub
	for i := 0; i < 4; i++ {
		s := &fakeSub{format: hub.FormatID(i % 2)}
		subs = append(subs, s)
		require.NoError(t, h.AddSubscriber("chat:a", s, false))
	}
	require.ErrorIs(t, h.AddSubscriber("chat:a", subs[0], false), hub.ErrAlreadySubscribed)
	_, err := h.Publish(context.Background(), "chat:a", []byte("x"), nil, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"json pub chat:a 1 x"}, subs[0].frames())
	require.Equal(t, []string{"pb pub chat:a 1 x"}, subs[1].frames())
	require.Equal(t, 4, h.NumSubscriptions())
	require.Equal(t, map[string]int{"chat:a": 4}, h.Channels())

	require.True(t, h.RemoveSubscriber("chat:a", subs[0]))
	require.False(t, h.RemoveSubscriber("chat:a", subs[0]))
	_, err = h.Publish(context.Background(), "chat:a", []byte("y"), nil, nil)
	require.NoError(t, err)
	require.Len(t, subs[0].frames(), 1, "removed subscriber gets nothing more")
	require.Len(t, subs[2].frames(), 2)
}

func TestJoinLeaveOnlyToSubscribersWhoAsked(t *testing.T) {
	h := newHub(t, chatNamespaces())
	want, plain := &fakeSub{}, &fakeSub{}
	require.NoError(t, h.AddSubscriber("chat:a", want, true))
	require.NoError(t, h.AddSubscriber("chat:a", plain, false))
	require.NoError(t, h.PublishJoin(context.Background(), "chat:a", &hub.ClientInfo{UserID: "u1"}))
	require.NoError(t, h.PublishLeave(context.Background(), "chat:a", &hub.ClientInfo{UserID: "u1"}))
	require.Equal(t, []string{"json join chat:a u1", "json leave chat:a u1"}, want.frames())
	require.Empty(t, plain.frames())
}

func TestHistoryRespectsSizeAndNamespace(t *testing.T) {
	h := newHub(t, chatNamespaces())
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		sp, err := h.Publish(ctx, "chat:h", []byte{byte('0' + i)}, nil, nil)
		require.NoError(t, err)
		require.Equal(t, uint64(i), sp.Offset)
	}
	r, err := h.History(ctx, "chat:h", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Len(t, r.Publications, 3)
	require.Equal(t, uint64(3), r.Publications[0].Offset)
	require.Equal(t, uint64(5), r.Position.Offset)

	r2, err := h.History(ctx, "chat:h", hub.HistoryOptions{Limit: 1, Reverse: true})
	require.NoError(t, err)
	require.Equal(t, uint64(5), r2.Publications[0].Offset)

	since, err := h.History(ctx, "chat:h", hub.HistoryOptions{Limit: -1, Since: &hub.StreamPosition{Offset: 4, Epoch: r.Position.Epoch}})
	require.NoError(t, err)
	require.Len(t, since.Publications, 1)

	_, err = h.History(ctx, "nohistory", hub.HistoryOptions{})
	require.ErrorIs(t, err, hub.ErrNotAvailable)
	_, err = h.History(ctx, "missing:x", hub.HistoryOptions{})
	require.ErrorIs(t, err, hub.ErrUnknownChannel)

	require.NoError(t, h.RemoveHistory(ctx, "chat:h"))
	r3, err := h.History(ctx, "chat:h", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Empty(t, r3.Publications)
	require.Equal(t, r.Position, r3.Position, "removal keeps epoch and offset (issue 10: one semantics for both engines)")
}

func TestHistoryTTL(t *testing.T) {
	clk := clocktest.New(time.Unix(1000, 0))
	b := memory.New(clk.Now)
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence(), Clock: clk,
		Namespaces: hub.Namespaces{Default: hub.ChannelOptions{HistorySize: 10, HistoryTTL: time.Second}}}, "json")
	defer h.Shutdown(context.Background())
	ctx := context.Background()
	_, err := h.Publish(ctx, "ttl", []byte("a"), nil, nil)
	require.NoError(t, err)
	clk.Advance(999 * time.Millisecond)
	r, err := h.History(ctx, "ttl", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Len(t, r.Publications, 1, "kept until the TTL has passed")
	require.Equal(t, 999*time.Millisecond, h.Uptime())
	clk.Advance(time.Millisecond)
	r, err = h.History(ctx, "ttl", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Empty(t, r.Publications)
	require.Equal(t, uint64(1), r.Position.Offset, "the stream position outlives expired publications")
}

func TestPresenceAndStats(t *testing.T) {
	h := newHub(t, chatNamespaces())
	ctx := context.Background()
	require.NoError(t, h.AddPresence(ctx, "chat:p", &hub.ClientInfo{ClientID: "c1", UserID: "u1"}))
	require.NoError(t, h.AddPresence(ctx, "chat:p", &hub.ClientInfo{ClientID: "c2", UserID: "u1"}))
	require.NoError(t, h.AddPresence(ctx, "chat:p", &hub.ClientInfo{ClientID: "c3", UserID: "u2"}))
	p, err := h.Presence(ctx, "chat:p")
	require.NoError(t, err)
	require.Len(t, p, 3)
	st, err := h.PresenceStats(ctx, "chat:p")
	require.NoError(t, err)
	require.Equal(t, hub.PresenceStats{NumClients: 3, NumUsers: 2}, st)
	require.NoError(t, h.RemovePresence(ctx, "chat:p", "c1", "u1"))
	st, _ = h.PresenceStats(ctx, "chat:p")
	require.Equal(t, 2, st.NumClients)
	_, err = h.Presence(ctx, "nopresence")
	require.ErrorIs(t, err, hub.ErrNotAvailable)
}

func TestNamespacesAndUserLimitedChannels(t *testing.T) {
	ns := hub.Namespaces{Named: map[string]hub.ChannelOptions{"chat": {Presence: true}}, MaxLength: 10}
	_, err := ns.Resolve("chat:x")
	require.NoError(t, err)
	_, err = ns.Resolve("nope:x")
	require.ErrorIs(t, err, hub.ErrUnknownChannel)
	_, err = ns.Resolve("")
	require.ErrorIs(t, err, hub.ErrBadRequest)
	_, err = ns.Resolve("chat:toolongname")
	require.ErrorIs(t, err, hub.ErrBadRequest)

	for _, tc := range []struct {
		ch, user         string
		limited, allowed bool
	}{
		{"news", "1", false, false},
		{"dialog#1,2", "1", true, true},
		{"dialog#1,2", "2", true, true},
		{"dialog#1,2", "3", true, false},
		{"dialog#1,2", "", true, false},
		{"chat:#42", "42", true, true},
	} {
		limited, allowed := hub.UserAllowed(tc.ch, tc.user)
		require.Equal(t, tc.limited, limited, tc.ch)
		require.Equal(t, tc.allowed, allowed, tc.ch+" "+tc.user)
	}
}

type fakeClient struct {
	id, user string
	mu       sync.Mutex
	disc     []hub.Disconnect
	sent     []string
	onDisc   func()
}

func (c *fakeClient) Format() hub.FormatID { return 0 }
func (c *fakeClient) Send(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, string(frame))
	return nil
}

func (c *fakeClient) ID() string     { return c.id }
func (c *fakeClient) UserID() string { return c.user }
func (c *fakeClient) Disconnect(d hub.Disconnect) {
	c.mu.Lock()
	c.disc = append(c.disc, d)
	c.mu.Unlock()
	if c.onDisc != nil {
		c.onDisc()
	}
}
func (c *fakeClient) ServerSubscribe(context.Context, string, hub.ServerSubscribe) error { return nil }
func (c *fakeClient) ServerUnsubscribe(context.Context, string, uint32, string)          {}
func (c *fakeClient) Refresh(int64, bool, []byte)                                        {}

func TestClientLimitsAndShutdown(t *testing.T) {
	b := memory.New(nil)
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence(), ConnectionLimit: 3, UserConnectionLimit: 2}, "json")
	var clients []*fakeClient
	for i, u := range []string{"a", "a", "b"} {
		c := &fakeClient{id: fmt.Sprint(i), user: u}
		clients = append(clients, c)
		require.NoError(t, h.AddClient(c))
	}
	require.ErrorIs(t, h.AddClient(&fakeClient{id: "x", user: "a"}), hub.ErrLimitExceeded)
	require.ErrorIs(t, h.AddClient(&fakeClient{id: "y", user: "c"}), hub.ErrLimitExceeded)
	require.Len(t, h.UserClients("a", ""), 2)
	require.Len(t, h.UserClients("a", "1"), 1)
	require.Empty(t, h.UserClients("a", "2"))
	require.Equal(t, 2, h.NumUsers())

	for _, c := range clients {
		c := c
		c.onDisc = func() { h.RemoveClient(c) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	for _, c := range clients {
		require.Equal(t, []hub.Disconnect{hub.DisconnectShutdown}, c.disc)
	}
	require.ErrorIs(t, h.AddClient(&fakeClient{id: "z", user: "d"}), hub.ErrNotAvailable)
}

func TestShutdownDeadline(t *testing.T) {
	b := memory.New(nil)
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence()}, "json")
	require.NoError(t, h.AddClient(&fakeClient{id: "stuck", user: "u"}))
	// A deadline already passed: Shutdown gives up at once, naming it.
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	err := h.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "1 clients still connected")
	_ = b.Close(context.Background())
}

func TestConcurrentPublishesKeepOffsetOrder(t *testing.T) {
	h := newHub(t, hub.Namespaces{Default: hub.ChannelOptions{HistorySize: 1000, HistoryTTL: time.Minute}})
	sub := &orderSub{}
	require.NoError(t, h.AddSubscriber("ordered", sub, false))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				_, err := h.Publish(context.Background(), "ordered", []byte("x"), nil, nil)
				if !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 800, len(sub.offsets))
	for i, o := range sub.offsets {
		require.Equal(t, uint64(i+1), o)
	}
}

type orderSub struct {
	mu      sync.Mutex
	offsets []uint64
}

func (o *orderSub) Format() hub.FormatID { return 0 }
func (o *orderSub) Deliver(_ string, off uint64, _ []byte) {
	o.mu.Lock()
	o.offsets = append(o.offsets, off)
	o.mu.Unlock()
}

// TestClientChurnDoesNotDeadlock registers and removes many clients of
// many users from many goroutines at once (a lock-order inversion between
// the user and client indexes once deadlocked exactly this).
func TestClientChurnDoesNotDeadlock(t *testing.T) {
	b := memory.New(nil)
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence()}, "json")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					c := &fakeClient{id: fmt.Sprintf("c%d-%d", w, i), user: fmt.Sprintf("u%d", i%97)}
					if !assert.NoError(t, h.AddClient(c)) {
						return
					}
					h.RemoveClient(c)
				}
			}(w)
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("client churn deadlocked")
	}
	require.Equal(t, 0, h.NumClients())
	require.Equal(t, 0, h.NumUsers())
}

func TestDeliverToOneClient(t *testing.T) {
	h := newHub(t, hub.Namespaces{})
	a, b := &fakeClient{id: "a", user: "u"}, &fakeClient{id: "b", user: "u"}
	require.NoError(t, h.AddClient(a))
	require.NoError(t, h.AddClient(b))
	require.NoError(t, h.Deliver("b", []byte("hi")))
	require.Equal(t, []string{"json message hi"}, b.sent, "encoded in the client's format")
	require.Empty(t, a.sent, "only the addressed connection gets it")
	h.RemoveClient(b)
	require.ErrorIs(t, h.Deliver("b", []byte("hi")), hub.ErrNoClient)
	require.ErrorIs(t, h.Deliver("nobody", []byte("hi")), hub.ErrNoClient)
	h.RemoveClient(a)
}

func TestRegisterFormat(t *testing.T) {
	h := newHubConfig(t, hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence()})
	defer h.Shutdown(context.Background())
	require.Error(t, h.AddSubscriber("x", &fakeSub{format: 0}, false), "no format registered yet")
	for i := 0; i < hub.MaxFormats; i++ {
		id, err := h.RegisterFormat(fmt.Sprint("f", i), rawCodec{"f"})
		require.NoError(t, err)
		require.Equal(t, hub.FormatID(i), id)
	}
	_, err := h.RegisterFormat("f0", rawCodec{"f"})
	require.ErrorContains(t, err, "already registered")
	_, err = h.RegisterFormat("more", rawCodec{"f"})
	require.ErrorContains(t, err, "at most")
	_, err = h.RegisterFormat("", rawCodec{"f"})
	require.Error(t, err)
	require.NoError(t, h.AddSubscriber("x", &fakeSub{format: 3}, false))
}
