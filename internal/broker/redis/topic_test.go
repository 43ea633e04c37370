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

// topicRecorder is a broker handler that also takes topic messages.
type topicRecorder struct {
	*brokertest.Recorder
	mu   sync.Mutex
	msgs []hub.TopicMessage
}

func (r *topicRecorder) HandleTopic(topic string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, hub.TopicMessage{Topic: topic, Data: data})
}

func (r *topicRecorder) got() []hub.TopicMessage {
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
	rec := &topicRecorder{Recorder: brokertest.NewRecorder()}
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
