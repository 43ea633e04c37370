package hub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// loopTopics is a memory broker with in-process topics: a publish of a
// subscribed topic comes straight back to the hub.
type loopTopics struct {
	*memory.Broker
	h          hub.BrokerEventHandler
	subscribed map[string]bool
	fail       error
}

func (b *loopTopics) Run(h hub.BrokerEventHandler) error { b.h = h; return b.Broker.Run(h) }
func (b *loopTopics) SubscribeTopic(_ context.Context, topic string) error {
	b.subscribed[topic] = true
	return b.fail
}
func (b *loopTopics) UnsubscribeTopic(topic string) error { delete(b.subscribed, topic); return nil }
func (b *loopTopics) PublishTopics(_ context.Context, msgs []hub.TopicMessage) error {
	for _, m := range msgs {
		if b.subscribed[m.Topic] {
			b.h.(hub.TopicHandler).HandleTopic(m.Topic, m.Data)
		}
	}
	return b.fail
}

func TestTopicsOnlyWithATopicBroker(t *testing.T) {
	require.Nil(t, newHub(t, hub.Namespaces{}).Topics(), "the memory engine has none")

	b := &loopTopics{Broker: memory.New(nil), subscribed: map[string]bool{}}
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence()})
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	tp := h.Topics()
	require.NotNil(t, tp)
	var got []string
	require.NoError(t, tp.Listen(func(topic string, data []byte) { got = append(got, topic+"="+string(data)) }))
	require.Error(t, tp.Listen(func(string, []byte) {}), "one listener")
	ctx := context.Background()
	require.NoError(t, tp.Subscribe(ctx, "relay:a"))
	require.NoError(t, tp.Publish(ctx, []hub.TopicMessage{{Topic: "relay:a", Data: []byte("1")}, {Topic: "relay:b", Data: []byte("2")}}))
	require.NoError(t, tp.Unsubscribe("relay:a"))
	require.NoError(t, tp.Publish(ctx, []hub.TopicMessage{{Topic: "relay:a", Data: []byte("3")}}))
	require.Equal(t, []string{"relay:a=1"}, got)

	b.fail = errors.New("down")
	require.ErrorContains(t, tp.Subscribe(ctx, "relay:c"), "hub: subscribe topic: down")
	require.ErrorContains(t, tp.Publish(ctx, nil), "hub: publish topics: down")
}

// resubscribed is what the engine does after it replaced a PUB/SUB
// connection and subscribed the topics again.
func (b *loopTopics) resubscribed(topics ...string) {
	b.h.(hub.TopicResubscribeHandler).HandleTopicsResubscribed(topics)
}

// The hub hands an engine's resubscribe report to the function set with
// ListenResubscribed, independently of Listen, and drops it without one
// and once Shutdown has begun (the engine may outlive the hub).
func TestTopicsListenResubscribed(t *testing.T) {
	b := &loopTopics{Broker: memory.New(nil), subscribed: map[string]bool{}}
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence()})
	tp := h.Topics()
	require.NotNil(t, tp)
	b.resubscribed("relay:early") // nobody listens yet: dropped

	var reports [][]string
	require.ErrorContains(t, tp.ListenResubscribed(nil), "nil listener")
	require.NoError(t, tp.ListenResubscribed(func(topics []string) { reports = append(reports, topics) }))
	require.ErrorContains(t, tp.ListenResubscribed(func([]string) {}), "already listening for resubscribes")
	var msgs []string
	require.NoError(t, tp.Listen(func(topic string, data []byte) { msgs = append(msgs, topic+"="+string(data)) }),
		"Listen is set apart from ListenResubscribed")
	require.ErrorContains(t, tp.Listen(func(string, []byte) {}), "already listening")

	ctx := context.Background()
	require.NoError(t, tp.Subscribe(ctx, "relay:a"))
	b.resubscribed("relay:a", "relay:b")
	require.NoError(t, tp.Publish(ctx, []hub.TopicMessage{{Topic: "relay:a", Data: []byte("1")}}))
	require.Equal(t, [][]string{{"relay:a", "relay:b"}}, reports)
	require.Equal(t, []string{"relay:a=1"}, msgs)

	require.NoError(t, h.Shutdown(ctx))
	b.resubscribed("relay:a")
	require.Len(t, reports, 1, "not after Shutdown")
}

// A hub whose engine has topics but whose component listens only for
// messages drops resubscribe reports.
func TestTopicsResubscribedWithoutListener(t *testing.T) {
	b := &loopTopics{Broker: memory.New(nil), subscribed: map[string]bool{}}
	h := newHubConfig(t, hub.Config{Broker: b, Presence: memory.NewPresence()})
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	var msgs []string
	require.NoError(t, h.Topics().Listen(func(topic string, data []byte) { msgs = append(msgs, topic) }))
	require.ErrorContains(t, h.Topics().Listen(nil), "nil listener")
	b.resubscribed("relay:a")
	require.NoError(t, h.Topics().Subscribe(context.Background(), "relay:a"))
	require.NoError(t, h.Topics().Publish(context.Background(), []hub.TopicMessage{{Topic: "relay:a"}}))
	require.Equal(t, []string{"relay:a"}, msgs)
}
