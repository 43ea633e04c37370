// Package memory is the embedded, single-process hub.Broker and
// hub.PresenceManager: history lives in process memory, publications are
// delivered synchronously to the hub.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// DefaultMetaTTL is how long a history stream's epoch and offset outlive
// its last publication when the caller sets no MetaTTL.
const DefaultMetaTTL = 30 * 24 * time.Hour

const numShards = 64

// SweepInterval is how often expired streams are removed.
const SweepInterval = time.Minute

var (
	_ hub.Broker                     = (*Broker)(nil)
	_ hub.PresenceManager            = (*Presence)(nil)
	_ hub.PresenceClaimer            = (*Presence)(nil)
	_ hub.PresenceConditionalRemover = (*Presence)(nil)
	_ hub.Closer                     = (*Broker)(nil)
)

type stream struct {
	mu      sync.Mutex
	epoch   string
	top     uint64
	entries []*hub.Publication // oldest first
	// The entries expire together, history TTL after the last publication
	// (as Centrifugo's Redis streams); epoch and top stay until metaExpire.
	historyExpire time.Time
	metaExpire    time.Time
	// results of idempotent publishes by key, kept until their expiry.
	results map[string]idemResult
}

type idemResult struct {
	sp     hub.StreamPosition
	expire time.Time
}

type streamShard struct {
	mu      sync.Mutex
	streams map[string]*stream
}

// Broker keeps history in memory and delivers publications to the
// handler given to Run. Publications of one channel with history are
// delivered in offset order.
type Broker struct {
	// MetaTTL replaces DefaultMetaTTL for calls that set none; set it
	// before Run.
	MetaTTL time.Duration

	now     func() time.Time
	seed    maphash.Seed
	shards  [numShards]streamShard
	handler hub.BrokerEventHandler
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// New returns a memory broker. now may be nil (time.Now).
func New(now func() time.Time) *Broker {
	if now == nil {
		now = time.Now
	}
	b := &Broker{now: now, seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range b.shards {
		b.shards[i].streams = map[string]*stream{}
	}
	return b
}

// Run starts delivery to h and the expiry sweeper (stopped by Close).
func (b *Broker) Run(h hub.BrokerEventHandler) error {
	if h == nil {
		return errors.New("memory broker: nil handler")
	}
	b.handler = h
	go b.sweep()
	return nil
}

// Close stops the sweeper. It is idempotent.
func (b *Broker) Close(ctx context.Context) error {
	b.once.Do(func() { close(b.stop) })
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) sweep() {
	defer close(b.done)
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.removeExpired()
		}
	}
}

func (b *Broker) removeExpired() {
	now := b.now()
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for name, st := range s.streams {
			st.mu.Lock()
			st.trim(now)
			st.trimResults(now)
			if now.After(st.metaExpire) {
				delete(s.streams, name)
			}
			st.mu.Unlock()
		}
		s.mu.Unlock()
	}
}

// Subscribe is a no-op: one process has no remote interest to declare.
func (b *Broker) Subscribe(string) error { return nil }

// Unsubscribe is a no-op.
func (b *Broker) Unsubscribe(string) error { return nil }

func newEpoch() string {
	var buf [5]byte
	_, _ = rand.Read(buf[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(buf[:])
}

// getStream returns channel's stream, creating it when create is true.
func (b *Broker) getStream(channel string, create bool, metaTTL time.Duration) *stream {
	s := &b.shards[maphash.String(b.seed, channel)%numShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[channel]
	if st == nil && create {
		st = &stream{epoch: newEpoch(), metaExpire: b.now().Add(metaTTL)}
		s.streams[channel] = st
	}
	return st
}

func (st *stream) trim(now time.Time) {
	if len(st.entries) > 0 && !now.Before(st.historyExpire) {
		st.entries = nil
	}
}

func (st *stream) trimResults(now time.Time) {
	for k, r := range st.results {
		if !now.Before(r.expire) {
			delete(st.results, k)
		}
	}
}

func (b *Broker) metaTTL(d time.Duration) time.Duration {
	switch {
	case d > 0:
		return d
	case b.MetaTTL > 0:
		return b.MetaTTL
	}
	return DefaultMetaTTL
}

// Publish stores pub when opts enable history and delivers it. An
// idempotent publish (opts.IdempotencyKey) keeps its result in the
// channel's stream, which lives at least as long.
func (b *Broker) Publish(_ context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	history := opts.HistorySize > 0 && opts.HistoryTTL > 0
	idem := opts.IdempotencyKey != "" && opts.IdempotentResultTTL > 0
	if !history && !idem {
		b.handler.HandlePublication(channel, pub, hub.StreamPosition{})
		return hub.StreamPosition{}, nil
	}
	metaTTL := b.metaTTL(opts.MetaTTL)
	st := b.getStream(channel, true, metaTTL)
	st.mu.Lock()
	defer st.mu.Unlock()
	now := b.now()
	if idem {
		if r, ok := st.results[opts.IdempotencyKey]; ok && now.Before(r.expire) {
			return r.sp, nil
		}
	}
	var sp hub.StreamPosition
	if history {
		st.top++
		pub.Offset = st.top
		st.trim(now)
		st.entries = append(st.entries, pub)
		st.historyExpire = now.Add(opts.HistoryTTL)
		if over := len(st.entries) - opts.HistorySize; over > 0 {
			clear(st.entries[:over])
			st.entries = st.entries[over:]
		}
		st.extendMeta(now.Add(metaTTL))
		sp = hub.StreamPosition{Offset: st.top, Epoch: st.epoch}
	}
	if idem {
		if st.results == nil {
			st.results = map[string]idemResult{}
		}
		exp := now.Add(opts.IdempotentResultTTL)
		st.results[opts.IdempotencyKey] = idemResult{sp: sp, expire: exp}
		st.extendMeta(exp)
	}
	// Delivered under the stream lock so offsets reach subscribers in order.
	b.handler.HandlePublication(channel, pub, sp)
	return sp, nil
}

func (st *stream) extendMeta(exp time.Time) {
	if exp.After(st.metaExpire) {
		st.metaExpire = exp
	}
}

// PublishJoin delivers a join event.
func (b *Broker) PublishJoin(_ context.Context, channel string, info *hub.ClientInfo) error {
	b.handler.HandleJoin(channel, info)
	return nil
}

// PublishLeave delivers a leave event.
func (b *Broker) PublishLeave(_ context.Context, channel string, info *hub.ClientInfo) error {
	b.handler.HandleLeave(channel, info)
	return nil
}

// History returns publications after opts.Since (or from the start), at
// most opts.Limit of them (0 = none, negative = all), newest first when
// opts.Reverse. A channel without a stream gets one, so its epoch is stable
// from the first read.
func (b *Broker) History(_ context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	st := b.getStream(channel, true, b.metaTTL(opts.MetaTTL))
	st.mu.Lock()
	defer st.mu.Unlock()
	st.trim(b.now())
	res := hub.HistoryResult{Position: hub.StreamPosition{Offset: st.top, Epoch: st.epoch}}
	if opts.Limit == 0 {
		return res, nil
	}
	list := st.entries
	if opts.Since != nil {
		from := len(list)
		for i, e := range list {
			if e.Offset > opts.Since.Offset {
				from = i
				break
			}
		}
		if opts.Reverse {
			// Reverse with since: publications before the position, newest first.
			to := 0
			for i, e := range list {
				if e.Offset < opts.Since.Offset {
					to = i + 1
				}
			}
			list = list[:to]
		} else {
			list = list[from:]
		}
	}
	n := len(list)
	if opts.Limit > 0 && opts.Limit < n {
		n = opts.Limit
	}
	out := make([]*hub.Publication, 0, n)
	if opts.Reverse {
		for i := len(list) - 1; i >= 0 && len(out) < n; i-- {
			out = append(out, list[i])
		}
	} else {
		for i := 0; i < n; i++ {
			out = append(out, list[i])
		}
	}
	res.Publications = out
	return res, nil
}

// RemoveHistory drops channel's publications; epoch and top offset stay,
// so offsets continue.
func (b *Broker) RemoveHistory(_ context.Context, channel string) error {
	if st := b.getStream(channel, false, 0); st != nil {
		st.mu.Lock()
		clear(st.entries)
		st.entries = nil
		st.mu.Unlock()
	}
	return nil
}
