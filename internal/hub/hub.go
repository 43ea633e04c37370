package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
)

const numShards = 64

// MaxFormats bounds the number of wire formats a Hub serves.
const MaxFormats = 4

// FormatID is the index RegisterFormat hands back for a wire format.
type FormatID uint8

// Encoder encodes pushes for one wire format. The returned bytes are one
// complete message (frame) of that format; the same slice is queued to
// every subscriber using the format, so subscribers must not modify it.
type Encoder interface {
	EncodePublication(channel string, pub *Publication) ([]byte, error)
	EncodeJoin(channel string, info *ClientInfo) ([]byte, error)
	EncodeLeave(channel string, info *ClientInfo) ([]byte, error)
	// EncodeMessage encodes data addressed to one connection (Deliver).
	EncodeMessage(data []byte) ([]byte, error)
}

// Subscriber receives pushes of the channels it subscribed to.
type Subscriber interface {
	// Format is the registered format that encodes pushes for it.
	Format() FormatID
	// Deliver queues an encoded push of channel. offset is the
	// publication's offset (0 for join/leave and channels without
	// history). Deliver is called with hub locks held: it must not block
	// and must not call back into the Hub synchronously.
	Deliver(channel string, offset uint64, frame []byte)
}

// UndeliverableSubscriber is a Subscriber that wants to know when a push of
// its channel could not be encoded in its format (binary data for a JSON
// client). Undeliverable is called like Deliver, with hub locks held.
// Subscribers without it miss the push.
type UndeliverableSubscriber interface {
	Undeliverable(channel string, offset uint64)
}

// Session is a connection the server API's user commands reach wherever
// it is connected: disconnect and refresh, selected by user and session
// (client) id. Every Client is one. A transport adapter whose connections
// are not hub clients (the game relay) registers them with AddSession, so
// they share the hub's one index of connections by user and by id. The
// hub compares sessions with ==: implement it on a pointer type.
type Session interface {
	// ID is unique among the connections of every node; UserID is ""
	// for an anonymous connection. Both stay fixed while registered.
	ID() string
	UserID() string
	// Disconnect closes the connection with d; a disconnect that does not
	// allow reconnecting (d.Reconnect() false) must not let the session
	// come back by resuming. It must not block and must not call back into
	// the Hub synchronously.
	Disconnect(d Disconnect)
	// Refresh updates the connection's expiry (unix seconds, 0 = never) and,
	// when info is not nil, its connection info; expired closes it at once
	// (DisconnectExpired). It must not block.
	Refresh(expireAt int64, expired bool, info []byte)
}

// Client is a connection of a registered wire format: a Session that also
// takes pushes and subscriptions made by the server API.
type Client interface {
	Session
	// Format is the registered format of the connection.
	Format() FormatID
	// Send queues a frame of the connection's format. The hub calls it
	// without its locks held; it must not block.
	Send(frame []byte) error
	// ServerSubscribe subscribes the connection to channel on the
	// server's behalf and tells the client.
	ServerSubscribe(ctx context.Context, channel string, opts ServerSubscribe) error
	// ServerUnsubscribe removes a subscription and tells the client.
	ServerUnsubscribe(ctx context.Context, channel string, code uint32, reason string)
}

// ServerSubscribe are options of a subscription made by the server API.
type ServerSubscribe struct {
	ChanInfo     []byte
	RecoverSince *StreamPosition
}

// Config configures a Hub. Zero values mean defaults.
type Config struct {
	Broker     Broker          // required
	Presence   PresenceManager // required
	Namespaces Namespaces
	// ConnectionLimit caps connections of this process; 0 = unlimited.
	ConnectionLimit int
	// UserConnectionLimit caps connections of one user; 0 = unlimited.
	UserConnectionLimit int
	// PositionCheckInterval is how often positioned subscribers are
	// compared with their channel's stream top (Centrifugo's
	// client.channel_position_check_delay); 0 = DefaultPositionCheckInterval,
	// negative = never (gaps in offsets are still detected).
	PositionCheckInterval time.Duration
	// PositionSettle is how long a subscriber may stay behind a stream top
	// it was shown before that counts as a loss (publications in flight);
	// 0 = DefaultPositionSettle.
	PositionSettle time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	Clock          clock.Clock // nil = the wall clock
	Cluster        ClusterConfig
}

type subEntry struct {
	sub       Subscriber
	format    FormatID
	joinLeave bool
}

type channelSubs struct {
	subs           []subEntry
	index          map[Subscriber]int
	formats        [MaxFormats]int
	joinLeaveCount int
	// epoch is the epoch of the last publication from the broker (nil
	// before the first); a change starts a position check.
	epoch atomic.Pointer[string]
}

type shard struct {
	mu       sync.RWMutex
	channels map[string]*channelSubs
}

// clientShard indexes connections (clients and other sessions) by id;
// userShard by user. The two arrays are separate and a goroutine never
// holds two of their locks at once.
type clientShard struct {
	mu      sync.RWMutex
	clients map[string]Session
}

type userShard struct {
	mu    sync.RWMutex
	users map[string]map[string]Session
}

// Hub is the realtime core. It is safe for concurrent use.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	seed     maphash.Seed
	shards   [numShards]shard
	cshards  [numShards]clientShard
	ushards  [numShards]userShard
	numConns atomic.Int64
	numSubs  atomic.Int64
	closing  atomic.Bool
	started  time.Time
	metrics  *hubMetrics
	clock    clock.Clock
	// formats[:numFormats] are registered; formatMu serialises RegisterFormat.
	formatMu   sync.Mutex
	formats    [MaxFormats]registeredFormat
	numFormats atomic.Int32
	// interest serialises the broker interest transitions of one channel
	// (interest.go), never of two.
	interest [numShards]interestShard
	// positions runs the stream position checks (position.go).
	positions positionChecker
	cluster   *cluster
	// numConns counts every indexed connection (clients and sessions);
	// numClients the Clients among them, for ConnectionLimit.
	numClients atomic.Int64
	// topicFn receives topic messages (topics.go).
	topicFn atomic.Pointer[topicFunc]
}

// New validates cfg and returns a Hub wired to its Broker.
func New(cfg Config) (*Hub, error) {
	if cfg.Broker == nil || cfg.Presence == nil {
		return nil, errors.New("hub: broker and presence manager are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Namespaces.Named == nil {
		cfg.Namespaces.Named = map[string]ChannelOptions{}
	}
	h := &Hub{cfg: cfg, log: cfg.Logger.With("component", "hub"), seed: maphash.MakeSeed(), clock: cfg.Clock, started: cfg.Clock.Now()}
	for i := range h.shards {
		h.shards[i].channels = map[string]*channelSubs{}
		h.interest[i].channels = map[string]*channelInterest{}
		h.cshards[i].clients = map[string]Session{}
		h.ushards[i].users = map[string]map[string]Session{}
	}
	m, err := newHubMetrics(cfg.Registerer, h)
	if err != nil {
		return nil, err
	}
	h.metrics = m
	if h.cluster, err = newCluster(h, cfg.Cluster); err != nil {
		return nil, err
	}
	h.startPositionChecks()
	if err := cfg.Broker.Run(h); err != nil {
		h.stopPositionChecks()
		return nil, fmt.Errorf("hub: run broker: %w", err)
	}
	if err := h.cluster.start(); err != nil {
		h.stopPositionChecks()
		return nil, err
	}
	return h, nil
}

func (h *Hub) shardIndex(key string) int {
	return int(maphash.String(h.seed, key) % numShards)
}

// ChannelOptions resolves channel to its namespace options.
func (h *Hub) ChannelOptions(channel string) (ChannelOptions, error) {
	return h.cfg.Namespaces.Resolve(channel)
}

type registeredFormat struct {
	name string
	enc  Encoder
}

// RegisterFormat adds a wire format and returns its id, which the
// format's subscribers and clients report. The adapter owning the format
// registers it once, before its connections subscribe; names are unique.
func (h *Hub) RegisterFormat(name string, enc Encoder) (FormatID, error) {
	if name == "" || enc == nil {
		return 0, errors.New("hub: a format needs a name and an encoder")
	}
	h.formatMu.Lock()
	defer h.formatMu.Unlock()
	n := int(h.numFormats.Load())
	for _, f := range h.formats[:n] {
		if f.name == name {
			return 0, fmt.Errorf("hub: format %q is already registered", name)
		}
	}
	if n == MaxFormats {
		return 0, fmt.Errorf("hub: format %q: at most %d formats", name, MaxFormats)
	}
	h.formats[n] = registeredFormat{name: name, enc: enc}
	h.numFormats.Store(int32(n + 1))
	return FormatID(n), nil
}

func (h *Hub) encoder(f FormatID) (Encoder, error) {
	if int32(f) >= h.numFormats.Load() {
		return nil, fmt.Errorf("hub: format %d is not registered", f)
	}
	return h.formats[f].enc, nil
}

// Clock returns the hub's clock, which adapters share for their timers.
func (h *Hub) Clock() clock.Clock { return h.clock }

// Now returns the hub's clock reading.
func (h *Hub) Now() time.Time { return h.clock.Now() }

// Closing reports whether Shutdown has begun.
func (h *Hub) Closing() bool { return h.closing.Load() }

// AddClient registers a connected client, enforcing connection limits
// (ErrLimitExceeded wrapped with the reason). Disconnect code for a limit
// is the caller's choice (DisconnectConnectionLimit).
func (h *Hub) AddClient(c Client) error {
	if h.closing.Load() {
		return ErrNotAvailable
	}
	// Reserve the slot first so concurrent connects cannot overshoot.
	if n := h.numClients.Add(1); h.cfg.ConnectionLimit > 0 && n > int64(h.cfg.ConnectionLimit) {
		h.numClients.Add(-1)
		return fmt.Errorf("%w: connection limit", ErrLimitExceeded)
	}
	if err := h.index(c, h.cfg.UserConnectionLimit); err != nil {
		h.numClients.Add(-1)
		return err
	}
	return nil
}

// RemoveClient forgets a client registered with AddClient (if it is the
// one registered under its id).
func (h *Hub) RemoveClient(c Client) {
	if h.unindex(c) {
		h.numClients.Add(-1)
	}
}

// AddSession registers a connection of another transport adapter, so
// that DisconnectUser and RefreshUser reach it on every node and Nodes
// and NumClients count it. The hub's connection limits are not applied
// (the adapter has its own). Shutdown disconnects it with
// DisconnectShutdown and waits for RemoveSession. While shutting down it
// returns ErrNotAvailable; an id already registered is a Conflict error.
func (h *Hub) AddSession(s Session) error {
	if h.closing.Load() {
		return ErrNotAvailable
	}
	return h.index(s, 0)
}

// RemoveSession forgets s if it is the session registered under its id
// (a stale value does not remove its successor).
func (h *Hub) RemoveSession(s Session) { h.unindex(s) }

// index adds s to the id and user indexes; userLimit > 0 caps the
// Clients of one named user.
func (h *Hub) index(s Session, userLimit int) error {
	id, user := s.ID(), s.UserID()
	cs := &h.cshards[h.shardIndex(id)]
	cs.mu.Lock()
	if _, dup := cs.clients[id]; dup {
		cs.mu.Unlock()
		return errs.New(errs.Conflict, "connection id "+id+" is already registered")
	}
	cs.clients[id] = s
	cs.mu.Unlock()

	us := &h.ushards[h.shardIndex(user)]
	us.mu.Lock()
	byUser := us.users[user]
	if userLimit > 0 && user != "" && countClients(byUser) >= userLimit {
		us.mu.Unlock()
		cs.mu.Lock()
		delete(cs.clients, id)
		cs.mu.Unlock()
		return fmt.Errorf("%w: user connection limit", ErrLimitExceeded)
	}
	if byUser == nil {
		byUser = map[string]Session{}
		us.users[user] = byUser
	}
	byUser[id] = s
	us.mu.Unlock()
	h.numConns.Add(1)
	// Shutdown may have taken its snapshot of connections after the
	// caller's check: don't stay registered behind its back.
	if h.closing.Load() {
		h.unindex(s)
		return ErrNotAvailable
	}
	return nil
}

func countClients(byUser map[string]Session) int {
	n := 0
	for _, s := range byUser {
		if _, ok := s.(Client); ok {
			n++
		}
	}
	return n
}

// unindex removes s from both indexes; it reports whether s was there.
func (h *Hub) unindex(s Session) bool {
	id, user := s.ID(), s.UserID()
	us := &h.ushards[h.shardIndex(user)]
	us.mu.Lock()
	removed := false
	if byUser := us.users[user]; byUser != nil {
		if byUser[id] == s {
			delete(byUser, id)
			removed = true
		}
		if len(byUser) == 0 {
			delete(us.users, user)
		}
	}
	us.mu.Unlock()
	if !removed {
		return false
	}
	cs := &h.cshards[h.shardIndex(id)]
	cs.mu.Lock()
	if cs.clients[id] == s {
		delete(cs.clients, id)
	}
	cs.mu.Unlock()
	h.numConns.Add(-1)
	return true
}

// Deliver sends data to one connection of this process, encoded as a
// message in the connection's format (ErrNoClient when clientID is not
// connected here). It does not block; the connection's queue limit applies.
func (h *Hub) Deliver(clientID string, data []byte) error {
	cs := &h.cshards[h.shardIndex(clientID)]
	cs.mu.RLock()
	c, _ := cs.clients[clientID].(Client)
	cs.mu.RUnlock()
	if c == nil {
		return ErrNoClient
	}
	enc, err := h.encoder(c.Format())
	if err != nil {
		return err
	}
	frame, err := enc.EncodeMessage(data)
	if err != nil {
		return fmt.Errorf("hub: encode message: %w", err)
	}
	if err := c.Send(frame); err != nil {
		return fmt.Errorf("hub: deliver to %s: %w", clientID, err)
	}
	h.metrics.deliveries.Inc()
	return nil
}

// UserSessions returns the connections of user, clients and other
// sessions; when id is not empty, only that connection (if it belongs to
// user).
func (h *Hub) UserSessions(user, id string) []Session {
	s := &h.ushards[h.shardIndex(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	byUser := s.users[user]
	if id != "" {
		if c, ok := byUser[id]; ok {
			return []Session{c}
		}
		return nil
	}
	out := make([]Session, 0, len(byUser))
	for _, c := range byUser {
		out = append(out, c)
	}
	return out
}

// UserClients is UserSessions without the sessions that are not Clients.
func (h *Hub) UserClients(user, clientID string) []Client {
	var out []Client
	for _, s := range h.UserSessions(user, clientID) {
		if c, ok := s.(Client); ok {
			out = append(out, c)
		}
	}
	return out
}

// NumClients returns the number of registered connections, clients and
// other sessions.
func (h *Hub) NumClients() int { return int(h.numConns.Load()) }

// NumUsers returns the number of distinct users connected.
func (h *Hub) NumUsers() int {
	n := 0
	for i := range h.ushards {
		s := &h.ushards[i]
		s.mu.RLock()
		n += len(s.users)
		s.mu.RUnlock()
	}
	return n
}

// NumSubscriptions returns the number of local subscriptions.
func (h *Hub) NumSubscriptions() int { return int(h.numSubs.Load()) }

// Channels returns local channels with their subscriber counts.
func (h *Hub) Channels() map[string]int {
	out := map[string]int{}
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for name, c := range s.channels {
			out[name] = len(c.subs)
		}
		s.mu.RUnlock()
	}
	return out
}

// NumChannels returns the number of channels with local subscribers.
func (h *Hub) NumChannels() int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		n += len(s.channels)
		s.mu.RUnlock()
	}
	return n
}

// Uptime is the time since New.
func (h *Hub) Uptime() time.Duration { return h.clock.Now().Sub(h.started) }

// AddSubscriber adds sub to channel's local subscribers. joinLeave asks
// for join/leave pushes. The first local subscriber of a channel declares
// interest to the broker. Adding a subscriber twice is ErrAlreadySubscribed.
func (h *Hub) AddSubscriber(channel string, sub Subscriber, joinLeave bool) error {
	return h.AddSubscriberContext(context.Background(), channel, sub, joinLeave)
}

// AddSubscriberContext is AddSubscriber within ctx's deadline: waiting
// for another subscriber's broker subscribe of the channel and the broker
// subscribe itself (with a ContextSubscriber broker) end with ctx, so a
// client command's deadline holds even when Redis is slow.
func (h *Hub) AddSubscriberContext(ctx context.Context, channel string, sub Subscriber, joinLeave bool) error {
	f := sub.Format()
	if _, err := h.encoder(f); err != nil {
		return err
	}
	idx := h.shardIndex(channel)
	unlock, err := h.lockInterest(ctx, idx, channel)
	if err != nil {
		return err
	}
	defer unlock()
	s := &h.shards[idx]
	s.mu.Lock()
	c := s.channels[channel]
	first := c == nil
	if first {
		c = &channelSubs{index: map[Subscriber]int{}}
		s.channels[channel] = c
	}
	if _, dup := c.index[sub]; dup {
		s.mu.Unlock()
		return ErrAlreadySubscribed
	}
	c.index[sub] = len(c.subs)
	c.subs = append(c.subs, subEntry{sub: sub, format: f, joinLeave: joinLeave})
	c.formats[f]++
	if joinLeave {
		c.joinLeaveCount++
	}
	s.mu.Unlock()
	h.numSubs.Add(1)
	if first {
		if err := h.brokerSubscribe(ctx, channel); err != nil {
			h.removeLocked(idx, channel, sub)
			return fmt.Errorf("hub: broker subscribe: %w", err)
		}
	}
	return nil
}

// RemoveSubscriber removes sub from channel; the last local subscriber
// withdraws interest from the broker. It reports whether sub was there.
func (h *Hub) RemoveSubscriber(channel string, sub Subscriber) bool {
	idx := h.shardIndex(channel)
	unlock, _ := h.lockInterest(context.Background(), idx, channel) // no deadline: never fails
	defer unlock()
	return h.removeLocked(idx, channel, sub)
}

// brokerSubscribe is the broker's Subscribe, within ctx when the broker
// can honour it.
func (h *Hub) brokerSubscribe(ctx context.Context, channel string) error {
	if cs, ok := h.cfg.Broker.(ContextSubscriber); ok {
		return cs.SubscribeContext(ctx, channel)
	}
	return h.cfg.Broker.Subscribe(channel)
}

func (h *Hub) removeLocked(idx int, channel string, sub Subscriber) bool {
	s := &h.shards[idx]
	s.mu.Lock()
	c := s.channels[channel]
	if c == nil {
		s.mu.Unlock()
		return false
	}
	i, ok := c.index[sub]
	if !ok {
		s.mu.Unlock()
		return false
	}
	e := c.subs[i]
	last := len(c.subs) - 1
	if i != last {
		c.subs[i] = c.subs[last]
		c.index[c.subs[i].sub] = i
	}
	c.subs[last] = subEntry{}
	c.subs = c.subs[:last]
	delete(c.index, sub)
	c.formats[e.format]--
	if e.joinLeave {
		c.joinLeaveCount--
	}
	empty := len(c.subs) == 0
	if empty {
		delete(s.channels, channel)
	}
	s.mu.Unlock()
	h.numSubs.Add(-1)
	if empty {
		if err := h.cfg.Broker.Unsubscribe(channel); err != nil {
			h.log.Error("broker unsubscribe failed", "channel", channel, "error", err)
		}
	}
	return true
}

// HandlePublication fans a publication out to local subscribers: it is
// encoded once per format in use and the same bytes go to every subscriber.
//
// A publication of another epoch than the channel's previous one (Redis
// lost the stream, without persistence or behind a proxy that kept the
// connection) starts a position check of the channel at once: its offsets
// do not continue the subscribers' positions, and the check ends those of
// the old epoch (2500/3010) instead of letting them take the new offsets
// as duplicates or a continuation until the next periodic check.
func (h *Hub) HandlePublication(channel string, pub *Publication, sp StreamPosition) {
	if h.fanout(channel, pub.Offset, false, func(c Encoder) ([]byte, error) { return c.EncodePublication(channel, pub) }, sp.Epoch) {
		h.schedulePositionCheck([]string{channel}, "epoch changed")
	}
	h.metrics.publications.Inc()
}

// HandleJoin delivers a join push to subscribers that asked for them.
func (h *Hub) HandleJoin(channel string, info *ClientInfo) {
	h.fanout(channel, 0, true, func(c Encoder) ([]byte, error) { return c.EncodeJoin(channel, info) }, "")
}

// HandleLeave delivers a leave push to subscribers that asked for them.
func (h *Hub) HandleLeave(channel string, info *ClientInfo) {
	h.fanout(channel, 0, true, func(c Encoder) ([]byte, error) { return c.EncodeLeave(channel, info) }, "")
}

// fanout delivers to channel's local subscribers; it reports whether
// epoch (when not "") differs from the previous publication's.
func (h *Hub) fanout(channel string, offset uint64, joinLeave bool, encode func(Encoder) ([]byte, error), epoch string) (epochChanged bool) {
	s := &h.shards[h.shardIndex(channel)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.channels[channel]
	if c == nil || (joinLeave && c.joinLeaveCount == 0) {
		return false
	}
	if epoch != "" {
		if prev := c.epoch.Load(); prev == nil || *prev != epoch {
			c.epoch.Store(&epoch)
			epochChanged = prev != nil
		}
	}
	var frames [MaxFormats][]byte
	var failed [MaxFormats]bool
	for f, n := range c.formats {
		if n == 0 {
			continue
		}
		b, err := encode(h.formats[f].enc)
		if err != nil {
			h.log.Warn("push cannot be encoded for a format in use", "channel", channel, "format", f, "error", err)
			failed[f] = true
			continue
		}
		frames[f] = b
	}
	delivered, undeliverable := 0, 0
	for i := range c.subs {
		e := &c.subs[i]
		if joinLeave && !e.joinLeave {
			continue
		}
		if fr := frames[e.format]; fr != nil {
			e.sub.Deliver(channel, offset, fr)
			delivered++
		} else if failed[e.format] {
			undeliverable++
			if u, ok := e.sub.(UndeliverableSubscriber); ok {
				u.Undeliverable(channel, offset)
			}
		}
	}
	h.metrics.deliveries.Add(float64(delivered))
	h.metrics.undeliverable.Add(float64(undeliverable))
	return epochChanged
}

// Publish publishes data into channel with the channel's history options.
// info, when not nil, names the publishing client.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte, info *ClientInfo, tags map[string]string) (StreamPosition, error) {
	opts, err := h.ChannelOptions(channel)
	if err != nil {
		return StreamPosition{}, err
	}
	return h.PublishWithOptions(ctx, channel, &Publication{Data: data, Info: info, Tags: tags}, opts, false)
}

// PublishWithOptions publishes pub with explicit channel options;
// skipHistory bypasses history even when the namespace keeps it.
func (h *Hub) PublishWithOptions(ctx context.Context, channel string, pub *Publication, opts ChannelOptions, skipHistory bool) (StreamPosition, error) {
	return h.PublishIdempotent(ctx, channel, pub, opts, skipHistory, "", 0)
}

// PublishIdempotent is PublishWithOptions with an idempotency key (see
// PublishOptions.IdempotencyKey); an empty key or zero resultTTL is a plain
// publish.
func (h *Hub) PublishIdempotent(ctx context.Context, channel string, pub *Publication, opts ChannelOptions, skipHistory bool, key string, resultTTL time.Duration) (StreamPosition, error) {
	po := PublishOptions{IdempotencyKey: key, IdempotentResultTTL: resultTTL}
	if opts.HistoryEnabled() && !skipHistory {
		po.HistorySize, po.HistoryTTL = opts.HistorySize, opts.HistoryTTL
	}
	start := time.Now()
	sp, err := h.cfg.Broker.Publish(ctx, channel, pub, po)
	h.metrics.observeBroker("publish", start, err)
	if err != nil {
		return StreamPosition{}, fmt.Errorf("hub: publish: %w", err)
	}
	return sp, nil
}

// PublishJoin announces info joining channel.
func (h *Hub) PublishJoin(ctx context.Context, channel string, info *ClientInfo) error {
	return h.cfg.Broker.PublishJoin(ctx, channel, info)
}

// PublishLeave announces info leaving channel.
func (h *Hub) PublishLeave(ctx context.Context, channel string, info *ClientInfo) error {
	return h.cfg.Broker.PublishLeave(ctx, channel, info)
}

// History reads channel history. It returns ErrNotAvailable when the
// channel's namespace keeps none.
func (h *Hub) History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error) {
	co, err := h.ChannelOptions(channel)
	if err != nil {
		return HistoryResult{}, err
	}
	if !co.HistoryEnabled() {
		return HistoryResult{}, ErrNotAvailable
	}
	start := time.Now()
	r, err := h.cfg.Broker.History(ctx, channel, opts)
	h.metrics.observeBroker("history", start, err)
	return r, err
}

// RemoveHistory drops channel's history.
func (h *Hub) RemoveHistory(ctx context.Context, channel string) error {
	if _, err := h.ChannelOptions(channel); err != nil {
		return err
	}
	return h.cfg.Broker.RemoveHistory(ctx, channel)
}

// AddPresence records info as present in channel.
func (h *Hub) AddPresence(ctx context.Context, channel string, info *ClientInfo) error {
	return h.cfg.Presence.AddPresence(ctx, channel, info.ClientID, info)
}

// ClaimPresence records info as present in channel when claim holds,
// atomically for every process on the engine (PresenceClaimer); it fails
// with ErrNotAvailable when the engine has no conditional presence.
func (h *Hub) ClaimPresence(ctx context.Context, channel string, info *ClientInfo, claim PresenceClaim) (ClaimResult, error) {
	pc, ok := h.cfg.Presence.(PresenceClaimer)
	if !ok {
		return ClaimResult{}, ErrNotAvailable.With("the engine has no conditional presence")
	}
	return pc.ClaimPresence(ctx, channel, info.ClientID, info, claim)
}

// CanClaimPresence reports whether the engine has conditional presence
// (a PresenceClaimer): without it, ClaimPresence always fails with
// ErrNotAvailable.
func (h *Hub) CanClaimPresence() bool {
	_, ok := h.cfg.Presence.(PresenceClaimer)
	return ok
}

// ReleasePresence lets go of a client's presence in channel without
// removing it when the engine is a PresenceReleaser (the entry expires
// unless another process writes it again); otherwise it removes it, as
// RemovePresence.
func (h *Hub) ReleasePresence(ctx context.Context, channel, clientID, userID string) error {
	if r, ok := h.cfg.Presence.(PresenceReleaser); ok {
		return r.ReleasePresence(ctx, channel, clientID)
	}
	return h.cfg.Presence.RemovePresence(ctx, channel, clientID, userID)
}

// RemovePresenceIf removes info.ClientID's presence in channel only while
// the entry still holds info (hub.PresenceConditionalRemover); it fails
// with ErrNotAvailable when the engine cannot.
func (h *Hub) RemovePresenceIf(ctx context.Context, channel string, info *ClientInfo) (bool, error) {
	r, ok := h.cfg.Presence.(PresenceConditionalRemover)
	if !ok {
		return false, ErrNotAvailable.With("the engine has no conditional presence removal")
	}
	return r.RemovePresenceIf(ctx, channel, info.ClientID, info)
}

// RemovePresence removes a client's presence from channel.
func (h *Hub) RemovePresence(ctx context.Context, channel, clientID, userID string) error {
	return h.cfg.Presence.RemovePresence(ctx, channel, clientID, userID)
}

// Presence lists the clients present in channel (ErrNotAvailable when the
// namespace has no presence).
func (h *Hub) Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error) {
	co, err := h.ChannelOptions(channel)
	if err != nil {
		return nil, err
	}
	if !co.Presence {
		return nil, ErrNotAvailable
	}
	return h.cfg.Presence.Presence(ctx, channel)
}

// PresenceStats counts the clients and users present in channel.
func (h *Hub) PresenceStats(ctx context.Context, channel string) (PresenceStats, error) {
	co, err := h.ChannelOptions(channel)
	if err != nil {
		return PresenceStats{}, err
	}
	if !co.Presence {
		return PresenceStats{}, ErrNotAvailable
	}
	return h.cfg.Presence.PresenceStats(ctx, channel)
}

// Shutdown stops accepting clients, tells the other nodes this one leaves,
// disconnects every client and session with DisconnectShutdown (clients
// reconnect elsewhere) and waits until all are gone, and commands received from
// other nodes have finished, or ctx ends. It is idempotent.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	h.stopPositionChecks()
	h.cluster.stop(ctx) // other nodes drop this one at once
	for i := range h.cshards {
		s := &h.cshards[i]
		s.mu.RLock()
		list := make([]Session, 0, len(s.clients))
		for _, c := range s.clients {
			list = append(list, c)
		}
		s.mu.RUnlock()
		for _, c := range list {
			c.Disconnect(DisconnectShutdown)
		}
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.numConns.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("hub: shutdown: %d clients still connected: %w", h.numConns.Load(), ctx.Err())
		case <-t.C:
		}
	}
	if err := h.cluster.wait(ctx); err != nil {
		return err
	}
	if c, ok := h.cfg.Broker.(Closer); ok {
		return c.Close(ctx)
	}
	return nil
}
