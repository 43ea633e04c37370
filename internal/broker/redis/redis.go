// Package redis is the hub.Broker and hub.PresenceManager that make N
// processes sharing one Redis behave as one server.
//
// History lives in Redis streams: one Lua script per publication assigns
// the offset (meta hash: epoch "e", top offset "s"), appends to the stream
// (MAXLEN history size, expiring history TTL after the last publication),
// and PUBLISHes the frame with offset and epoch, so PUB/SUB order equals
// offset order. Join and leave travel on the same PUB/SUB channel.
// PUB/SUB is at most once: a reconnecting shard loses what was published
// meanwhile; clients repair that with recovery.
//
// Keys (prefix p, channel ch; the hash tag keeps a channel's keys in one
// cluster slot): p.stream.{ch}, p.meta.{ch}, p.result.{ch}.KEY,
// p.presence.data.{ch}, p.presence.expire.{ch}, p.presence.keys.{ch} (claim
// keys, scripts.go); PUB/SUB channel p.client.ch,
// and p.topic.T for topic T (topic.go).
package redis

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Defaults for Config's zero values.
const (
	DefaultPrefix           = "switchboard"
	DefaultPresenceTTL      = 60 * time.Second
	DefaultMetaTTL          = 30 * 24 * time.Hour
	DefaultShards           = 4
	DefaultPingInterval     = 5 * time.Second
	DefaultPingTimeout      = 2 * time.Second
	DefaultSubscribeTimeout = 5 * time.Second
	DefaultResubscribeBatch = 512
	DefaultReconnectDelay   = 250 * time.Millisecond
	DefaultStartWait        = time.Second
	MaxReconnectDelay       = 5 * time.Second
)

var (
	_ hub.Broker                     = (*Broker)(nil)
	_ hub.PresenceManager            = (*Broker)(nil)
	_ hub.PresenceClaimer            = (*Broker)(nil)
	_ hub.PresenceConditionalRemover = (*Broker)(nil)
	_ hub.Closer                     = (*Broker)(nil)
)

// Config configures a Broker. Zero values take the defaults above.
type Config struct {
	// Client is a shared client owned by the caller (not closed by Close).
	// When nil, Address is dialled and the client is owned by the Broker.
	Client  rueidis.Client
	Address string
	// Prefix starts every key and PUB/SUB channel.
	Prefix string
	// PresenceTTL: a presence entry not refreshed (AddPresence) within it
	// disappears.
	PresenceTTL time.Duration
	// PresenceRefresh is how often the broker re-adds the presence entries
	// this process holds (default PresenceTTL/3; negative: never). Each
	// batch of a refresh is given PresenceRefresh, and 1 s at least.
	PresenceRefresh time.Duration
	// MetaTTL: how long a stream's epoch and offset outlive its last
	// publication when PublishOptions.MetaTTL is zero.
	MetaTTL time.Duration
	// Shards is the number of dedicated PUB/SUB connections; a channel
	// always uses the same one.
	Shards int
	// PingInterval and PingTimeout probe each PUB/SUB connection; a
	// connection that does not answer is replaced.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// SubscribeTimeout bounds one SUBSCRIBE or UNSUBSCRIBE round trip.
	SubscribeTimeout time.Duration
	// ResubscribeBatch is the number of channels per SUBSCRIBE after a
	// reconnect.
	ResubscribeBatch int
	// StartWait bounds how long Run waits for the first connect of the
	// PUB/SUB connections (default 1s); Run never fails because Redis is down.
	StartWait time.Duration
	// ReconnectDelay is the first pause before redialling a PUB/SUB
	// connection; it doubles up to MaxReconnectDelay.
	ReconnectDelay time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer // nil: no metrics registered
	Now            func() time.Time
}

// Broker is the Redis engine. Run must be called before Subscribe.
type Broker struct {
	cfg     Config
	client  rueidis.Client
	owned   bool
	log     *slog.Logger
	prefix  string
	pubsub  string // PUB/SUB channel prefix
	topics  string // PUB/SUB channel prefix of topics (topic.go)
	handler hub.BrokerEventHandler
	// topicHandler is handler when it takes topic messages; topicResub
	// when it also wants to know the topics a reconnect subscribed again.
	topicHandler hub.TopicHandler
	topicResub   hub.TopicResubscribeHandler
	shards       []*shard
	local        localPresence
	// pending counts shards not yet live once; ready closes at zero.
	pending atomic.Int32
	ready   chan struct{}
	metrics metrics

	stop        chan struct{}
	ctx         context.Context // cancelled by Close: ends the broker's own round trips
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	runOnce     sync.Once
	stopOnce    sync.Once
	closeClient sync.Once
	started     atomic.Bool
}

// New validates cfg and returns a Broker. With an Address it creates the
// client; an unreachable Redis is not an error here (operations fail until
// it answers).
func New(cfg Config) (*Broker, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redis broker: prefix %q must not contain { or }", cfg.Prefix)
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = DefaultPresenceTTL
	}
	if cfg.PresenceRefresh == 0 {
		cfg.PresenceRefresh = cfg.PresenceTTL / 3
	}
	if cfg.MetaTTL <= 0 {
		cfg.MetaTTL = DefaultMetaTTL
	}
	if cfg.Shards <= 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if cfg.ResubscribeBatch <= 0 {
		cfg.ResubscribeBatch = DefaultResubscribeBatch
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = DefaultStartWait
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = DefaultReconnectDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Broker{
		cfg: cfg, log: cfg.Logger.With("component", "redis_broker"),
		prefix: cfg.Prefix, pubsub: cfg.Prefix + ".client.", topics: cfg.Prefix + ".topic.", stop: make(chan struct{}),
	}
	if cfg.Client != nil {
		b.client = cfg.Client
	} else {
		if cfg.Address == "" {
			return nil, errors.New("redis broker: an address or a client is required")
		}
		c, err := NewClient(cfg.Address, b.log)
		if err != nil {
			return nil, fmt.Errorf("redis broker: %w", err)
		}
		b.client, b.owned = c, true
	}
	if err := b.initMetrics(cfg.Registerer); err != nil {
		if b.owned {
			b.client.Close()
		}
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.local.entries = map[presenceKey]localEntry{}
	b.local.tokPrefix = newTokenPrefix()
	b.ready = make(chan struct{})
	b.pending.Store(int32(cfg.Shards))
	b.shards = make([]*shard, cfg.Shards)
	for i := range b.shards {
		b.shards[i] = &shard{id: i, channels: map[string]struct{}{}}
	}
	return b, nil
}

// Client returns the broker's Redis client.
func (b *Broker) Client() rueidis.Client { return b.client }

// Run starts the PUB/SUB shards delivering to h and waits up to StartWait
// for them to connect. Close stops them.
func (b *Broker) Run(h hub.BrokerEventHandler) error {
	if h == nil {
		return errors.New("redis broker: nil handler")
	}
	err := errors.New("redis broker: Run called twice")
	b.runOnce.Do(func() {
		err = nil
		b.handler = h
		b.topicHandler, _ = h.(hub.TopicHandler)
		if b.topicHandler != nil {
			b.topicResub, _ = h.(hub.TopicResubscribeHandler)
		}
		b.started.Store(true)
		if b.cfg.PresenceRefresh > 0 {
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.refreshPresence()
			}()
		}
		for _, s := range b.shards {
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.runShard(s)
			}()
		}
		t := time.NewTimer(b.cfg.StartWait)
		defer t.Stop()
		select {
		case <-b.ready:
		case <-t.C:
			b.log.Warn("PUB/SUB not connected yet; subscriptions fail with 108 until it is", "connected", b.shardsUp(), "shards", len(b.shards))
		}
	})
	return err
}

// Close stops every goroutine and, when the broker created it, closes the
// client. It waits for the goroutines until ctx ends; it is idempotent.
func (b *Broker) Close(ctx context.Context) error {
	b.stopOnce.Do(func() {
		close(b.stop)
		b.cancel()
	})
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("redis broker: close: %w", ctx.Err())
	}
	if b.owned {
		b.closeClient.Do(b.client.Close)
	}
	return nil
}

func (b *Broker) key(kind, channel string) string {
	return b.prefix + "." + kind + ".{" + channel + "}"
}

func newEpoch() string {
	var buf [5]byte
	_, _ = rand.Read(buf[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(buf[:])
}

func ms(d time.Duration) string {
	v := d.Milliseconds()
	if v <= 0 && d > 0 {
		v = 1
	}
	return strconv.FormatInt(v, 10)
}

func opErr(op, channel string, err error) error {
	return fmt.Errorf("redis broker: %s %q: %w", op, channel, err)
}

// Publish stores pub in the channel's stream when opts enable history and
// delivers it to every subscribed process; opts.IdempotencyKey makes it
// PublishIdempotent.
func (b *Broker) Publish(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	return b.PublishIdempotent(ctx, channel, pub, opts, opts.IdempotencyKey, opts.IdempotentResultTTL)
}

// PublishIdempotent is Publish with an idempotency key: while the result
// of a publication with the same key and channel is cached (resultTTL), a
// repeated call returns its position without publishing again. An empty
// key or zero resultTTL is a plain Publish.
func (b *Broker) PublishIdempotent(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions, key string, resultTTL time.Duration) (hub.StreamPosition, error) {
	payload := appendPublication(nil, pub)
	history := opts.HistorySize > 0 && opts.HistoryTTL > 0
	if !history && (key == "" || resultTTL <= 0) {
		err := b.client.Do(ctx, b.client.B().Publish().Channel(b.pubsub+channel).Message(rueidis.BinaryString(pubFrame(payload))).Build()).Error()
		if err != nil {
			return hub.StreamPosition{}, opErr("publish", channel, err)
		}
		return hub.StreamPosition{}, nil
	}
	metaTTL := opts.MetaTTL
	if metaTTL <= 0 {
		metaTTL = b.cfg.MetaTTL
	}
	size, resTTL := "0", "0"
	if history {
		size = strconv.Itoa(opts.HistorySize)
	}
	if key != "" && resultTTL > 0 {
		resTTL = ms(resultTTL)
	}
	resultKey := b.key("result", channel) + "." + key
	vals, err := publishScript.Exec(ctx, b.client,
		[]string{b.key("stream", channel), b.key("meta", channel), resultKey},
		[]string{rueidis.BinaryString(payload), size, ms(opts.HistoryTTL), ms(metaTTL), newEpoch(), b.pubsub + channel, resTTL},
	).ToArray()
	if err != nil {
		return hub.StreamPosition{}, opErr("publish", channel, err)
	}
	sp, err := parsePosition(vals)
	if err != nil {
		return hub.StreamPosition{}, opErr("publish", channel, err)
	}
	pub.Offset = sp.Offset
	return sp, nil
}

func parsePosition(vals []rueidis.RedisMessage) (hub.StreamPosition, error) {
	if len(vals) < 2 {
		return hub.StreamPosition{}, fmt.Errorf("unexpected script reply of %d values", len(vals))
	}
	offs, err := vals[0].ToString()
	if err != nil {
		return hub.StreamPosition{}, err
	}
	off, err := strconv.ParseUint(offs, 10, 64)
	if err != nil {
		return hub.StreamPosition{}, fmt.Errorf("offset %q: %w", offs, err)
	}
	epoch, err := vals[1].ToString()
	if err != nil {
		return hub.StreamPosition{}, err
	}
	return hub.StreamPosition{Offset: off, Epoch: epoch}, nil
}

// PublishJoin delivers a join event on the channel's PUB/SUB channel.
func (b *Broker) PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishInfo(ctx, "publish join", channel, kindJoin, info)
}

// PublishLeave delivers a leave event on the channel's PUB/SUB channel.
func (b *Broker) PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishInfo(ctx, "publish leave", channel, kindLeave, info)
}

func (b *Broker) publishInfo(ctx context.Context, op, channel string, kind byte, info *hub.ClientInfo) error {
	msg := rueidis.BinaryString(infoFrame(kind, info))
	if err := b.client.Do(ctx, b.client.B().Publish().Channel(b.pubsub+channel).Message(msg).Build()).Error(); err != nil {
		return opErr(op, channel, err)
	}
	return nil
}

// History returns publications after opts.Since (from the start when nil),
// at most opts.Limit (0 = none, negative = all), newest first when
// opts.Reverse (then: before opts.Since). The channel's epoch is created
// when absent, so it is stable from the first read.
func (b *Broker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	metaTTL := opts.MetaTTL
	if metaTTL <= 0 {
		metaTTL = b.cfg.MetaTTL
	}
	with, since, reverse, limit := "1", "", "0", "-1"
	if opts.Limit == 0 {
		with = "0"
	}
	if opts.Limit > 0 {
		limit = strconv.Itoa(opts.Limit)
	}
	if opts.Since != nil {
		since = strconv.FormatUint(opts.Since.Offset, 10)
	}
	if opts.Reverse {
		reverse = "1"
	}
	vals, err := historyScript.Exec(ctx, b.client,
		[]string{b.key("stream", channel), b.key("meta", channel)},
		[]string{newEpoch(), ms(metaTTL), with, since, reverse, limit},
	).ToArray()
	if err != nil {
		return hub.HistoryResult{}, opErr("history", channel, err)
	}
	sp, err := parsePosition(vals)
	if err != nil || len(vals) != 3 {
		return hub.HistoryResult{}, opErr("history", channel, fmt.Errorf("bad reply: %v", err))
	}
	entries, err := vals[2].ToArray()
	if err != nil {
		return hub.HistoryResult{}, opErr("history", channel, err)
	}
	res := hub.HistoryResult{Position: sp}
	if len(entries) > 0 {
		res.Publications = make([]*hub.Publication, 0, len(entries))
	}
	for _, e := range entries {
		pub, err := decodeEntry(e)
		if err != nil {
			return hub.HistoryResult{}, opErr("history", channel, err)
		}
		res.Publications = append(res.Publications, pub)
	}
	return res, nil
}

// decodeEntry parses one stream entry: [ID, [field, value, …]].
func decodeEntry(e rueidis.RedisMessage) (*hub.Publication, error) {
	parts, err := e.ToArray()
	if err != nil || len(parts) != 2 {
		return nil, fmt.Errorf("bad stream entry: %v", err)
	}
	id, err := parts[0].ToString()
	if err != nil {
		return nil, err
	}
	offs, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(offs, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("stream entry ID %q: %w", id, err)
	}
	fields, err := parts[1].AsStrSlice()
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "d" {
			pub, err := decodePublication([]byte(fields[i+1]))
			if err != nil {
				return nil, fmt.Errorf("stream entry %s: %w", id, err)
			}
			pub.Offset = off
			return pub, nil
		}
	}
	return nil, fmt.Errorf("stream entry %s has no data", id)
}

// RemoveHistory deletes the channel's stream. Its epoch and top offset
// stay, so offsets continue and positions remain comparable.
func (b *Broker) RemoveHistory(ctx context.Context, channel string) error {
	if err := b.client.Do(ctx, b.client.B().Del().Key(b.key("stream", channel)).Build()).Error(); err != nil {
		return opErr("remove history", channel, err)
	}
	return nil
}
