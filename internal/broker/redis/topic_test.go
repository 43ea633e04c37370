package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// topicLog keeps topic messages (hub.TopicHandler).
type topicLog struct {
	mu   sync.Mutex
	msgs []hub.TopicMessage
}

// topicRecorder is a broker handler that also takes topic messages.
type topicRecorder struct {
	*brokertest.Recorder
	*topicLog
}

func (r *topicLog) HandleTopic(topic string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, hub.TopicMessage{Topic: topic, Data: data})
}

func (r *topicLog) got() []hub.TopicMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hub.TopicMessage(nil), r.msgs...)
}

// Topics share the shards with the hub's channels, arrive in order, stay
// apart from a hub channel of the same name and stop at unsubscribe.
func TestTopicsInOrderApartFromChannels(t *testing.T) {
	prefix := testPrefix(t)
	pub := newTestBroker(t, Config{Prefix: prefix})
	sub := newTestBroker(t, Config{Prefix: prefix})
	require.NoError(t, pub.Run(brokertest.NewRecorder()))
	rec := &topicRecorder{Recorder: brokertest.NewRecorder(), topicLog: &topicLog{}}
	require.NoError(t, sub.Run(rec))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, sub.SubscribeTopic(ctx, "relay:a"))
	require.NoError(t, sub.Subscribe("relay:a"))

	var msgs []hub.TopicMessage
	for i := range 100 {
		msgs = append(msgs, hub.TopicMessage{Topic: "relay:a", Data: []byte{byte(i), 0, 0xff}})
	}
	require.NoError(t, pub.PublishTopics(ctx, msgs[:60]))
	require.NoError(t, pub.PublishTopics(ctx, msgs[60:]))
	_, err := pub.Publish(ctx, "relay:a", &hub.Publication{Data: []byte(`{}`)}, hub.PublishOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rec.got()) == 100 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, msgs, rec.got())
	require.Eventually(t, func() bool { return len(rec.Events("relay:a")) == 1 }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, sub.UnsubscribeTopic("relay:a"))
	require.NoError(t, pub.PublishTopics(ctx, []hub.TopicMessage{{Topic: "relay:b", Data: []byte("x")}, {Topic: "relay:a", Data: []byte("late")}}))
	require.NoError(t, sub.SubscribeTopic(ctx, "relay:b"))
	require.NoError(t, pub.PublishTopics(ctx, []hub.TopicMessage{{Topic: "relay:b", Data: []byte("y")}}))
	require.Eventually(t, func() bool { return len(rec.got()) == 101 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, hub.TopicMessage{Topic: "relay:b", Data: []byte("y")}, rec.got()[100])
}

// A replaced PUB/SUB connection subscribes the topics again (not reported
// as hub channels) and their messages flow once more.
func TestTopicsResubscribed(t *testing.T) {
	srv := startRedis(t)
	cfg := fastConfig(srv.URL())
	cfg.Shards = 1
	b := newTestBroker(t, cfg)
	rec := &struct {
		*resubRecorder
		*topicLog
	}{&resubRecorder{Recorder: brokertest.NewRecorder()}, &topicLog{}}
	require.NoError(t, b.Run(rec))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.SubscribeTopic(ctx, "relay:kept"))
	subscribe(t, b, "chan")
	admin(t, srv, "CLIENT", "KILL", "TYPE", "pubsub")
	require.Eventually(t, func() bool { return len(rec.resubscribed()) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"chan"}, rec.resubscribed(), "topics are not hub channels")
	require.Eventually(t, func() bool {
		_ = b.PublishTopics(ctx, []hub.TopicMessage{{Topic: "relay:kept", Data: []byte("again")}})
		return len(rec.got()) > 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "again", string(rec.got()[0].Data))
}
