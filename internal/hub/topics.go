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
// what was published meanwhile, and afterwards names the topics it
// subscribed again to a handler implementing TopicResubscribeHandler
// (the Hub: Topics.ListenResubscribed). Messages of one topic published by one
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

// TopicResubscribeHandler is an optional interface of a TopicHandler: the
// way a broker whose PUB/SUB loses messages while a connection is down
// tells which topics may have lost some, so the handler resynchronises
// them at once instead of at its next periodic sync. The Hub implements it
// (Topics.ListenResubscribed). The contract, for broker and handler:
//
//   - A broker calls HandleTopicsResubscribed after it re-established a
//     PUB/SUB connection and the engine confirmed the SUBSCRIBE of its topics
//     again, once per re-established connection, with every topic that
//     connection carries and that is still subscribed (each once, in no
//     order; a fresh slice the handler may keep). A connection without
//     topics is not told; one that fails before its topics are
//     subscribed again is not told, the next one that succeeds is.
//   - Never for the first connect, nor for a topic's first SubscribeTopic:
//     only topics subscribed before the connection was lost are named.
//   - Messages published on those topics after the call began are
//     delivered (while the connection stays up), so a resync started from
//     the call misses nothing later. The call runs on the connection's
//     own goroutine, not the one delivering HandleTopic: messages of the
//     new connection may arrive before, during or after it.
//   - Not called once the broker's Close has begun (nor, from the Hub, once
//     Hub.Shutdown has begun).
//   - It must not block: no engine round trip, no waiting on a lock held
//     across one. It holds up the connection's health probe; hand the
//     work to a goroutine of the handler's own.
type TopicResubscribeHandler interface {
	HandleTopicsResubscribed(topics []string)
}

var (
	_ TopicHandler            = (*Hub)(nil)
	_ TopicResubscribeHandler = (*Hub)(nil)
)

// Topics is the engine's topic bus as the hub hands it out (Hub.Topics).
type Topics struct {
	h *Hub
	b TopicBroker
}

// topicFunc holds the functions set with Topics.Listen and
// Topics.ListenResubscribed (Hub.topicFn). A stored value is never
// modified: setting one function swaps in a copy.
type topicFunc struct {
	msg          func(topic string, data []byte)
	resubscribed func(topics []string)
}

// setTopicFunc swaps in a copy of the stored functions changed by set,
// unless set reports false (the function is already set).
func (h *Hub) setTopicFunc(set func(f *topicFunc) bool) bool {
	for {
		old := h.topicFn.Load()
		var next topicFunc
		if old != nil {
			next = *old
		}
		if !set(&next) {
			return false
		}
		if h.topicFn.CompareAndSwap(old, &next) {
			return true
		}
	}
}

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
	if f := h.topicFn.Load(); f != nil && f.msg != nil {
		f.msg(topic, data)
	}
}

// HandleTopicsResubscribed implements TopicResubscribeHandler: it hands
// the topics to the function set with Topics.ListenResubscribed (dropped
// when none, and once Shutdown has begun).
func (h *Hub) HandleTopicsResubscribed(topics []string) {
	if h.closing.Load() {
		return
	}
	if f := h.topicFn.Load(); f != nil && f.resubscribed != nil {
		f.resubscribed(topics)
	}
}

var (
	errListening             = errors.New("hub: topics: a handler is already listening")
	errListeningResubscribed = errors.New("hub: topics: a handler is already listening for resubscribes")
	errNilListener           = errors.New("hub: topics: nil listener")
)

// Listen sets the function receiving every subscribed topic's messages
// (see TopicHandler). One component listens per hub.
func (t *Topics) Listen(fn func(topic string, data []byte)) error {
	if fn == nil {
		return errNilListener
	}
	if !t.h.setTopicFunc(func(f *topicFunc) bool {
		if f.msg != nil {
			return false
		}
		f.msg = fn
		return true
	}) {
		return errListening
	}
	return nil
}

// ListenResubscribed sets the function told which subscribed topics may
// have lost messages because the engine replaced a PUB/SUB connection
// (the topics it carried, subscribed again): see TopicResubscribeHandler
// for when it is called, on which goroutine, and why it must not block.
// Set it before subscribing topics (a resubscribe before it is not told);
// one component listens per hub, independently of Listen.
func (t *Topics) ListenResubscribed(fn func(topics []string)) error {
	if fn == nil {
		return errNilListener
	}
	if !t.h.setTopicFunc(func(f *topicFunc) bool {
		if f.resubscribed != nil {
			return false
		}
		f.resubscribed = fn
		return true
	}) {
		return errListeningResubscribed
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
