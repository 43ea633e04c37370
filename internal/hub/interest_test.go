package hub

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowBroker hangs in Subscribe of channel "slow" until release closes.
type slowBroker struct {
	release chan struct{}
	entered chan struct{}
}

func (b *slowBroker) Run(BrokerEventHandler) error { return nil }
func (b *slowBroker) Subscribe(ch string) error {
	if ch == "slow" {
		close(b.entered)
		<-b.release
	}
	return nil
}
func (b *slowBroker) Unsubscribe(string) error { return nil }
func (b *slowBroker) Publish(context.Context, string, *Publication, PublishOptions) (StreamPosition, error) {
	return StreamPosition{}, nil
}
func (b *slowBroker) PublishJoin(context.Context, string, *ClientInfo) error  { return nil }
func (b *slowBroker) PublishLeave(context.Context, string, *ClientInfo) error { return nil }
func (b *slowBroker) History(context.Context, string, HistoryOptions) (HistoryResult, error) {
	return HistoryResult{}, nil
}
func (b *slowBroker) RemoveHistory(context.Context, string) error { return nil }

type nopPresence struct{}

func (nopPresence) AddPresence(context.Context, string, string, *ClientInfo) error { return nil }
func (nopPresence) RemovePresence(context.Context, string, string, string) error   { return nil }
func (nopPresence) Presence(context.Context, string) (map[string]*ClientInfo, error) {
	return nil, nil
}
func (nopPresence) PresenceStats(context.Context, string) (PresenceStats, error) {
	return PresenceStats{}, nil
}

type nopEncoder struct{}

func (nopEncoder) EncodePublication(string, *Publication) ([]byte, error) { return []byte("p"), nil }
func (nopEncoder) EncodeJoin(string, *ClientInfo) ([]byte, error)         { return []byte("j"), nil }
func (nopEncoder) EncodeLeave(string, *ClientInfo) ([]byte, error)        { return []byte("l"), nil }
func (nopEncoder) EncodeMessage([]byte) ([]byte, error)                   { return []byte("m"), nil }

type nopSub struct{ f FormatID }

func (s *nopSub) Format() FormatID               { return s.f }
func (s *nopSub) Deliver(string, uint64, []byte) {}

// A broker Subscribe that hangs for one channel holds up no other channel,
// not even one of the same shard.
func TestSlowBrokerSubscribeBlocksOnlyItsChannel(t *testing.T) {
	b := &slowBroker{release: make(chan struct{}), entered: make(chan struct{})}
	h, err := New(Config{Broker: b, Presence: nopPresence{}, PositionCheckInterval: -1})
	require.NoError(t, err)
	f, err := h.RegisterFormat("nop", nopEncoder{})
	require.NoError(t, err)
	other := ""
	for i := 0; other == ""; i++ {
		if c := fmt.Sprintf("other-%d", i); h.shardIndex(c) == h.shardIndex("slow") {
			other = c
		}
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- h.AddSubscriber("slow", &nopSub{f}, false) }()
	<-b.entered
	otherDone := make(chan error, 1)
	go func() { otherDone <- h.AddSubscriber(other, &nopSub{f}, false) }()
	select {
	case err := <-otherDone:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a slow broker subscribe of one channel blocked another channel of its shard")
	}
	// A second subscriber of the slow channel waits for its transition.
	second := make(chan error, 1)
	go func() { second <- h.AddSubscriber("slow", &nopSub{f}, false) }()
	close(b.release)
	require.NoError(t, <-slowDone)
	require.NoError(t, <-second)
	require.Equal(t, 3, h.NumSubscriptions())
	require.Empty(t, h.interest[h.shardIndex("slow")].channels, "interest entries are dropped when unused")
}

// ctxBroker is a slowBroker whose Subscribe of "slow" also ends with the
// caller's context (a hub.ContextSubscriber).
type ctxBroker struct{ slowBroker }

func (b *ctxBroker) SubscribeContext(ctx context.Context, ch string) error {
	if ch != "slow" {
		return nil
	}
	close(b.entered)
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AddSubscriberContext keeps the caller's deadline: the broker subscribe
// gets the context, and a second subscriber waiting behind a slow first
// one gives up when its own context ends.
func TestAddSubscriberContextDeadline(t *testing.T) {
	b := &ctxBroker{slowBroker{release: make(chan struct{}), entered: make(chan struct{})}}
	h, err := New(Config{Broker: b, Presence: nopPresence{}, PositionCheckInterval: -1})
	require.NoError(t, err)
	f, err := h.RegisterFormat("nop", nopEncoder{})
	require.NoError(t, err)

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- h.AddSubscriberContext(firstCtx, "slow", &nopSub{f}, false) }()
	<-b.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = h.AddSubscriberContext(ctx, "slow", &nopSub{f}, false)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the waiter gives up with its context")
	require.ErrorContains(t, err, `hub: wait for the subscription of "slow" to the broker`)

	cancelFirst()
	require.ErrorIs(t, <-first, context.Canceled, "the broker subscribe ends with the caller's context")
	require.Zero(t, h.NumSubscriptions(), "failed subscribers are not kept")
	require.Empty(t, h.interest[h.shardIndex("slow")].channels, "interest entries are dropped when unused")
}
