package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// shard is one dedicated PUB/SUB connection and the channels it carries.
// mu guards channels and conn; no Redis round trip runs under it.
type shard struct {
	id       int
	wasLive  bool // only runShard's goroutine touches it
	mu       sync.Mutex
	channels map[string]struct{} // the Redis channels wanted: hub channels and topics
	conn     rueidis.DedicatedClient
}

func (b *Broker) shardFor(channel string) *shard {
	h := fnv.New32a()
	_, _ = h.Write([]byte(channel))
	return b.shards[h.Sum32()%uint32(len(b.shards))]
}

// errReconnecting is 108, temporary, so the official clients retry the
// subscription.
var errReconnecting = hub.ErrRetryLater

var _ hub.ContextSubscriber = (*Broker)(nil)

// Subscribe declares interest in channel. While the channel's shard is
// reconnecting it fails with a temporary 108 (hub.ErrRetryLater).
func (b *Broker) Subscribe(channel string) error {
	return b.SubscribeContext(context.Background(), channel)
}

// SubscribeContext is Subscribe ending with ctx too: a SUBSCRIBE that Redis
// does not confirm within ctx (or SubscribeTimeout) fails with a temporary
// 108 wrapping the context's error. Redis may still carry it out; frames
// of a channel the hub no longer has subscribers for are ignored.
func (b *Broker) SubscribeContext(ctx context.Context, channel string) error {
	return b.subscribe(ctx, "subscribe", channel, b.pubsub+channel)
}

// subscribe adds the Redis channel raw (hub channel or topic name) to
// its shard's interest and subscribes it.
func (b *Broker) subscribe(ctx context.Context, op, name, raw string) error {
	if !b.started.Load() {
		return fmt.Errorf("redis broker: %s %q: broker not running", op, name)
	}
	s := b.shardFor(raw)
	s.mu.Lock()
	conn := s.conn
	if conn == nil {
		s.mu.Unlock()
		return fmt.Errorf("redis broker: %s %q: PUB/SUB connection %d is reconnecting: %w", op, name, s.id, errReconnecting)
	}
	s.channels[raw] = struct{}{}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SubscribeTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel) // Close ends it too
	defer stop()
	if err := conn.Do(ctx, conn.B().Subscribe().Channel(raw).Build()).Error(); err != nil {
		s.mu.Lock()
		delete(s.channels, raw)
		s.mu.Unlock()
		return fmt.Errorf("redis broker: %s %q: %w: %w", op, name, errReconnecting, err)
	}
	return nil
}

// unsubscribeWait bounds how long Unsubscribe waits for Redis to confirm.
// The UNSUBSCRIBE is queued on the connection before the wait, so a later
// SUBSCRIBE of the channel follows it; one that never lands leaves frames
// the hub ignores (no local subscribers) until the connection is replaced.
const unsubscribeWait = 250 * time.Millisecond

// Unsubscribe withdraws interest in channel. It waits at most
// unsubscribeWait for Redis (the hub calls it from client commands, which
// a slow Redis must not hold up); a confirmation still pending then is not
// an error.
func (b *Broker) Unsubscribe(channel string) error {
	return b.unsubscribe("unsubscribe", channel, b.pubsub+channel)
}

func (b *Broker) unsubscribe(op, name, raw string) error {
	s := b.shardFor(raw)
	s.mu.Lock()
	delete(s.channels, raw)
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return nil // the reconnect will not subscribe it
	}
	ctx, cancel := context.WithTimeout(b.ctx, min(b.cfg.SubscribeTimeout, unsubscribeWait))
	defer cancel()
	err := conn.Do(ctx, conn.B().Unsubscribe().Channel(raw).Build()).Error()
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && b.ctx.Err() == nil) {
		return fmt.Errorf("redis broker: %s %q: %w", op, name, err)
	}
	return nil
}

// onMessage runs on the shard connection's reader goroutine, so frames of
// one channel reach the handler in Redis order.
func (b *Broker) onMessage(m rueidis.PubSubMessage) {
	channel, ok := strings.CutPrefix(m.Channel, b.pubsub)
	if !ok {
		if topic, ok := strings.CutPrefix(m.Channel, b.topics); ok && b.topicHandler != nil {
			b.topicHandler.HandleTopic(topic, []byte(m.Message))
		}
		return
	}
	f, err := decodeFrame(m.Message)
	if err != nil {
		b.metrics.dropped.Inc()
		b.log.Error("dropping undecodable PUB/SUB frame", "channel", channel, "error", err)
		return
	}
	switch f.kind {
	case kindPub:
		b.handler.HandlePublication(channel, f.pub, f.sp)
	case kindJoin:
		b.handler.HandleJoin(channel, f.info)
	case kindLeave:
		b.handler.HandleLeave(channel, f.info)
	}
}

// runShard keeps s connected until Close: dial, resubscribe every channel
// in batches, then probe with PING; any failure drops the connection and
// starts over after a growing pause.
func (b *Broker) runShard(s *shard) {
	delay := b.cfg.ReconnectDelay
	for {
		select {
		case <-b.stop:
			return
		default:
		}
		live, err := b.serveShard(s)
		if live {
			delay = b.cfg.ReconnectDelay
		}
		select {
		case <-b.stop:
			return
		default:
		}
		b.log.Warn("PUB/SUB connection lost", "shard", s.id, "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if delay *= 2; delay > MaxReconnectDelay {
			delay = MaxReconnectDelay
		}
	}
}

// serveShard runs one connection of s until it fails or Close.
func (b *Broker) serveShard(s *shard) (live bool, err error) {
	conn, _ := b.client.Dedicate()
	// Closed, never returned to the pool: a probe may have timed out on it.
	defer conn.Close()
	lost := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	// Snapshot the interest, subscribe it, then go live; channels dropped
	// meanwhile are unsubscribed again.
	s.mu.Lock()
	want := make([]string, 0, len(s.channels))
	for ch := range s.channels {
		want = append(want, ch)
	}
	s.mu.Unlock()
	for i := 0; i < len(want); i += b.cfg.ResubscribeBatch {
		batch := want[i:min(i+b.cfg.ResubscribeBatch, len(want))]
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.SubscribeTimeout)
		err := conn.Do(ctx, conn.B().Subscribe().Channel(batch...).Build()).Error()
		cancel()
		if err != nil {
			return false, fmt.Errorf("resubscribe: %w", err)
		}
	}
	s.mu.Lock()
	var stale []string
	kept := make([]string, 0, len(want))
	for _, ch := range want {
		if _, ok := s.channels[ch]; ok {
			kept = append(kept, ch)
		} else {
			stale = append(stale, ch)
		}
	}
	s.conn = conn
	s.mu.Unlock()
	b.metrics.reconnects.Inc()
	again := s.wasLive
	if !s.wasLive {
		s.wasLive = true
		if b.pending.Add(-1) == 0 {
			close(b.ready)
		}
	}
	if again && b.ctx.Err() == nil {
		b.reportResubscribed(s, kept)
	}
	if len(stale) > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.SubscribeTimeout)
		err := conn.Do(ctx, conn.B().Unsubscribe().Channel(stale...).Build()).Error()
		cancel()
		if err != nil {
			return true, fmt.Errorf("unsubscribe: %w", err)
		}
	}
	return true, watch(b.ctx, conn, lost, b.stop, b.cfg.PingInterval, b.cfg.PingTimeout)
}

// reportResubscribed tells the handler what a replaced connection of s
// subscribed again, still wanted: the hub channels (ResubscribeHandler:
// the hub checks its subscribers' positions) and the topics
// (TopicResubscribeHandler: their owner resyncs), as publications sent
// while the connection was down are lost. It runs on s's goroutine
// (runShard) right after the connection went live.
func (b *Broker) reportResubscribed(s *shard, kept []string) {
	if len(kept) == 0 {
		return
	}
	var chs, topics []string
	for _, raw := range kept {
		if name, ok := strings.CutPrefix(raw, b.pubsub); ok {
			chs = append(chs, name)
		} else if name, ok := strings.CutPrefix(raw, b.topics); ok {
			topics = append(topics, name)
		}
	}
	b.log.Info("PUB/SUB resubscribed", "shard", s.id, "channels", len(chs), "topics", len(topics))
	if rh, ok := b.handler.(hub.ResubscribeHandler); ok && len(chs) > 0 {
		rh.HandleResubscribed(chs)
	}
	if b.topicResub != nil && len(topics) > 0 {
		b.topicResub.HandleTopicsResubscribed(topics)
	}
}

// watch keeps a live dedicated PUB/SUB connection until stop is closed
// (nil) or the connection is lost or stops answering PING within
// pingTimeout (the error), so a wedged connection is replaced.
func watch(ctx context.Context, conn rueidis.DedicatedClient, lost <-chan error, stop <-chan struct{}, pingEvery, pingTimeout time.Duration) error {
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case <-stop:
			return nil
		case err := <-lost:
			if err == nil {
				err = rueidis.ErrClosing
			}
			return err
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Do(pctx, conn.B().Ping().Build()).Error()
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}
