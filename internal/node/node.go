package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultTaskID            = "chunk"
	DefaultChunkTimeout      = time.Hour
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultProgressInterval  = 10 * time.Second
	DefaultClaimPollMin      = time.Second
	DefaultClaimPollMax      = 15 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	// minProgressInterval bounds how often one chunk reports progress.
	minProgressInterval = 50 * time.Millisecond
	// reportAttempts bounds the tries of one completion or failure report
	// that meets network errors or 5xx answers.
	reportAttempts = 8
	// rememberFinished is how many finished (chunk, lease) pairs are kept
	// to ignore assignments replayed by recovery.
	rememberFinished = 4096
)

// Config configures a Node. Zero values mean the documented default.
type Config struct {
	// Server is the scheduler's base URL, http://HOST:PORT. Required.
	Server string
	// Key is the node's identity. Required (see LoadOrCreateKey).
	Key ed25519.PrivateKey
	// Worker is the worker argv, e.g. {"python3", "sim.py"}. Required.
	Worker []string
	// WorkerDir and WorkerEnv are the worker's directory and environment
	// ("" and nil: this process's).
	WorkerDir string
	WorkerEnv []string
	// TaskID is the worker task each chunk runs as (default "chunk").
	TaskID string
	// Parallel is the number of chunks run at once and of worker
	// processes (default runtime.NumCPU()). The scheduler's maxParallel
	// for the node lowers it further when smaller.
	Parallel int
	// ChunkTimeout bounds one chunk in the worker (default 1 h); a worker
	// that overruns is killed and the chunk reported failed, retryable.
	ChunkTimeout time.Duration
	// Hostname, Platform, Version and TotalCores are sent on registration
	// (defaults: os.Hostname, GOOS-arch as linux-x86_64, "dev",
	// runtime.NumCPU()).
	Hostname   string
	Platform   string
	Version    string
	TotalCores int
	// HeartbeatInterval is the period of POST /nodes/heartbeat (default
	// 10 s).
	HeartbeatInterval time.Duration
	// ProgressInterval is the longest period between two progress reports
	// of a running chunk (default 10 s); a chunk whose lease is shorter
	// reports every third of its lease.
	ProgressInterval time.Duration
	// ClaimPollMin and ClaimPollMax bound the backoff of POST
	// /nodes/verify while the node waits to be claimed (defaults 1 s and
	// 15 s); also the backoff of registration retries.
	ClaimPollMin, ClaimPollMax time.Duration
	// ShutdownGrace is how long Shutdown lets running chunks finish before
	// handing them back (default 30 s; the Shutdown context may cut it
	// shorter).
	ShutdownGrace time.Duration
	// Out receives the lines meant for the operator: the node id, the
	// claim code, the claim (nil: discarded).
	Out io.Writer
	// HTTPClient sends the node API requests (nil: a client with a 30 s
	// timeout).
	HTTPClient *http.Client
	// Logger receives the node's events (nil: discarded).
	Logger *slog.Logger
	// Clock drives heartbeats, progress reports and backoff (nil: real).
	Clock clock.Clock
	// Registerer receives the worker pool's metrics (nil: none).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.TaskID == "" {
		c.TaskID = DefaultTaskID
	}
	if c.Parallel == 0 {
		c.Parallel = runtime.NumCPU()
	}
	if c.ChunkTimeout == 0 {
		c.ChunkTimeout = DefaultChunkTimeout
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	if c.Platform == "" {
		c.Platform = Platform()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.TotalCores == 0 {
		c.TotalCores = runtime.NumCPU()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.ClaimPollMin == 0 {
		c.ClaimPollMin = DefaultClaimPollMin
	}
	if c.ClaimPollMax == 0 {
		c.ClaimPollMax = DefaultClaimPollMax
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.OrReal(c.Clock)
}

func (c *Config) validate() error {
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("server URL is required (--server)"))
	}
	if len(c.Key) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("an Ed25519 key is required"))
	}
	if len(c.Worker) == 0 || c.Worker[0] == "" {
		errs = append(errs, errors.New("worker command is required (--worker)"))
	}
	if c.Parallel < 1 || c.Parallel > 1024 {
		errs = append(errs, fmt.Errorf("parallel %d out of range 1..1024 (--parallel)", c.Parallel))
	}
	if c.ChunkTimeout < 0 || c.HeartbeatInterval < 0 || c.ProgressInterval < 0 || c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.ClaimPollMin <= 0 || c.ClaimPollMax < c.ClaimPollMin {
		errs = append(errs, errors.New("claim poll bounds must be positive, min ≤ max"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}

// Platform names this machine as the origin's nodes do: linux-x86_64,
// darwin-aarch64, windows-x86_64.
func Platform() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	case "386":
		arch = "x86"
	}
	return runtime.GOOS + "-" + arch
}

// Node is a running compute node. Create it with New, run it with Run and
// stop it with Shutdown; both are safe to call from different goroutines.
type Node struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock
	api   *api

	// life ends when Shutdown starts: Run returns, loops stop.
	life     context.Context
	stopLife context.CancelFunc
	// work is the parent of every chunk's context; report carries the
	// final reports and ends when Shutdown's context does.
	work         context.Context
	cancelWork   context.CancelFunc
	report       context.Context
	cancelReport context.CancelFunc

	mu        sync.Mutex
	id        ID
	name      string
	pool      *worker.Pool
	client    *centrifuge.Client
	running   map[string]*chunkRun
	finished  map[string]struct{}
	finOrder  []string
	limit     int // effective parallelism
	active    int // chunks holding a slot
	slotFreed chan struct{}
	draining  bool
	// announced is closed once the draining heartbeat is answered (or
	// given up): hand-backs wait for it, so the scheduler hears the drain
	// from the heartbeat first.
	announced chan struct{}
	// instance is this process's id, sent on register and heartbeat.
	instance string
	stopped  bool // no more goroutines start
	runDone  chan struct{}
	runOnce  sync.Once
	shutOnce sync.Once
	shutDone chan struct{}
	idle     chan struct{} // closed when draining and no chunk runs
	idleOnce sync.Once

	wg sync.WaitGroup
}

// New checks cfg and returns a Node; nothing runs until Run.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a, err := newAPI(cfg.Server, cfg.Key, cfg.HTTPClient, cfg.Clock)
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("component", "node"), clock: cfg.Clock, api: a,
		running: map[string]*chunkRun{}, finished: map[string]struct{}{},
		limit: cfg.Parallel, slotFreed: make(chan struct{}),
		runDone: make(chan struct{}), shutDone: make(chan struct{}), idle: make(chan struct{}),
		announced: make(chan struct{}), instance: uuid.NewString(),
	}
	n.life, n.stopLife = context.WithCancel(context.Background())
	n.work, n.cancelWork = context.WithCancel(context.Background())
	n.report, n.cancelReport = context.WithCancel(context.Background())
	return n, nil
}

// ID returns the node id once registered (zero before).
func (n *Node) ID() ID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// goFunc runs f in a goroutine the Node waits for; after Shutdown has
// started waiting, f is dropped.
func (n *Node) goFunc(f func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Run registers the node, waits for its claim, starts the worker pool and
// the hub connection and then serves chunks until ctx ends or Shutdown is
// called; it returns nil then. It returns an error for a refused
// registration, a worker pool that cannot be built or a hub connection that
// cannot be set up. Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	first := false
	n.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("node: Run called twice, or after Shutdown")
	}
	defer close(n.runDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.life, cancel)
	defer stop()

	reg, err := n.register(ctx)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	n.mu.Lock()
	n.id = reg.ID
	n.mu.Unlock()
	fmt.Fprintf(n.cfg.Out, "node id: %s\n", reg.ID)
	info, err := n.waitClaim(ctx, reg)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	fmt.Fprintf(n.cfg.Out, "node claimed: name %q, max parallel %d\n", info.Name, info.MaxParallel)
	n.applyInfo(info)

	pool, err := worker.New(worker.Config{
		Command: n.cfg.Worker, Dir: n.cfg.WorkerDir, Env: n.cfg.WorkerEnv,
		Workers: n.cfg.Parallel, MaxInFlight: 1, Timeout: n.cfg.ChunkTimeout,
		QueueTimeout: n.cfg.ChunkTimeout, KillOnTimeout: true,
		Logger: n.cfg.Logger, Registerer: n.cfg.Registerer,
	})
	if err != nil {
		return fmt.Errorf("node: worker pool: %w", err)
	}
	n.mu.Lock()
	n.pool = pool
	n.mu.Unlock()

	var tok tokenResponse
	for b := n.newBackoff(n.cfg.ClaimPollMin, n.cfg.ClaimPollMax); ; {
		if tok, err = n.fetchToken(ctx); err == nil {
			break
		}
		if !retryable(err) || !b.wait(ctx) {
			return ignoreCanceled(ctx, err)
		}
		n.log.Warn("hub token failed; retrying", "err", err)
	}
	if err := n.connect(tok); err != nil {
		return err
	}
	n.goFunc(n.heartbeatLoop)
	<-ctx.Done()
	return nil
}

// ignoreCanceled turns the error of a step cut short by ctx into nil.
func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// register posts /nodes/register, retrying network errors, 408, 429 (the
// server's per-address registration limit) and 5xx answers with backoff;
// other 4xx answers are final.
func (n *Node) register(ctx context.Context) (registerResponse, error) {
	req := registerRequest{Hostname: n.cfg.Hostname, TotalCores: n.cfg.TotalCores,
		EnabledCores: n.cfg.Parallel, Platform: n.cfg.Platform, Version: n.cfg.Version, Instance: n.instance}
	var resp registerResponse
	b := n.newBackoff(n.cfg.ClaimPollMin, n.cfg.ClaimPollMax)
	for {
		err := n.api.call(ctx, http.MethodPost, "/nodes/register", req, &resp)
		if err == nil {
			if resp.ID.IsZero() {
				return resp, errors.New("node: register: the answer has no id")
			}
			return resp, nil
		}
		if !retryable(err) {
			return resp, fmt.Errorf("node: %w", err)
		}
		n.log.Warn("register failed; retrying", "err", err, "in", b.peek())
		if !b.wait(ctx) {
			return resp, ctx.Err()
		}
	}
}

// waitClaim polls /nodes/verify (404 until claimed) with backoff and
// returns the node's settings once claimed.
func (n *Node) waitClaim(ctx context.Context, reg registerResponse) (nodeInfo, error) {
	if !reg.Claimed && reg.ClaimCode != nil {
		fmt.Fprintf(n.cfg.Out, "claim code: %s\n", *reg.ClaimCode)
		fmt.Fprintf(n.cfg.Out, "waiting to be claimed: enter the code in the console or POST /nodes/claim {\"code\":%q,\"name\":…,\"maxParallel\":…}\n", *reg.ClaimCode)
	}
	b := n.newBackoff(n.cfg.ClaimPollMin, n.cfg.ClaimPollMax)
	for {
		var info nodeInfo
		err := n.api.call(ctx, http.MethodPost, "/nodes/verify", nil, &info)
		if err == nil {
			return info, nil
		}
		switch {
		case notClaimed(err):
			n.log.Debug("not claimed yet", "next_poll", b.peek())
		case retryable(err):
			n.log.Warn("verify failed; retrying", "err", err, "in", b.peek())
		default:
			return info, fmt.Errorf("node: %w", err)
		}
		if !b.wait(ctx) {
			return info, ctx.Err()
		}
	}
}

// fetchToken gets a hub connect token and URL.
func (n *Node) fetchToken(ctx context.Context) (tokenResponse, error) {
	var tok tokenResponse
	if err := n.api.call(ctx, http.MethodPost, "/nodes/token", nil, &tok); err != nil {
		return tok, fmt.Errorf("node: %w", err)
	}
	if tok.Token == "" || tok.URL == "" {
		return tok, errors.New("node: /nodes/token answered without token or url")
	}
	return tok, nil
}

// applyInfo adopts the scheduler's settings for the node.
func (n *Node) applyInfo(info nodeInfo) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if info.Name != "" {
		n.name = info.Name
	}
	limit := n.cfg.Parallel
	if info.MaxParallel > 0 && info.MaxParallel < limit {
		limit = info.MaxParallel
	}
	if limit != n.limit {
		n.log.Info("parallelism changed", "from", n.limit, "to", limit)
		n.limit = limit
		n.signalSlotsLocked()
	}
}

// connect dials the hub with centrifuge-go: the token's channels claim
// subscribes the node server-side; recovery and reconnects are the
// client's.
func (n *Node) connect(tok tokenResponse) error {
	id := n.ID()
	chunkCh, ctlCh := "chunks:"+id.String(), "nodes:"+id.String()
	c := centrifuge.NewJsonClient(tok.URL, centrifuge.Config{
		Token: tok.Token,
		GetToken: func(centrifuge.ConnectionTokenEvent) (string, error) {
			ctx, cancel := context.WithTimeout(n.life, 30*time.Second)
			defer cancel()
			t, err := n.fetchToken(ctx)
			if err != nil {
				n.log.Warn("token refresh failed", "err", err)
				if tokenRefused(err) {
					return "", centrifuge.ErrUnauthorized
				}
				return "", err
			}
			return t.Token, nil
		},
		Name:    "switchboard-node",
		Version: n.cfg.Version,
	})
	c.OnConnected(func(e centrifuge.ConnectedEvent) {
		n.log.Info("connected to hub", "url", tok.URL, "client", e.ClientID)
		n.goFunc(n.syncAssigned)
	})
	c.OnDisconnected(func(e centrifuge.DisconnectedEvent) {
		n.log.Info("disconnected from hub", "code", e.Code, "reason", e.Reason)
	})
	c.OnError(func(e centrifuge.ErrorEvent) { n.log.Debug("hub client error", "err", e.Error) })
	c.OnSubscribed(func(e centrifuge.ServerSubscribedEvent) {
		n.log.Debug("subscribed", "channel", e.Channel, "recovered", e.Recovered, "was_recovering", e.WasRecovering)
	})
	c.OnPublication(func(e centrifuge.ServerPublicationEvent) {
		switch e.Channel {
		case chunkCh:
			ch, err := DecodeChunk(e.Data)
			if err != nil {
				n.log.Warn("bad chunk message", "err", err)
				return
			}
			n.accept(ch)
		case ctlCh:
			n.onControl(e.Data)
		}
	})
	n.mu.Lock()
	n.client = c
	n.mu.Unlock()
	if err := c.Connect(); err != nil {
		return fmt.Errorf("node: hub connect: %w", err)
	}
	return nil
}

// syncAssigned runs every chunk the scheduler says this node holds (after
// each hub (re)connect).
func (n *Node) syncAssigned() {
	b := n.newBackoff(n.cfg.ClaimPollMin, n.cfg.ClaimPollMax)
	for {
		var raw jsonRaw
		err := n.api.call(n.life, http.MethodGet, "/chunks/assigned", nil, &raw)
		if err == nil {
			chunks, bad, derr := decodeAssigned(raw)
			if derr != nil {
				n.log.Warn("bad /chunks/assigned answer", "err", derr)
				return
			}
			for _, e := range bad {
				n.log.Warn("bad assigned chunk", "err", e)
			}
			for _, c := range chunks {
				n.accept(c)
			}
			return
		}
		if !retryable(err) {
			n.log.Warn("cannot list assigned chunks", "err", err)
			return
		}
		if !b.wait(n.life) {
			return
		}
	}
}

// jsonRaw keeps a JSON answer undecoded.
type jsonRaw []byte

func (r *jsonRaw) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

func (n *Node) onControl(data []byte) {
	m, err := decodeControl(data)
	if err != nil {
		n.log.Warn("bad control message", "err", err)
		return
	}
	switch m.Type {
	case "config":
		n.applyInfo(nodeInfo{Name: m.Name, MaxParallel: m.MaxParallel})
	case "cancel":
		n.cancelChunks(m.JobID, m.ChunkIDs)
	}
}

// cancelChunks stops the named chunks (all of the job's when ids is
// empty); they are not reported.
func (n *Node) cancelChunks(job ID, ids []ID) {
	n.mu.Lock()
	var hit []*chunkRun
	if len(ids) == 0 {
		for _, r := range n.running {
			if r.chunk.JobID.String() == job.String() {
				hit = append(hit, r)
			}
		}
	}
	for _, id := range ids {
		if r := n.running[id.String()]; r != nil {
			hit = append(hit, r)
		}
	}
	n.mu.Unlock()
	for _, r := range hit {
		n.log.Info("chunk cancelled", "chunk", r.chunk.ID.String(), "job", job.String())
		r.stop(stopCancelled)
	}
}

func (n *Node) heartbeatLoop() {
	for n.sleep(n.life, n.cfg.HeartbeatInterval) {
		var info nodeInfo
		ctx, cancel := context.WithTimeout(n.life, max(n.cfg.HeartbeatInterval, 5*time.Second))
		err := n.api.call(ctx, http.MethodPost, "/nodes/heartbeat", heartbeatRequest{Instance: n.instance}, &info)
		cancel()
		if err != nil {
			if n.life.Err() == nil {
				n.log.Warn("heartbeat failed", "err", err)
			}
			continue
		}
		n.applyInfo(info)
	}
}

// Shutdown stops the node: no new chunks are taken (new assignments are
// handed back at once), running chunks get ShutdownGrace (cut short by
// ctx) to finish and report, the rest are stopped and handed back with
// POST /chunks/fail (retryable, "node shutting down"); then the hub
// connection, the loops and the worker pool stop. It waits for every
// goroutine, is idempotent, and returns ctx.Err() if ctx ended first.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		defer close(n.shutDone)
		n.shutdown(ctx)
	})
	select {
	case <-n.shutDone:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) shutdown(ctx context.Context) {
	// No new chunk starts from here; hand-backs (of new assignments and
	// of chunks waiting for a slot) wait for the draining heartbeat.
	n.mu.Lock()
	n.draining = true
	n.signalSlotsLocked()
	n.checkIdleLocked()
	n.mu.Unlock()
	n.announceDraining(ctx)
	close(n.announced)
	n.stopLife()
	n.runOnce.Do(func() { close(n.runDone) }) // Run never called
	select {
	case <-n.runDone:
	case <-ctx.Done():
	}

	// Cancel the final reports when ctx ends.
	stopReport := context.AfterFunc(ctx, n.cancelReport)
	defer stopReport()

	grace := n.clock.AfterFunc(n.cfg.ShutdownGrace, func() { n.handBackAll() })
	defer grace.Stop()
	select {
	case <-n.idle:
	case <-ctx.Done():
	}
	if n.activeChunks() > 0 {
		n.handBackAll()
		select {
		case <-n.idle:
		case <-ctx.Done():
		}
	}
	n.cancelWork()

	n.mu.Lock()
	c, pool := n.client, n.pool
	n.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if pool != nil {
		if err := pool.Shutdown(ctx); err != nil {
			n.log.Warn("worker pool shutdown cut short", "err", err)
		}
	}
	n.cancelReport()
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	n.wg.Wait()
	n.log.Info("node stopped")
}

// drainTimeout bounds the draining heartbeat of a shutdown.
const drainTimeout = 5 * time.Second

// announceDraining tells the scheduler, before any chunk is handed back,
// that this process is shutting down (POST /nodes/heartbeat with draining
// and the instance), so it assigns the node nothing more. Best effort
// within ctx and drainTimeout: the first hand-back tells the scheduler as
// well.
func (n *Node) announceDraining(ctx context.Context) {
	if n.ID().IsZero() {
		return // not registered: the scheduler assigns it nothing
	}
	ctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	var info nodeInfo
	err := n.api.call(ctx, http.MethodPost, "/nodes/heartbeat", heartbeatRequest{Draining: true, Instance: n.instance}, &info)
	if err != nil && !notClaimed(err) { // unclaimed: nothing is assigned to it anyway
		n.log.Warn("draining heartbeat failed", "err", err)
	}
}

func (n *Node) activeChunks() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.running)
}

// handBackAll stops every running chunk for hand-back.
func (n *Node) handBackAll() {
	n.mu.Lock()
	runs := make([]*chunkRun, 0, len(n.running))
	for _, r := range n.running {
		runs = append(runs, r)
	}
	n.mu.Unlock()
	for _, r := range runs {
		r.stop(stopHandBack)
	}
}

func (n *Node) checkIdleLocked() {
	if n.draining && len(n.running) == 0 {
		n.idleOnce.Do(func() { close(n.idle) })
	}
}

// sleep waits d on the node's clock; false when ctx ended first.
func (n *Node) sleep(ctx context.Context, d time.Duration) bool { return sleepClock(ctx, n.clock, d) }

// backoff is an exponential delay from lo doubling to hi.
type backoff struct {
	n      *Node
	cur    time.Duration
	lo, hi time.Duration
}

func (n *Node) newBackoff(lo, hi time.Duration) *backoff {
	return &backoff{n: n, cur: lo, lo: lo, hi: hi}
}

func (b *backoff) peek() time.Duration { return b.cur }

// wait sleeps the current delay and doubles it; false when ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.cur
	b.cur = min(b.cur*2, b.hi)
	return b.n.sleep(ctx, d)
}

// trimErr shortens an error text for the scheduler.
func trimErr(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 1000 {
		s = s[:1000]
	}
	return s
}
