package redis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// resyncRecorder is a handler of hub channels and topics that also keeps
// the HandleResubscribed and HandleTopicsResubscribed calls.
type resyncRecorder struct {
	*resubRecorder
	*topicLog
	mu      sync.Mutex
	reports [][]string
}

func newResyncRecorder() *resyncRecorder {
	return &resyncRecorder{resubRecorder: &resubRecorder{Recorder: brokertest.NewRecorder()}, topicLog: &topicLog{}}
}

func (r *resyncRecorder) HandleTopicsResubscribed(topics []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, topics)
}

func (r *resyncRecorder) topicReports() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reports)
}

// reportedTopics is every topic of every report.
func (r *resyncRecorder) reportedTopics() []string {
	var all []string
	for _, rep := range r.topicReports() {
		all = append(all, rep...)
	}
	return all
}

// has reports whether a message with data arrived on topic.
func (r *topicLog) has(topic, data string) bool {
	for _, m := range r.got() {
		if m.Topic == topic && string(m.Data) == data {
			return true
		}
	}
	return false
}

var _ hub.TopicResubscribeHandler = (*resyncRecorder)(nil)

// publishTopic publishes one message on topic, again while the client's
// own connection is not back yet (an error means it was not handed over).
func publishTopic(t *testing.T, b *Broker, topic, data string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return b.PublishTopics(ctx, []hub.TopicMessage{{Topic: topic, Data: []byte(data)}}) == nil
	}, 10*time.Second, 20*time.Millisecond, "publish on %s", topic)
}

// After Redis restarts, each shard's new PUB/SUB connection names the
// topics it subscribed again, once per reconnect: exactly the topics of
// that shard still subscribed, never a hub channel, an unsubscribed topic
// or a topic at its first subscribe; a message published once the report
// came arrives without retrying.
func TestTopicsResubscribedReportedPerShard(t *testing.T) {
	srv := startRedis(t)
	cfg := fastConfig(srv.URL())
	cfg.Shards = 2
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := newTestBroker(t, cfg)
	rec := newResyncRecorder()
	require.NoError(t, b.Run(rec))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Three topics on each shard.
	byShard := map[int][]string{}
	for i := 0; len(byShard[0]) < 3 || len(byShard[1]) < 3; i++ {
		topic := fmt.Sprint("relay:room", i)
		if id := b.shardFor(b.topics + topic).id; len(byShard[id]) < 3 {
			byShard[id] = append(byShard[id], topic)
		}
	}
	topics := append(slices.Clone(byShard[0]), byShard[1]...)
	for _, topic := range append(slices.Clone(topics), "relay:gone") {
		require.NoError(t, b.SubscribeTopic(ctx, topic))
	}
	subscribe(t, b, "chan")
	require.NoError(t, b.UnsubscribeTopic("relay:gone"))
	for _, topic := range topics {
		publishTopic(t, b, topic, "before")
	}
	require.Eventually(t, func() bool { return len(rec.got()) == len(topics) }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, rec.topicReports(), "a first subscribe is not reported")
	connects := func() int { return int(metricValue(t, reg, "switchboard_redis_pubsub_connects_total")) }
	require.Equal(t, 2, connects(), "one first connect per shard")

	srv.Kill()
	srv.Start()
	require.Eventually(t, func() bool {
		got := rec.reportedTopics()
		for _, topic := range topics {
			if !slices.Contains(got, topic) {
				return false
			}
		}
		return true
	}, 15*time.Second, 10*time.Millisecond, "every topic reported after the restart")
	// Once per reconnect: every live connection after the first two
	// reported (they all carry topics).
	require.Eventually(t, func() bool { return len(rec.topicReports()) == connects()-2 }, 5*time.Second, 10*time.Millisecond,
		"one report per reconnect of a shard")
	for _, rep := range rec.topicReports() {
		id := b.shardFor(b.topics + rep[0]).id
		require.ElementsMatch(t, byShard[id], rep, "a report names the topics of its shard, once each")
	}
	require.Contains(t, rec.resubscribed(), "chan", "hub channels go to HandleResubscribed")
	for _, topic := range topics {
		require.NotContains(t, rec.resubscribed(), topic, "topics are not hub channels")
	}

	// The report follows the SUBSCRIBE: one publish is enough.
	for _, topic := range topics {
		publishTopic(t, b, topic, "after")
	}
	require.Eventually(t, func() bool {
		for _, topic := range topics {
			if !rec.has(topic, "after") {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "messages published after the report arrive")

	// A topic subscribed after the restart is at its first subscribe.
	require.Eventually(t, func() bool { return b.SubscribeTopic(ctx, "relay:new") == nil }, 5*time.Second, 10*time.Millisecond)
	publishTopic(t, b, "relay:new", "first")
	require.Eventually(t, func() bool { return rec.has("relay:new", "first") }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, connects()-2, len(rec.topicReports()))
	require.NotContains(t, rec.reportedTopics(), "relay:new")
	require.NotContains(t, rec.reportedTopics(), "relay:gone", "an unsubscribed topic is not reported")
}

// The hub hands the engine's reports to the function set with
// Topics.ListenResubscribed (the relay's wiring).
func TestTopicsResubscribedThroughHub(t *testing.T) {
	srv := startRedis(t)
	cfg := fastConfig(srv.URL())
	cfg.Shards = 1
	b := newTestBroker(t, cfg)
	h, err := hub.New(hub.Config{Broker: b, Presence: b})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	tp := h.Topics()
	require.NotNil(t, tp)
	var mu sync.Mutex
	var reports [][]string
	require.NoError(t, tp.ListenResubscribed(func(topics []string) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, topics)
	}))
	got := func() [][]string { mu.Lock(); defer mu.Unlock(); return slices.Clone(reports) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tp.Subscribe(ctx, "relay:a"))
	require.NoError(t, tp.Subscribe(ctx, "relay:b"))

	admin(t, srv, "CLIENT", "KILL", "TYPE", "pubsub")
	require.Eventually(t, func() bool { return len(got()) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"relay:a", "relay:b"}, got()[0])
}
