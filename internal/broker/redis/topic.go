package redis

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

var _ hub.TopicBroker = (*Broker)(nil)

// SubscribeTopic subscribes the PUB/SUB channel p.topic.topic on the
// topic's shard, like a hub channel (kept across reconnects; a temporary
// 108 while the shard reconnects). Its messages go to the handler's
// HandleTopic when it has one. After a reconnect of the shard the topic
// is subscribed again and named to the handler's HandleTopicsResubscribed
// (hub.TopicResubscribeHandler) with the shard's other topics: messages
// published while the connection was down are lost.
func (b *Broker) SubscribeTopic(ctx context.Context, topic string) error {
	return b.subscribe(ctx, "subscribe topic", topic, b.topics+topic)
}

// UnsubscribeTopic withdraws the subscription (see Unsubscribe).
func (b *Broker) UnsubscribeTopic(topic string) error {
	return b.unsubscribe("unsubscribe topic", topic, b.topics+topic)
}

// PublishTopics PUBLISHes msgs in one pipelined round trip, in order.
func (b *Broker) PublishTopics(ctx context.Context, msgs []hub.TopicMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(msgs))
	for i, m := range msgs {
		cmds[i] = b.client.B().Publish().Channel(b.topics + m.Topic).Message(rueidis.BinaryString(m.Data)).Build()
	}
	for i, r := range b.client.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("redis broker: publish topic %q: %w", msgs[i].Topic, err)
		}
	}
	return nil
}
