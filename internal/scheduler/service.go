package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Defaults of Config (the scheduler.* config keys).
const (
	DefaultLease          = 30 * time.Second
	DefaultMaxAttempts    = 5
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultChunkSize      = 1000
	DefaultMaxConfigBytes = 64 << 10
	DefaultMaxIterations  = 100_000_000
	DefaultAssignBatch    = 500
	DefaultSweepInterval  = 15 * time.Second
	DefaultListLimit      = 100
	MaxListLimit          = 1000
	// MaxNameLength bounds node names, hostnames, platforms and versions.
	MaxNameLength = 200
)

// Config configures a Service. Zero values mean the defaults above.
type Config struct {
	Store     Store          // required
	Publisher Publisher      // required (the hub)
	Presence  PresenceSource // required (the hub)
	Clock     clock.Clock    // nil = wall clock
	Logger    *slog.Logger   // nil = discard
	// Registerer receives the switchboard_scheduler_* metrics; nil = none.
	Registerer prometheus.Registerer

	// Lease is how long a node holds a chunk without completing it,
	// reporting progress or heartbeating.
	Lease time.Duration
	// MaxAttempts is how many leases a chunk gets before it fails.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the delay before an expired or
	// failed chunk is assigned again: base * 2^(attempt-1), capped at max,
	// with equal jitter (half fixed, half random).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// ChunkSize is the iterations per chunk (the last takes the rest).
	ChunkSize int
	// MaxConfigBytes bounds a job's config JSON.
	MaxConfigBytes int
	// MaxIterations bounds a job's iterations.
	MaxIterations int64
	// AssignBatch bounds the chunks one assignment pass leases.
	AssignBatch int
	// ProgressInterval is how often coalesced progress events and node
	// feed updates are published (coalesce.go); negative = each at once.
	ProgressInterval time.Duration
	// SweepInterval is the period of the safety sweep (expired leases,
	// missed wake-ups, presence reconciliation); negative = none.
	SweepInterval time.Duration
}

// Service states.
const (
	stateNew = iota
	stateRunning
	stateStopped
)

// Service is the scheduler. Create it with New, start it with Run, stop it
// with Shutdown. The node and user API methods are safe for concurrent
// use; they fail with ErrStopped before Run and after Shutdown.
type Service struct {
	cfg     Config
	clock   clock.Clock
	log     *slog.Logger
	store   Store
	pub     Publisher
	pres    PresenceSource
	metrics *metrics

	state atomic.Int32
	// feed orders the feeds: a row read by one path and published after
	// a newer read of it (another path) is dropped, so a feed's
	// rowVersions never go down. Rows of finished jobs are forgotten.
	feed feedOrder
	// ctx is cancelled by Shutdown; the loop's store calls use it.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop returned

	wakeAssign chan struct{} // buffered 1: run an assignment pass
	wakeExpire chan struct{} // buffered 1: run an expiry pass
	wakeFlush  chan struct{} // buffered 1: publish coalesced events

	evMu       sync.Mutex // orders job events (coalesce.go)
	dirtyMu    sync.Mutex
	dirtyJobs  map[string]struct{}
	dirtyNodes map[string]struct{}
	flushArmed bool
	flushT     clock.Timer
	presence   *presenceSub
	serialized bool // the Store runs one transaction at a time
	// groupCommit: completions go through the committer (serialized
	// stores, or a Store whose GroupCommit() says so).
	groupCommit bool
	completeQ   chan *completeReq
	wg          sync.WaitGroup // the committer
	nodeIDs     sync.Map       // string(public key) → node id

	mu      sync.Mutex
	online  map[string]map[string]struct{} // node id → client ids in nodes:online
	leaseAt time.Time                      // when the lease timer fires (zero = not armed)
	availAt time.Time                      // when the backoff timer fires
	leaseT  clock.Timer
	availT  clock.Timer
	sweepT  clock.Timer
}

// New validates cfg, fills in defaults and returns a Service (not
// running).
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Publisher == nil || cfg.Presence == nil {
		return nil, errors.New("scheduler: Store, Publisher and Presence are required")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, clock: clock.OrReal(cfg.Clock), log: cfg.Logger.With("component", "scheduler"),
		store: cfg.Store, pub: cfg.Publisher, pres: cfg.Presence,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		wakeAssign: make(chan struct{}, 1), wakeExpire: make(chan struct{}, 1), wakeFlush: make(chan struct{}, 1),
		dirtyJobs: map[string]struct{}{}, dirtyNodes: map[string]struct{}{},
		completeQ: make(chan *completeReq, maxCompleteBatch),
		online:    map[string]map[string]struct{}{},
	}
	if sz, ok := cfg.Store.(interface{ Serialized() bool }); ok {
		s.serialized = sz.Serialized()
	}
	s.groupCommit = s.serialized
	if gc, ok := cfg.Store.(interface{ GroupCommit() bool }); ok {
		s.groupCommit = s.groupCommit || gc.GroupCommit()
	}
	m, err := newMetrics(cfg.Registerer, s)
	if err != nil {
		cancel()
		return nil, err
	}
	s.metrics = m
	return s, nil
}

func (c *Config) fill() error {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Lease, DefaultLease)
	set(&c.BackoffBase, DefaultBackoffBase)
	set(&c.BackoffMax, DefaultBackoffMax)
	set(&c.SweepInterval, DefaultSweepInterval)
	set(&c.ProgressInterval, DefaultProgressInterval)
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxConfigBytes == 0 {
		c.MaxConfigBytes = DefaultMaxConfigBytes
	}
	if c.MaxIterations == 0 {
		c.MaxIterations = DefaultMaxIterations
	}
	if c.AssignBatch == 0 {
		c.AssignBatch = DefaultAssignBatch
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Lease < time.Second:
		return fmt.Errorf("scheduler: lease %v: must be at least 1s", c.Lease)
	case c.MaxAttempts < 1:
		return fmt.Errorf("scheduler: max_attempts %d: must be at least 1", c.MaxAttempts)
	case c.BackoffBase < 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("scheduler: backoff base %v / max %v: need 0 <= base <= max", c.BackoffBase, c.BackoffMax)
	case c.ChunkSize < 1:
		return fmt.Errorf("scheduler: chunk_size %d: must be at least 1", c.ChunkSize)
	case c.MaxConfigBytes < 2:
		return fmt.Errorf("scheduler: max_config_bytes %d: must be at least 2", c.MaxConfigBytes)
	case c.MaxIterations < 1:
		return fmt.Errorf("scheduler: max_iterations %d: must be at least 1", c.MaxIterations)
	case c.AssignBatch < 1:
		return fmt.Errorf("scheduler: assign_batch %d: must be at least 1", c.AssignBatch)
	}
	return nil
}

// Run checks the channel namespaces, subscribes to hub presence of
// nodes:online (join/leave pushes), reads the initial presence, and starts
// the scheduler loop (assignment passes, lease expiry, backoff timers and
// the safety sweep). It returns once the loop runs; it does not block. ctx
// bounds the start only. It fails when the namespaces lack the history or
// presence the scheduler needs, and when called twice.
func (s *Service) Run(ctx context.Context) error {
	if err := s.checkNamespaces(); err != nil {
		return err
	}
	if !s.state.CompareAndSwap(stateNew, stateRunning) {
		return errors.New("scheduler: Run called twice or after Shutdown")
	}
	sub, err := newPresenceSub(s.pres)
	if err != nil {
		s.state.Store(stateStopped)
		return err
	}
	s.presence = sub
	if err := s.pres.AddSubscriber(ChannelOnline, sub, true); err != nil {
		s.state.Store(stateStopped)
		return fmt.Errorf("scheduler: subscribe %s: %w", ChannelOnline, err)
	}
	if err := s.reconcilePresence(ctx); err != nil {
		s.pres.RemoveSubscriber(ChannelOnline, sub)
		s.state.Store(stateStopped)
		return err
	}
	go s.loop()
	if s.groupCommit {
		s.wg.Add(1)
		go s.committer()
	}
	s.mu.Lock()
	if s.cfg.SweepInterval > 0 {
		s.sweepT = s.clock.AfterFunc(s.cfg.SweepInterval, s.onSweep)
	}
	s.mu.Unlock()
	s.kickAssign()
	s.kickExpire()
	return nil
}

// checkNamespaces fails when a channel the scheduler uses has options that
// break its guarantees: no history on chunks/nodes/jobs (a reconnecting
// node or a late browser would miss messages), no presence with
// join/leave on nodes:online.
func (s *Service) checkNamespaces() error {
	for _, ch := range []string{ChunksChannel("x"), NodeChannel("x"), JobChannel("x")} {
		o, err := s.pub.ChannelOptions(ch)
		if err != nil {
			return fmt.Errorf("scheduler: channel %s: %w", ch, err)
		}
		if !o.HistoryEnabled() {
			return fmt.Errorf("scheduler: channel %s: its namespace must keep history (history_size, history_ttl)", ch)
		}
	}
	o, err := s.pub.ChannelOptions(ChannelOnline)
	if err != nil {
		return fmt.Errorf("scheduler: channel %s: %w", ChannelOnline, err)
	}
	if !o.Presence || !o.JoinLeave {
		return fmt.Errorf("scheduler: channel %s: its namespace needs presence and join_leave", ChannelOnline)
	}
	return nil
}

// Shutdown stops the loop and its timers and waits for the loop (or ctx).
// Held leases stay in the store: after a restart they are still valid
// until they expire. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	prev := s.state.Swap(stateStopped)
	if prev != stateRunning {
		s.cancel()
		return nil
	}
	s.mu.Lock()
	for _, t := range []clock.Timer{s.leaseT, s.availT, s.sweepT} {
		if t != nil {
			t.Stop()
		}
	}
	s.mu.Unlock()
	s.dirtyMu.Lock()
	if s.flushT != nil {
		s.flushT.Stop()
	}
	s.dirtyMu.Unlock()
	s.pres.RemoveSubscriber(ChannelOnline, s.presence)
	s.cancel()
	stopped := make(chan struct{})
	go func() {
		<-s.done
		s.wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler: shutdown: %w", ctx.Err())
	}
}

// running returns ErrStopped unless the Service runs.
func (s *Service) running() error {
	if s.state.Load() != stateRunning {
		return ErrStopped
	}
	return nil
}

// loop is the Service's one goroutine: it runs assignment and expiry
// passes when woken and applies presence changes, until Shutdown.
func (s *Service) loop() {
	defer close(s.done)
	wakeups := s.store.Wakeups()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.presence.signal:
			s.applyPresence()
		case <-s.wakeExpire:
			s.expirePass()
		case <-s.wakeAssign:
			s.assignPass()
		case <-s.wakeFlush:
			s.flush()
		case _, ok := <-wakeups:
			if !ok {
				wakeups = nil
				continue
			}
			s.kickAssign()
		}
	}
}

// kickAssign asks the loop for an assignment pass (coalesced).
func (s *Service) kickAssign() {
	select {
	case s.wakeAssign <- struct{}{}:
	default:
	}
}

// kickExpire asks the loop for an expiry pass (coalesced).
func (s *Service) kickExpire() {
	select {
	case s.wakeExpire <- struct{}{}:
	default:
	}
}

// onSweep is the safety sweep: expiry, assignment, presence repair.
func (s *Service) onSweep() {
	if s.state.Load() != stateRunning {
		return
	}
	s.kickExpire()
	s.kickAssign()
	s.presence.requestReconcile()
	s.mu.Lock()
	if s.sweepT != nil {
		s.sweepT.Reset(s.cfg.SweepInterval)
	}
	s.mu.Unlock()
}

// armLease makes sure an expiry pass runs at (or soon after) at.
func (s *Service) armLease(at time.Time) {
	s.arm(at, &s.leaseAt, &s.leaseT, s.kickExpire)
}

// armAvail makes sure an assignment pass runs when a backoff ends at at.
func (s *Service) armAvail(at time.Time) {
	s.arm(at, &s.availAt, &s.availT, s.kickAssign)
}

func (s *Service) arm(at time.Time, when *time.Time, t *clock.Timer, kick func()) {
	if at.IsZero() || s.state.Load() != stateRunning {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !when.IsZero() && !at.Before(*when) {
		return // an earlier wake-up is armed; it re-arms for later ones
	}
	d := at.Sub(s.clock.Now())
	if d <= 0 {
		kick() // due already: no timer (a fake clock would hold it)
		return
	}
	*when = at
	fire := func() {
		s.mu.Lock()
		*when = time.Time{}
		s.mu.Unlock()
		kick()
	}
	if *t == nil {
		*t = s.clock.AfterFunc(d, fire)
		return
	}
	(*t).Stop()
	*t = s.clock.AfterFunc(d, fire)
}

// backoff is the delay before a chunk whose attempt-th lease ended may be
// leased again: base·2^(attempt-1) capped at BackoffMax, half of it fixed
// and half random (equal jitter).
func (s *Service) backoff(attempt int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < attempt && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > s.cfg.BackoffMax {
		d = s.cfg.BackoffMax
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// now is the clock reading in UTC, truncated to microseconds (what the
// stores keep).
func (s *Service) now() time.Time { return s.clock.Now().UTC().Truncate(time.Microsecond) }

// storeErr maps a store error: ErrNoRows to notFound, *errs.Error as is,
// anything else to Internal.
func storeErr(err error, notFound *errs.Error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNoRows) && notFound != nil {
		return notFound
	}
	if e := errs.Find(err); e != nil {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errs.Wrap(errs.Unavailable, err, "scheduler: request cancelled")
	}
	return errs.Wrap(errs.Internal, err, "scheduler: store")
}
