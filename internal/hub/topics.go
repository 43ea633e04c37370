package hub

import (
	"context"
	"errors"
	"fmt"
)

// TopicMessage is one message published on a topic.
type TopicMessage struct {
	Topic string
	Data  []byte
}

// TopicBroker is an optional interface of a Broker that also moves opaque
// messages between processes on topics: names of their own (never hub
// channels), with no history, presence, offsets or encoding, on the same
// PUB/SUB connections as the channels. Components that keep their own
// state across processes use them (the relay's rooms). Delivery is at
// most once, like the broker's PUB/SUB: a reconnecting connection loses
// what was published meanwhile. Messages of one topic published by one
// process arrive in publication order; a process subscribed to a topic
// also receives its own messages.
type TopicBroker interface {
	SubscribeTopic(ctx context.Context, topic string) error
	UnsubscribeTopic(topic string) error
	// PublishTopics publishes msgs in order; a nil error means all were
	// handed to the engine.
	PublishTopics(ctx context.Context, msgs []TopicMessage) error
}

// TopicHandler receives the messages of subscribed topics. The Hub
// implements it for its broker; data is a fresh copy the handler may keep
// and modify. Calls for one topic come from one goroutine, in order, and
// must return promptly (they hold up the connection's other traffic).
type TopicHandler interface {
	HandleTopic(topic string, data []byte)
}

// Topics is the engine's topic bus as the hub hands it out (Hub.Topics).
type Topics struct {
	h *Hub
	b TopicBroker
}

// topicFunc is the handler set with Topics.Listen.
type topicFunc = func(topic string, data []byte)

// Topics returns the broker's topic bus, or nil when the broker has none
// (the memory engine: one process, nothing to carry).
func (h *Hub) Topics() *Topics {
	b, ok := h.cfg.Broker.(TopicBroker)
	if !ok {
		return nil
	}
	return &Topics{h: h, b: b}
}

// HandleTopic implements TopicHandler: it hands the message to the
// function set with Topics.Listen (dropped when none).
func (h *Hub) HandleTopic(topic string, data []byte) {
	if f := h.topicFn.Load(); f != nil {
		(*f)(topic, data)
	}
}

var errListening = errors.New("hub: topics: a handler is already listening")

// Listen sets the function receiving every subscribed topic's messages
// (see TopicHandler). One component listens per hub.
func (t *Topics) Listen(fn func(topic string, data []byte)) error {
	if !t.h.topicFn.CompareAndSwap(nil, &fn) {
		return errListening
	}
	return nil
}

// Subscribe starts delivering topic's messages to the listener.
func (t *Topics) Subscribe(ctx context.Context, topic string) error {
	if err := t.b.SubscribeTopic(ctx, topic); err != nil {
		return fmt.Errorf("hub: subscribe topic: %w", err)
	}
	return nil
}

// Unsubscribe stops delivering topic's messages.
func (t *Topics) Unsubscribe(topic string) error {
	if err := t.b.UnsubscribeTopic(topic); err != nil {
		return fmt.Errorf("hub: unsubscribe topic: %w", err)
	}
	return nil
}

// Publish publishes msgs in order to every process subscribed to their topics.
func (t *Topics) Publish(ctx context.Context, msgs []TopicMessage) error {
	if err := t.b.PublishTopics(ctx, msgs); err != nil {
		return fmt.Errorf("hub: publish topics: %w", err)
	}
	return nil
}
