package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// Cluster defaults.
const (
	DefaultAnnounceInterval = 3 * time.Second
	DefaultCommandTimeout   = 5 * time.Second
	DefaultSurveyTimeout    = 3 * time.Second
	DefaultCommandQueue     = 1024
	// nodeTTLIntervals is the default TTL in announce intervals.
	nodeTTLIntervals = 3
)

// ClusterConfig configures how a hub takes part in a group of nodes that
// share one engine. Zero values mean defaults.
type ClusterConfig struct {
	// Control links the nodes; nil makes this hub a node alone (no
	// messages are sent, every command acts locally).
	Control ControlPlane
	// NodeID must be unique among the nodes; "" (the normal case) picks a
	// fresh random id, so a restarted process is a new node. (A node that
	// left is ignored for NodeTTL: a fixed id cannot rejoin sooner.) The
	// game relay's cluster mode needs 1 to 64 bytes of lowercase hex
	// digits and '-'.
	NodeID string
	// NodeName is shown by the info API; "" = the host name.
	NodeName string
	Version  string
	// AnnounceInterval is how often the node announces itself with its
	// figures (default 3s); NodeTTL is how long another node stays listed
	// after its last announcement (default 3 intervals).
	AnnounceInterval time.Duration
	NodeTTL          time.Duration
	// CommandTimeout bounds a command received from another node that
	// carries no deadline (default 5s).
	CommandTimeout time.Duration
	// SurveyTimeout bounds a survey, even when its context allows more
	// (default 3s).
	SurveyTimeout time.Duration
	// CommandQueue bounds the commands from other nodes waiting to be
	// applied here (default 1024); more are dropped and logged.
	CommandQueue int
}

type nodeEntry struct {
	info    NodeInfo
	expires time.Time
}

// cluster is the hub's part in a group of nodes: the registry of live
// nodes, the announcement timer, pending surveys and the goroutines that
// apply commands received from other nodes (owned here, awaited by
// Shutdown).
type cluster struct {
	h     *Hub
	cfg   ClusterConfig
	clock clock.Clock

	mu      sync.Mutex
	nodes   map[string]nodeEntry
	left    map[string]time.Time // ids that left, until the TTL passes
	timer   clock.Timer
	stopped bool
	// echoLast is when this node last heard its own announcement back;
	// echoSince when the current run of echoes began (no gap longer than
	// echoGap): RegistryComplete.
	echoLast, echoSince time.Time
	// ticking counts announcements in flight (tick), awaited by stop so
	// that none is sent after it returns (the plane may close then).
	ticking sync.WaitGroup
	surveys map[uint64]*pendingSurvey
	queue   chan queuedCommand // commands from other nodes; closed by stop
	done    chan struct{}      // closed when work returns

	surveySeq atomic.Uint64
	// received counts control messages by type and result (received,
	// malformed, dropped); incomplete counts surveys that ended without
	// every answer.
	received   *prometheus.CounterVec
	incomplete prometheus.Counter
}

func (c *cluster) register(reg prometheus.Registerer) error {
	c.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_control_messages_total", Help: "Control messages received from other nodes, by type and result.",
	}, []string{"type", "result"})
	c.incomplete = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_surveys_incomplete_total", Help: "Surveys that ended before every node answered.",
	})
	if reg == nil {
		return nil
	}
	nodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_nodes", Help: "Live nodes, this one included."},
		func() float64 { return float64(len(c.others()) + 1) })
	for _, m := range []prometheus.Collector{nodes, c.received, c.incomplete} {
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	return nil
}

func newCluster(h *Hub, cfg ClusterConfig) (*cluster, error) {
	if cfg.NodeID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("hub: node id: %w", err)
		}
		cfg.NodeID = hex.EncodeToString(b[:])
	}
	if len(cfg.NodeID) > maxNodeID {
		return nil, fmt.Errorf("hub: node id longer than %d bytes", maxNodeID)
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	if len(cfg.NodeName) > maxNodeID {
		cfg.NodeName = cfg.NodeName[:maxNodeID]
	}
	if cfg.AnnounceInterval <= 0 {
		cfg.AnnounceInterval = DefaultAnnounceInterval
	}
	if cfg.NodeTTL <= 0 {
		cfg.NodeTTL = nodeTTLIntervals * cfg.AnnounceInterval
	}
	if cfg.NodeTTL < cfg.AnnounceInterval {
		return nil, fmt.Errorf("hub: node TTL %s is shorter than the announce interval %s", cfg.NodeTTL, cfg.AnnounceInterval)
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.SurveyTimeout <= 0 {
		cfg.SurveyTimeout = DefaultSurveyTimeout
	}
	if cfg.CommandQueue <= 0 {
		cfg.CommandQueue = DefaultCommandQueue
	}
	done := make(chan struct{})
	if cfg.Control == nil {
		close(done) // no worker
	}
	c := &cluster{h: h, cfg: cfg, clock: h.clock, nodes: map[string]nodeEntry{}, left: map[string]time.Time{},
		surveys: map[uint64]*pendingSurvey{}, queue: make(chan queuedCommand, cfg.CommandQueue), done: done}
	if err := c.register(h.cfg.Registerer); err != nil {
		return nil, err
	}
	return c, nil
}

// start joins the control plane and announces the node at once.
func (c *cluster) start() error {
	if c.cfg.Control == nil {
		return nil
	}
	go c.work()
	if err := c.cfg.Control.Run(c.cfg.NodeID, c.h); err != nil {
		c.mu.Lock()
		c.stopped = true
		close(c.queue) // ends the worker
		c.mu.Unlock()
		return fmt.Errorf("hub: run control plane: %w", err)
	}
	c.tick()
	return nil
}

// tick announces the node, forgets expired nodes and re-arms itself,
// until stop.
func (c *cluster) tick() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.ticking.Add(1)
	defer c.ticking.Done()
	c.pruneLocked(c.clock.Now())
	if c.timer == nil {
		c.timer = c.clock.AfterFunc(c.cfg.AnnounceInterval, c.tick)
	} else {
		c.timer.Reset(c.cfg.AnnounceInterval)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.AnnounceInterval)
	defer cancel()
	if err := c.broadcast(ctx, &controlMessage{Type: ctlAnnounce, Info: c.self()}); err != nil {
		c.h.log.Warn("node announcement failed; other nodes drop this one if it goes on", "error", err)
	}
}

func (c *cluster) pruneLocked(now time.Time) {
	for id, e := range c.nodes {
		if now.After(e.expires) {
			delete(c.nodes, id)
			c.h.log.Info("node dropped: not heard from within the TTL", "node", id, "name", e.info.Name, "ttl", c.cfg.NodeTTL)
		}
	}
	for id, until := range c.left {
		if now.After(until) {
			delete(c.left, id)
		}
	}
}

// self describes this node with its current figures.
func (c *cluster) self() *NodeInfo {
	h := c.h
	return &NodeInfo{ID: c.cfg.NodeID, Name: c.cfg.NodeName, Version: c.cfg.Version,
		NumClients: h.NumClients(), NumUsers: h.NumUsers(), NumChannels: h.NumChannels(),
		NumSubs: h.NumSubscriptions(), Uptime: h.Uptime()}
}

// heard records an announcement; it reports whether the node was new.
func (c *cluster) heard(info *NodeInfo) (isNew bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	if _, gone := c.left[info.ID]; gone {
		return false
	}
	_, known := c.nodes[info.ID]
	c.nodes[info.ID] = nodeEntry{info: *info, expires: c.clock.Now().Add(c.cfg.NodeTTL)}
	if !known {
		c.h.log.Info("node joined", "node", info.ID, "name", info.Name, "version", info.Version)
	}
	return !known
}

// echoGap is the longest silence between two of a node's own
// announcement echoes that still counts as hearing the control plane.
func (c *cluster) echoGap() time.Duration { return 2 * c.cfg.AnnounceInterval }

// echo records that this node heard its own announcement back.
func (c *cluster) echo() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if c.echoLast.IsZero() || now.Sub(c.echoLast) > c.echoGap() {
		c.echoSince = now
	}
	c.echoLast = now
}

func (c *cluster) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.nodes[id]; ok {
		delete(c.nodes, id)
		c.h.log.Info("node left", "node", id, "name", e.info.Name)
	}
	c.left[id] = c.clock.Now().Add(c.cfg.NodeTTL)
}

// others returns the ids of the live nodes other than this one.
func (c *cluster) others() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]string, 0, len(c.nodes))
	for id, e := range c.nodes {
		if !now.After(e.expires) {
			out = append(out, id)
		}
	}
	return out
}

// stop ends announcements, waits for one in flight and tells the other
// nodes this one leaves: after it returns the hub sends nothing on its own,
// so the plane may close. Commands arriving afterwards are ignored. It is
// idempotent.
func (c *cluster) stop(ctx context.Context) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	close(c.queue)
	c.mu.Unlock()
	c.ticking.Wait() // bounded: an announcement ends within AnnounceInterval
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AnnounceInterval)
	defer cancel()
	if err := c.broadcast(ctx, &controlMessage{Type: ctlLeave}); err != nil {
		c.h.log.Warn("node leave announcement failed; other nodes drop this one after the TTL", "error", err, "ttl", c.cfg.NodeTTL)
	}
}

// wait waits for the commands received from other nodes to finish.
func (c *cluster) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub: shutdown: commands from other nodes still running: %w", ctx.Err())
	}
}

func (c *cluster) broadcast(ctx context.Context, m *controlMessage) error {
	if c.cfg.Control == nil {
		return nil
	}
	m.Node = c.cfg.NodeID
	b, err := encodeControl(m)
	if err != nil {
		return err
	}
	return c.cfg.Control.Broadcast(ctx, b)
}

func (c *cluster) send(ctx context.Context, node string, m *controlMessage) error {
	if c.cfg.Control == nil {
		return nil
	}
	m.Node = c.cfg.NodeID
	b, err := encodeControl(m)
	if err != nil {
		return err
	}
	return c.cfg.Control.Send(ctx, node, b)
}

// NodeID is this hub's node id, unique among the nodes sharing an engine.
func (h *Hub) NodeID() string { return h.cluster.cfg.NodeID }

// NodeTTL is how long another node stays listed by Nodes after its last
// announcement (ClusterConfig.NodeTTL with its default filled in): a node
// silent for longer is taken for gone.
func (h *Hub) NodeTTL() time.Duration { return h.cluster.cfg.NodeTTL }

// EchoGap is the longest silence of this node's own announcement echoes
// that RegistryComplete still takes for hearing the control plane (two
// announce intervals). A complete registry may so have missed up to that
// much of another node's announcements: a node missing from LiveIDs for
// less than EchoGap may be live.
func (h *Hub) EchoGap() time.Duration { return h.cluster.echoGap() }

// RegistryComplete reports whether Nodes can be trusted to list every
// live node: this node has been hearing its own announcements come back
// (the control plane delivers to it) without a gap longer than two
// announce intervals for at least NodeTTL, and it is not shutting down.
// False without a control plane (the registry then lists only this node),
// at startup and after the node stopped hearing the plane, until NodeTTL
// of echoes has passed again: a node unheard meanwhile may be live.
func (h *Hub) RegistryComplete() bool {
	c := h.cluster
	if c.cfg.Control == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	return !c.stopped && !c.echoLast.IsZero() && now.Sub(c.echoLast) <= c.echoGap() &&
		now.Sub(c.echoSince) >= c.cfg.NodeTTL
}

// LiveIDs lists the ids of the live nodes, this one included, in no
// order: Nodes without the figures (no scan of the hub's state).
func (h *Hub) LiveIDs() []string {
	c := h.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]string, 0, len(c.nodes)+1)
	out = append(out, c.cfg.NodeID)
	for id, e := range c.nodes {
		if !now.After(e.expires) {
			out = append(out, id)
		}
	}
	return out
}

// LeftIDs lists the ids of the nodes that announced their leave (a clean
// shutdown) within the last NodeTTL, in no order; a node that went silent
// instead is not among them.
func (h *Hub) LeftIDs() []string {
	c := h.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]string, 0, len(c.left))
	for id, until := range c.left {
		if !now.After(until) {
			out = append(out, id)
		}
	}
	return out
}

// Nodes lists the live nodes: this one first, with its current figures,
// then every node heard from within the TTL (by name, then id) with the
// figures of its last announcement. A node that left cleanly is gone at
// once.
func (h *Hub) Nodes() []NodeInfo {
	c := h.cluster
	out := []NodeInfo{*c.self()}
	c.mu.Lock()
	now := c.clock.Now()
	for _, e := range c.nodes {
		if !now.After(e.expires) {
			out = append(out, e.info)
		}
	}
	c.mu.Unlock()
	rest := out[1:]
	sort.Slice(rest, func(i, j int) bool {
		if rest[i].Name != rest[j].Name {
			return rest[i].Name < rest[j].Name
		}
		return rest[i].ID < rest[j].ID
	})
	return out
}
