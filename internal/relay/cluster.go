package relay

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Rooms across processes (the Redis engine). Each process subscribes the
// engine topic "relay:R" (the room's hub channel name, in the engine's own
// topic namespace) while it has local members of R, and publishes on it:
//
//   - join and leave of its members, always (a process that is just
//     subscribing must not miss them);
//   - the events its members send, only while another process has members
//     of R (remote members are known from those messages, and from the
//     hub presence of relay:R read at the first local join and every
//     SyncInterval, which also drops members of a process that died).
//
// Events travel as the frames the sender's process fanned out; the
// receiving process rewrites the room handle (native) and delivers to its
// local members by the same rules. One publisher goroutine hands the
// messages to the engine in queue order, so a sender's events keep their
// order; a full queue drops (counted), it never blocks a sender.
//
// The ISSUN lobby (ISSUN clients in no room) is a room of these for the
// bus: its name is lobbyName (""), which no JOIN can name, its topic and
// hub channel LobbyChannel ("relay:"). Its busRoom (cluster.lobby) lives
// as long as the cluster and its topic is subscribed from Start to
// Shutdown (retried in the background while the engine is down), like the
// process topic: a client entering or leaving the lobby makes no
// subscription and takes no lock shared with other connections across a
// Redis call. Its hub presence and its bus join or leave are written after
// the local move by a goroutine the cluster owns, one connection's steps
// in order (lobbyChanged, lobbyStep in rooms.go); a member whose presence
// could not be written is written again by the next lobby sync
// (lobbyRepair). A process without lobby members still gets the lobby's
// membership messages, and its events while two other processes have
// lobby members (it drops them: no local member). The lobby has no
// PRESENCE news.
//
// An ISSUN targeted event for a NodeId not connected here goes out on the
// topic of any room (or the lobby) this process holds in which that
// NodeId is a remote ISSUN member (cluster.issunNodes, an index kept with
// the rooms' remote members): the process holding it delivers it by the
// local rules. Otherwise it goes to the process that the NodeId directory
// names (directory.go), on that process's topic.
//
// Each process also subscribes, from Start to Shutdown, a topic of its
// own (processTopic): other processes ask it there to hand over a parked
// session (a resume on another process) or to end one (its NodeId joins
// elsewhere), and it gets their answers there (resume_cluster.go).

// RoomBus carries room messages between processes (*hub.Topics of the
// Redis engine). See hub.TopicBroker for the delivery contract.
type RoomBus interface {
	// Listen sets the function receiving the subscribed topics' messages;
	// data is its own to keep and modify.
	Listen(fn func(topic string, data []byte)) error
	Subscribe(ctx context.Context, topic string) error
	Unsubscribe(topic string) error
	// Publish publishes msgs in order.
	Publish(ctx context.Context, msgs []hub.TopicMessage) error
}

// busResubscriber is a RoomBus that names the topics the engine
// subscribed again after replacing a PUB/SUB connection (*hub.Topics; see
// hub.TopicResubscribeHandler): messages of those may have been lost, so
// their rooms are synced at once.
type busResubscriber interface {
	ListenResubscribed(fn func(topics []string)) error
}

// PresenceLister reads a channel's cluster-wide presence (*hub.Hub); a
// Server with a Bus needs its Presence to implement it.
type PresenceLister interface {
	Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error)
}

// PresenceClaimer is a Presence whose adds can be conditional and atomic
// for every process on the engine (*hub.Hub, by its engine's
// hub.PresenceClaimer). With a Bus, a JOIN's member cap and NodeId check
// and the handshake's NodeId reservation are decided by it (claims.go);
// a Presence without it leaves them to what this process knows of the
// others (best-effort across processes).
//
// A PresenceClaimer that also has CanClaimPresence (*hub.Hub) is one only
// while that reports true (its engine has conditional presence).
type PresenceClaimer interface {
	ClaimPresence(ctx context.Context, channel string, info *hub.ClientInfo, claim hub.PresenceClaim) (hub.ClaimResult, error)
}

// claimerOf is p as a PresenceClaimer, nil when it is not one (see
// PresenceClaimer).
func claimerOf(p Presence) PresenceClaimer {
	pc, ok := p.(PresenceClaimer)
	if !ok {
		return nil
	}
	if c, ok := p.(interface{ CanClaimPresence() bool }); ok && !c.CanClaimPresence() {
		return nil
	}
	return pc
}

// Defaults of the cluster fields of Config.
const (
	DefaultBusQueue      = 16384
	DefaultBusQueueBytes = 32 << 20
	DefaultSyncInterval  = 15 * time.Second
	// busBatch bounds the messages of one publish round trip.
	busBatch = 256
)

// Drop reasons of the bus (switchboard_relay_drops_total).
const (
	dropBusQueueFull = "bus_queue_full"
	dropBusPublish   = "bus_publish_failed"
	dropBusMalformed = "bus_malformed"
	dropBusNoRoom    = "bus_no_local_room"
)

var errNodeInRoom = errs.New(errs.Conflict, "a member of the room on another process has this node id")

// cluster is the Server's part in cluster-wide rooms; nil without a Bus.
type cluster struct {
	s      *Server
	bus    RoomBus
	lister PresenceLister
	// claimer is the Presence as a PresenceClaimer (nil when it is not).
	claimer PresenceClaimer
	// nodeConflicts counts member rewrites that found their NodeId held
	// by another entry (writeMember).
	nodeConflicts prometheus.Counter
	origin        string // this process's id on the bus
	// beforeNews, when set (tests only), runs in handle before a bus
	// join or leave takes the room's news lock.
	beforeNews atomic.Pointer[func()]

	mu    sync.RWMutex
	rooms map[string]*busRoom // by room name, while joined or joining here
	// lobby is the ISSUN lobby's, always in rooms; its refs stay 0 (it
	// is subscribed from Start to Shutdown).
	lobby *busRoom

	// issunNodes indexes the remote ISSUN members of the rooms held here:
	// NodeId → the rooms having one (forwardTargeted). Guarded by idxMu,
	// taken under busRoom.mu (indexLocked), one NodeId at a time.
	idxMu      sync.RWMutex
	issunNodes map[wire.NodeID]map[*busRoom]struct{}

	out  chan hub.TopicMessage
	stop chan struct{}
	// queued counts the bytes of the messages in out (BusQueueBytes).
	queued atomic.Int64
	// lobbySeq counts the lobby presence writes of local members
	// (conn.lobby.seq), so a sync tells a write it could not have read.
	lobbySeq atomic.Uint64
	// syncCtx bounds the presence reads of syncs; close cancels it, so a
	// Redis that does not answer cannot hold up Shutdown.
	syncCtx    context.Context
	syncCancel context.CancelFunc
	// drainCtx bounds publishing what is queued at close; set before stop
	// is closed.
	drainCtx context.Context
	wg       sync.WaitGroup
	// ctx bounds the engine calls of requests between processes (serve,
	// abandon): cancelled when close's ctx ends, and at the end of close.
	ctx       context.Context
	ctxCancel context.CancelFunc
	// pubDone is closed when the publisher returned; swept once close
	// counted what was left queued: a message queued later is a drop.
	pubDone chan struct{}
	swept   atomic.Bool

	// resync holds the rooms whose topics a reconnect subscribed again,
	// for syncLoop (woken by resyncNow); guarded by mu.
	resync    map[string]struct{}
	resyncNow chan struct{}

	// procTopic is this process's own topic; procMu guards procReady
	// (subscribed), pending (requests waiting for an answer, by id) and
	// closed (no goroutine starts after close).
	procTopic string
	procMu    sync.Mutex
	procReady bool
	pending   map[string]pendingAsk
	closed    bool
	// handed: tokens of sessions handed over, for redirects (procMu).
	handed map[string]handedRecord
	// gaveUp: requests whose answer this process stopped waiting for
	// (procMu); a session such an answer carries is ended (abandon).
	gaveUp map[string]handedRecord
	// serving holds a slot per request of another process being served.
	serving chan struct{}
	// handing: sessions being handed over, by hub session; disconnected:
	// session ids the server API disconnected before they were
	// registered here, taken: sessions taken over lately
	// (resume_cluster.go). All guarded by Server.mu.
	handing      map[*hubSession]*handingState
	disconnected map[string]handedRecord // by session id: the process that disconnected it
	taken        map[string]handedRecord // sessions taken over lately: from which process
	// arriving: rooms of sessions being taken over here, by session id
	// (Server.mu), for opPresent.
	arriving map[string][]string
	// testHandOver, when set (tests), runs in a handover at "claim"
	// (before the parked session is looked up), "taken" (after it is taken
	// out) and "answering" (just before the answer is sent); on a
	// claimer at "abandoned" (a resume that failed at a room join ended
	// the session, before its connection unregisters); on the repair
	// goroutine at "repair_listed" (a round listed the marks).
	testHandOver atomic.Pointer[func(stage string)]

	// dirMu guards dir.cache (directory.go).
	dirMu sync.Mutex
	dir   dirState
	// repairMu guards repair.pending and repair.seq (repair.go).
	repairMu sync.Mutex
	repair   repairState
	// live: which processes are dead (liveness.go).
	live liveState

	published, received prometheus.Counter
	// sessions counts sessions moved between processes, by event.
	sessions            *prometheus.CounterVec
	dropFull, dropPub   prometheus.Counter
	dropBad, dropNoRoom prometheus.Counter
}

// busRoom is the cluster state of one room with local members.
type busRoom struct {
	cl    *cluster
	name  string
	topic string
	refs  int // local members and joins in progress; guarded by cluster.mu

	subMu      sync.Mutex // serialises subscribe and unsubscribe of topic (not the lobby's)
	subscribed bool
	// syncMu serialises the syncs of the room (a sync applies the read it
	// made; two at once could apply an older read last).
	syncMu sync.Mutex

	// news serialises a change of remote and the PRESENCE news telling
	// it (sync and bus messages run on different goroutines), so news
	// reaches the members in the order of the changes; taken before mu.
	news sync.Mutex

	mu sync.Mutex
	// live: subscribed (set before the first sync, cleared with remote
	// at the release): a bus message handled after the release adds no
	// member to a room no longer held.
	live bool
	// gen counts the subscriptions: a sync whose read began under another
	// one applies nothing.
	gen uint64
	// syncs counts the syncs applied (tests wait for the lobby's first).
	syncs  atomic.Int64
	remote map[string]remoteMember // by session id
	gone   map[string]time.Time    // left by a bus message, for sync
	// ids counts remote members by NodeId (wire.NodeID → int, no zero
	// counts), n all of them; written under mu one member at a time
	// (putRemoteLocked, dropRemoteLocked), read by the fan-out and JOIN
	// without br.mu.
	ids sync.Map
	n   atomic.Int32
	// issun counts the remote ISSUN members by NodeId (guarded by mu): what
	// this room adds to cluster.issunNodes.
	issun map[wire.NodeID]int
	// transports counts the remote members by transport (guarded by mu).
	transports map[string]int
}

func (cl *cluster) newBusRoom(name string) *busRoom {
	br := &busRoom{cl: cl, name: name, topic: ChannelPrefix + name, remote: map[string]remoteMember{}, gone: map[string]time.Time{}}
	return br
}

// goneHorizon is how long a leave is remembered for syncs: longer than
// a sync's presence read can take (opTimeout).
const goneHorizon = 2 * opTimeout

// pruneGoneLocked forgets leaves older than goneHorizon (br.mu held), so
// the map stays bounded even when syncs are off.
func (br *busRoom) pruneGoneLocked(now time.Time) {
	if len(br.gone) < 64 {
		return
	}
	for sid, t := range br.gone {
		if now.Sub(t) > goneHorizon {
			delete(br.gone, sid)
		}
	}
}

// remoteMember is a member of the room on another process.
type remoteMember struct {
	node      wire.NodeID
	sid, user string
	transport string
	meta      []byte
	added     time.Time
	// process is the member's process (its origin), when known.
	process string
	// handed: this process handed the member's session over to another
	// one (resume_cluster.go), whose join it has not seen yet; a sync
	// keeps the member for goneHorizon although the presence entry still
	// names this process or is missing.
	handed bool
}

func newCluster(s *Server) (*cluster, error) {
	lister, ok := s.cfg.Presence.(PresenceLister)
	if !ok {
		return nil, errors.New("a bus needs a presence that lists channels (the hub)")
	}
	origin := uuid.NewString()
	if n := s.cfg.Nodes; n != nil {
		origin = n.NodeID() // the registry's name of this process (liveness.go)
	}
	cl := &cluster{s: s, bus: s.cfg.Bus, lister: lister, origin: origin, rooms: map[string]*busRoom{},
		out: make(chan hub.TopicMessage, s.cfg.BusQueue), stop: make(chan struct{}), pending: map[string]pendingAsk{}, handed: map[string]handedRecord{},
		gaveUp: map[string]handedRecord{}, serving: make(chan struct{}, maxServing),
		handing: map[*hubSession]*handingState{}, disconnected: map[string]handedRecord{},
		taken: map[string]handedRecord{}, arriving: map[string][]string{},
		resync: map[string]struct{}{}, resyncNow: make(chan struct{}, 1), issunNodes: map[wire.NodeID]map[*busRoom]struct{}{}}
	cl.claimer = claimerOf(s.cfg.Presence)
	cl.lobby = cl.newBusRoom(lobbyName)
	cl.rooms[lobbyName] = cl.lobby
	cl.procTopic = processTopic(cl.origin)
	cl.syncCtx, cl.syncCancel = context.WithCancel(context.Background())
	cl.ctx, cl.ctxCancel = context.WithCancel(context.Background())
	cl.pubDone = make(chan struct{})
	const ns = "switchboard_relay_bus_"
	cl.published = prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "published_total", Help: "Room messages (events, joins, leaves) handed to the engine for other processes."})
	cl.received = prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "received_total", Help: "Room messages received from other processes."})
	cl.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_relay_cross_process_sessions_total",
		Help: "Native sessions moved between processes: parked sessions handed over to a resume on another process (handed_over), resumed here from another process (taken_over), parked sessions ended because their NodeId joined on another process (ended_for_node); and remote room or lobby members dropped because the node registry no longer lists their process (process_died, one per room)."},
		[]string{"event"})
	for _, e := range []string{sessionHandedOver, sessionTakenOver, sessionEndedForNode, sessionProcessDied} {
		cl.sessions.WithLabelValues(e)
	}
	cl.nodeConflicts = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_node_conflicts_total",
		Help: "Presence rewrites of room members (a resume on another process, each repair) that found their NodeId held by another live entry (two members with one NodeId admitted while Redis did not answer, or a dead process's entry not expired yet); a conflict counts on every rewrite."})
	if reg := s.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{cl.published, cl.received, cl.sessions, cl.nodeConflicts} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	cl.dropFull = s.metrics.drops.WithLabelValues(dropBusQueueFull)
	cl.dropPub = s.metrics.drops.WithLabelValues(dropBusPublish)
	cl.dropBad = s.metrics.drops.WithLabelValues(dropBusMalformed)
	cl.dropNoRoom = s.metrics.drops.WithLabelValues(dropBusNoRoom)
	if err := cl.initDirectory(); err != nil {
		return nil, err
	}
	if err := cl.initRepair(); err != nil {
		return nil, err
	}
	cl.initLiveness()
	if err := cl.bus.Listen(cl.handle); err != nil {
		return nil, err
	}
	if r, ok := cl.bus.(busResubscriber); ok {
		if err := r.ListenResubscribed(cl.resubscribed); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// resubscribed marks the rooms of topics for syncLoop and wakes it; it
// runs on the engine's connection goroutine and does not block. The
// process topic needs nothing: a request lost there times out.
func (cl *cluster) resubscribed(topics []string) {
	cl.mu.Lock()
	for _, t := range topics {
		if name, ok := strings.CutPrefix(t, ChannelPrefix); ok {
			cl.resync[name] = struct{}{}
		}
	}
	cl.mu.Unlock()
	select {
	case cl.resyncNow <- struct{}{}:
	default:
	}
}

// start runs the publisher, the periodic sync, the presence repair and,
// with a node registry, the liveness check (liveness.go) until close,
// and subscribes the process's own topic (retrying in the background when
// the engine is down).
func (cl *cluster) start() {
	cl.wg.Add(3)
	go func() { defer cl.wg.Done(); defer close(cl.pubDone); cl.publish() }()
	go func() { defer cl.wg.Done(); cl.syncLoop() }()
	go func() { defer cl.wg.Done(); cl.repairLoop() }()
	if cl.s.cfg.Nodes != nil {
		cl.wg.Add(1)
		go func() { defer cl.wg.Done(); cl.livenessLoop() }()
	}
	if !cl.subscribeProcess() {
		cl.wg.Add(1)
		go func() { defer cl.wg.Done(); cl.retryEverySecond(cl.subscribeProcess) }()
	}
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); cl.retryEverySecond(cl.subscribeLobby) }()
}

// subscribeLobby subscribes the lobby's topic and syncs its remote
// members from presence (writing the presence of the local members not
// in it yet); false when the engine is down.
func (cl *cluster) subscribeLobby() bool {
	br := cl.lobby
	ctx, cancel := context.WithTimeout(cl.syncCtx, opTimeout)
	err := cl.bus.Subscribe(ctx, br.topic)
	cancel()
	if err != nil {
		if cl.syncCtx.Err() == nil {
			cl.s.log.Warn("relay lobby topic subscribe failed", "topic", br.topic, "error", err)
		}
		return false
	}
	cl.procMu.Lock()
	closed := cl.closed
	if !closed {
		br.mu.Lock()
		br.live = true
		br.gen++
		br.mu.Unlock()
	}
	cl.procMu.Unlock()
	if closed {
		_ = cl.bus.Unsubscribe(br.topic)
		return true
	}
	// After subscribing: a join published meanwhile arrives by the bus.
	cl.syncLobby()
	return true
}

// retryEverySecond runs try now and then every second until it returns
// true or close.
func (cl *cluster) retryEverySecond(try func() bool) {
	for !try() {
		if !cl.wait(time.Second) {
			return
		}
	}
}

// wait waits d on the injected clock; false when close came first.
func (cl *cluster) wait(d time.Duration) bool {
	tick := make(chan struct{})
	t := cl.s.cfg.Clock.AfterFunc(d, func() { close(tick) })
	select {
	case <-cl.stop:
		t.Stop()
		return false
	case <-tick:
		return true
	}
}

// close stops the goroutines; the publisher first hands the engine what
// is queued (the leaves of the connections just closed) until ctx ends.
func (cl *cluster) close(ctx context.Context) {
	cl.procMu.Lock()
	cl.closed = true
	ready := cl.procReady
	cl.procReady = false
	cl.procMu.Unlock()
	if ready {
		if err := cl.bus.Unsubscribe(cl.procTopic); err != nil {
			cl.s.log.Warn("relay bus unsubscribe failed", "topic", cl.procTopic, "error", err)
		}
	}
	br := cl.lobby
	br.mu.Lock()
	lobby := br.live
	br.live = false
	br.mu.Unlock()
	if lobby {
		if err := cl.bus.Unsubscribe(br.topic); err != nil {
			cl.s.log.Warn("relay bus unsubscribe failed", "topic", br.topic, "error", err)
		}
	}
	cl.drainCtx = ctx
	stop := context.AfterFunc(ctx, cl.ctxCancel) // the deadline ends requests in progress
	close(cl.stop)
	cl.syncCancel()
	cl.wg.Wait()
	stop()
	cl.ctxCancel()
	cl.swept.Store(true)
	for {
		select {
		case m := <-cl.out:
			cl.took(m)
			cl.dropPub.Inc() // queued after the publisher drained
		default:
			return
		}
	}
}

// opCtx bounds one engine call of a request between processes.
func (cl *cluster) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(cl.ctx, opTimeout)
}

// goRun runs fn in a goroutine close waits for; false (fn not run) once
// close began.
func (cl *cluster) goRun(fn func()) bool {
	cl.procMu.Lock()
	defer cl.procMu.Unlock()
	if cl.closed {
		return false
	}
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); fn() }()
	return true
}

// publish hands queued messages to the bus in order, in batches, until
// stop; then it drains the queue within drainCtx.
func (cl *cluster) publish() {
	batch := make([]hub.TopicMessage, 0, busBatch)
	for {
		select {
		case <-cl.stop:
			cl.drain(batch)
			return
		case m := <-cl.out:
			batch = cl.send(context.Background(), append(batch[:0], cl.took(m)))
		}
	}
}

func (cl *cluster) drain(batch []hub.TopicMessage) {
	for cl.drainCtx.Err() == nil {
		select {
		case m := <-cl.out:
			batch = cl.send(cl.drainCtx, append(batch[:0], cl.took(m)))
		default:
			return
		}
	}
	// The shutdown deadline came first: close counts what is left.
}

// send fills batch with what else is queued and publishes it; it returns
// the batch emptied for reuse.
func (cl *cluster) send(ctx context.Context, batch []hub.TopicMessage) []hub.TopicMessage {
fill:
	for len(batch) < busBatch {
		select {
		case m := <-cl.out:
			batch = append(batch, cl.took(m))
		default:
			break fill
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	err := cl.bus.Publish(ctx, batch)
	cancel()
	if err != nil {
		cl.dropPub.Add(float64(len(batch)))
		cl.s.log.Warn("relay bus publish failed", "messages", len(batch), "error", err)
	} else {
		cl.published.Add(float64(len(batch)))
	}
	clear(batch) // drop the frames' references
	return batch[:0]
}

// enqueue queues a message without blocking; false when the queue is full.
func (cl *cluster) enqueue(topic string, data []byte) bool {
	if cl.swept.Load() {
		cl.dropPub.Inc() // closed: nobody publishes it
		return false
	}
	n := int64(len(data))
	if cl.queued.Add(n) > int64(cl.s.cfg.BusQueueBytes) {
		cl.queued.Add(-n)
		cl.dropFull.Inc()
		return false
	}
	select {
	case cl.out <- hub.TopicMessage{Topic: topic, Data: data}:
		return true
	default:
		cl.queued.Add(-n)
		cl.dropFull.Inc()
		return false
	}
}

// took accounts a message taken from out.
func (cl *cluster) took(m hub.TopicMessage) hub.TopicMessage {
	cl.queued.Add(-int64(len(m.Data)))
	return m
}

// enqueueWait queues a join or leave, waiting up to opTimeout for room.
func (cl *cluster) enqueueWait(topic string, data []byte) {
	if cl.swept.Load() {
		cl.dropPub.Inc() // closed: nobody publishes it
		return
	}
	t := time.NewTimer(opTimeout)
	defer t.Stop()
	cl.queued.Add(int64(len(data)))
	select {
	case cl.out <- hub.TopicMessage{Topic: topic, Data: data}:
	case <-t.C:
		cl.queued.Add(-int64(len(data)))
		cl.dropFull.Inc()
		cl.s.log.Warn("relay bus queue full: membership message dropped", "topic", topic)
	case <-cl.pubDone:
		cl.queued.Add(-int64(len(data)))
		cl.dropPub.Inc() // the publisher is gone: nobody publishes it
	}
}

// acquire holds the room's cluster state for a join: the first holder
// subscribes the topic and reads the remote members. release undoes it.
// Not for the lobby, whose topic is subscribed from start to close.
func (cl *cluster) acquire(name string) (*busRoom, error) {
	if name == lobbyName { // subscribed for the cluster's life, never held
		return nil, errs.New(errs.Invalid, "the lobby is not a room")
	}
	cl.mu.Lock()
	br := cl.rooms[name]
	if br == nil {
		br = cl.newBusRoom(name)
		cl.rooms[name] = br
	}
	br.refs++
	cl.mu.Unlock()
	br.subMu.Lock()
	defer br.subMu.Unlock()
	if !br.subscribed {
		ctx, cancel := cl.s.opCtx()
		err := cl.bus.Subscribe(ctx, br.topic)
		cancel()
		if err != nil {
			cl.mu.Lock()
			br.refs--
			cl.dropIdleLocked(br)
			cl.mu.Unlock()
			return nil, err
		}
		br.subscribed = true
		br.mu.Lock()
		br.live = true
		br.gen++
		br.mu.Unlock()
		// After subscribing: a join published meanwhile arrives by the bus.
		cl.sync(br)
	}
	return br, nil
}

// release lets go of a hold; the last one unsubscribes.
func (cl *cluster) release(br *busRoom) {
	cl.mu.Lock()
	br.refs--
	cl.mu.Unlock()
	br.subMu.Lock()
	defer br.subMu.Unlock()
	cl.mu.RLock()
	idle := br.refs == 0
	cl.mu.RUnlock()
	if !idle || !br.subscribed {
		return
	}
	if err := cl.bus.Unsubscribe(br.topic); err != nil {
		cl.s.log.Warn("relay bus unsubscribe failed", "topic", br.topic, "error", err)
	}
	br.subscribed = false
	br.mu.Lock()
	br.live = false
	br.gen++
	br.clearRemoteLocked()
	br.mu.Unlock()
	cl.mu.Lock()
	cl.dropIdleLocked(br)
	cl.mu.Unlock()
}

func (cl *cluster) dropIdleLocked(br *busRoom) {
	if br.refs == 0 && cl.rooms[br.name] == br && br != cl.lobby {
		delete(cl.rooms, br.name)
	}
}

func (cl *cluster) room(name string) *busRoom {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	return cl.rooms[name]
}

// held is room name's state while this process holds it (nil when not):
// the lobby's always (its bus messages are handled while it is live).
func (cl *cluster) held(name string) *busRoom {
	if name == lobbyName {
		return cl.lobby
	}
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	if br := cl.rooms[name]; br != nil && br.refs > 0 {
		return br
	}
	return nil
}

// lobbySynced reports whether the lobby's topic is subscribed and its
// remote members were synced from presence once.
func (cl *cluster) lobbySynced() bool { return cl.lobbyLive() && cl.lobby.syncs.Load() > 0 }

// lobbyLive reports whether the lobby's topic is subscribed.
func (cl *cluster) lobbyLive() bool {
	br := cl.lobby
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.live
}

// presenceEntry is the ChanInfo of a relay member's hub presence.
type presenceEntry struct {
	NodeID    string `json:"node_id"`
	Transport string `json:"transport"`
	Process   string `json:"process,omitempty"`
	Metadata  []byte `json:"metadata,omitempty"`
	// Parked marks a NodeId directory entry of a parked session.
	Parked bool `json:"parked,omitempty"`
}

// roomTransport is the room transport of a presence transport label.
func roomTransport(label string) string {
	if label == presenceTransport(transportISSUN) {
		return transportISSUN
	}
	return transportNative
}

// sync replaces the remote members with the room's hub presence (minus
// this process's), keeping changes the bus brought since the read began,
// and tells the local members what changed. It returns the session ids
// of this process's entries (nil, false when the read failed or the room
// was released meanwhile). Only the room's syncMu (and, for a first
// subscribe, its subMu) is held during the read: a release or a new
// subscription meanwhile (gen) voids the read.
//
// With a node registry, the entries of dead processes add no member, and
// the room's cleaner removes them once settled (deadToClean), on a
// goroutine of its own started after syncMu is released (startClean).
func (cl *cluster) sync(br *busRoom) (map[string]struct{}, bool) {
	var again bool
	own, clean, ok := cl.syncRead(br, &again)
	cl.startClean(br, clean)
	if again {
		cl.resyncSoon(br.name)
	}
	return own, ok
}

// resyncSoon has the sync loop sync room name now (nothing when it is
// released meanwhile).
func (cl *cluster) resyncSoon(name string) {
	cl.mu.Lock()
	cl.resync[name] = struct{}{}
	cl.mu.Unlock()
	select {
	case cl.resyncNow <- struct{}{}:
	default:
	}
}

// syncRead is sync under the room's syncMu; it also returns the entries
// of dead processes this process is to remove (marked as being removed:
// cleanPick), and sets *again when it dropped its pick because a cleanup
// of the channel ended during its read.
func (cl *cluster) syncRead(br *busRoom, again *bool) (map[string]struct{}, map[string]*hub.ClientInfo, bool) {
	br.syncMu.Lock()
	defer br.syncMu.Unlock()
	br.mu.Lock()
	gen, live := br.gen, br.live
	br.mu.Unlock()
	if !live {
		return nil, nil, false
	}
	// The channel's cleanups ended before the read (cleanEnter); every
	// return leaves as a pick would (cleanPick or cleanLeave).
	ended := cl.cleanEnter(br.topic)
	picked := false
	defer func() {
		if !picked {
			cl.cleanLeave(br.topic)
		}
	}()
	start := cl.s.cfg.Clock.Now()
	ctx, cancel := context.WithTimeout(cl.syncCtx, opTimeout)
	pres, err := cl.lister.Presence(ctx, br.topic)
	cancel()
	if err != nil {
		if cl.syncCtx.Err() != nil {
			return nil, nil, false // closing
		}
		cl.s.log.Warn("relay room presence read failed", "channel", br.topic, "error", err)
		return nil, nil, false
	}
	fresh := map[string]remoteMember{}
	own := map[string]struct{}{}
	for sid, info := range pres {
		var e presenceEntry
		if json.Unmarshal(info.ChanInfo, &e) != nil || e.Process == "" {
			continue
		}
		if e.Process == cl.origin {
			own[sid] = struct{}{}
			continue
		}
		id, err := strconv.ParseUint(e.NodeID, 10, 64)
		if err != nil {
			continue
		}
		fresh[sid] = remoteMember{node: wire.NodeID(id), sid: sid, user: info.UserID, transport: roomTransport(e.Transport),
			meta: e.Metadata, added: start, process: e.Process}
	}
	// Sessions being taken over here: their remote record goes when their
	// join here is done (forgetSilently), not with a leave.
	cl.s.mu.RLock()
	arriving := make(map[string]struct{}, len(cl.arriving))
	for sid := range cl.arriving {
		arriving[sid] = struct{}{}
	}
	cl.s.mu.RUnlock()
	var joined, left []remoteMember
	br.news.Lock()
	defer br.news.Unlock()
	// Entries of dead processes (liveness.go) add no member; read under
	// news, so a member dropped by the liveness goroutine stays dropped.
	v := cl.liveness()
	var stale map[string]deadEntry
	for sid, m := range fresh {
		if v.dead(m.process) {
			if stale == nil {
				stale = map[string]deadEntry{}
			}
			stale[sid] = deadEntry{process: m.process, info: pres[sid]}
			delete(fresh, sid)
		}
	}
	var died []remoteMember
	br.mu.Lock()
	if br.gen != gen || !br.live {
		br.mu.Unlock()
		return nil, nil, false
	}
	for sid, m := range br.remote {
		if m.handed && start.Sub(m.added) < goneHorizon {
			continue // handed over: its new process has not written its presence yet
		}
		if _, ok := arriving[sid]; ok {
			continue
		}
		if _, ok := own[sid]; ok {
			br.dropRemoteLocked(sid) // taken over here: a local member now, no news
			continue
		}
		if _, ok := fresh[sid]; !ok && (m.added.Before(start) || v.dead(m.process)) {
			br.dropRemoteLocked(sid)
			left = append(left, m)
			if v.dead(m.process) {
				died = append(died, m)
			}
		}
	}
	for sid, m := range fresh {
		if old, ok := br.remote[sid]; ok {
			if old.handed || old.process != m.process {
				// Another process holds its presence now (fresh has no
				// entry of this one): a handed member arrived there.
				old.process, old.handed = m.process, false
				br.remote[sid] = old // node and transport unchanged: the index holds
			}
			continue
		}
		if t, ok := br.gone[sid]; ok && !t.Before(start) {
			continue
		}
		br.putRemoteLocked(m)
		joined = append(joined, m)
	}
	for sid, t := range br.gone {
		if t.Before(start) {
			delete(br.gone, sid)
		}
	}
	br.mu.Unlock()
	br.syncs.Add(1)
	if len(died) > 0 {
		cl.live.died.Add(float64(len(died)))
		for _, m := range died {
			if v.cleanable(m.process) {
				cl.cleanDue(br, m.process)
			}
		}
	}
	cl.tell(br.name, joined, left)
	picked = true
	clean, redo := cl.cleanPick(br.topic, ended, cl.deadToClean(br, v, stale, own, fresh))
	*again = redo
	return own, clean, true
}

// syncLobby syncs the lobby's remote members from presence and writes
// again the presence (and bus join) of the local lobby members the read
// did not find: their write failed (the engine was down at their entry)
// or was lost. A member whose write completed after the read began is
// left alone (lobbySeq).
func (cl *cluster) syncLobby() {
	seq := cl.lobbySeq.Load()
	own, ok := cl.sync(cl.lobby)
	if !ok {
		return
	}
	for _, c := range *cl.s.lobby.snap.Load() {
		if cl.syncCtx.Err() != nil {
			return
		}
		if _, found := own[c.sid]; !found && !cl.s.lobbyRepair(c, seq) {
			return // the engine failed again: the next sync retries
		}
	}
}

// syncLoop syncs every room every SyncInterval (negative: never), and
// the rooms a reconnect of the engine resubscribed as soon as it says so.
func (cl *cluster) syncLoop() {
	every := cl.s.cfg.SyncInterval
	tick := make(chan struct{}, 1)
	var t clock.Timer
	arm := func() {
		if every >= 0 {
			t = cl.s.cfg.Clock.AfterFunc(every, func() {
				select {
				case tick <- struct{}{}:
				default:
				}
			})
		}
	}
	arm()
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		periodic := false
		select {
		case <-cl.stop:
			return
		case <-tick:
			periodic = true
		case <-cl.resyncNow:
		}
		cl.mu.Lock()
		list := make([]*busRoom, 0, len(cl.rooms))
		for name, br := range cl.rooms {
			if _, marked := cl.resync[name]; periodic || marked {
				list = append(list, br)
			}
		}
		clear(cl.resync)
		cl.mu.Unlock()
		for _, br := range list {
			if cl.syncCtx.Err() != nil {
				return
			}
			if br == cl.lobby {
				cl.syncLobby()
			} else {
				cl.sync(br) // nothing when released meanwhile
			}
		}
		if periodic {
			arm()
		}
	}
}

// putRemoteLocked adds the remote member m, or replaces the one of its
// session id (br.mu held). O(1): the NodeId counts and the cluster's
// ISSUN index change for m's NodeId only.
func (br *busRoom) putRemoteLocked(m remoteMember) {
	if old, ok := br.remote[m.sid]; ok {
		br.unindexLocked(old)
	}
	br.remote[m.sid] = m
	br.indexLocked(m)
}

// dropRemoteLocked removes the remote member of session id sid (br.mu
// held); false when unknown. O(1).
func (br *busRoom) dropRemoteLocked(sid string) (remoteMember, bool) {
	m, ok := br.remote[sid]
	if ok {
		delete(br.remote, sid)
		br.unindexLocked(m)
	}
	return m, ok
}

// clearRemoteLocked removes every remote member (the room's release).
func (br *busRoom) clearRemoteLocked() {
	for _, m := range br.remote {
		br.unindexLocked(m)
	}
	clear(br.remote)
}

func (br *busRoom) indexLocked(m remoteMember) {
	n, _ := br.ids.Load(m.node)
	c, _ := n.(int)
	br.ids.Store(m.node, c+1)
	br.n.Add(1)
	if br.transports == nil {
		br.transports = map[string]int{}
	}
	br.transports[m.transport]++
	if m.transport != transportISSUN {
		return
	}
	if br.issun == nil {
		br.issun = map[wire.NodeID]int{}
	}
	br.issun[m.node]++
	if br.issun[m.node] == 1 {
		br.cl.indexNode(br, m.node, true)
	}
}

func (br *busRoom) unindexLocked(m remoteMember) {
	if n, _ := br.ids.Load(m.node); n != nil && n.(int) > 1 {
		br.ids.Store(m.node, n.(int)-1)
	} else {
		br.ids.Delete(m.node)
	}
	br.n.Add(-1)
	if br.transports[m.transport]--; br.transports[m.transport] <= 0 {
		delete(br.transports, m.transport)
	}
	if m.transport != transportISSUN {
		return
	}
	if br.issun[m.node]--; br.issun[m.node] <= 0 {
		delete(br.issun, m.node)
		br.cl.indexNode(br, m.node, false)
	}
}

// indexNode adds br to (in) or removes it from the rooms of NodeId id in
// issunNodes.
func (cl *cluster) indexNode(br *busRoom, id wire.NodeID, in bool) {
	cl.idxMu.Lock()
	defer cl.idxMu.Unlock()
	set := cl.issunNodes[id]
	if in {
		if set == nil {
			set = map[*busRoom]struct{}{}
			cl.issunNodes[id] = set
		}
		set[br] = struct{}{}
		return
	}
	delete(set, br)
	if len(set) == 0 {
		delete(cl.issunNodes, id)
	}
}

// issunHolder is a room held here with a remote ISSUN member of NodeId
// id (nil when none): one map read under a read lock.
func (cl *cluster) issunHolder(id wire.NodeID) *busRoom {
	cl.idxMu.RLock()
	defer cl.idxMu.RUnlock()
	for br := range cl.issunNodes[id] {
		return br
	}
	return nil
}

// remoteCount counts the remote members.
func (br *busRoom) remoteCount() int {
	if br == nil {
		return 0
	}
	return int(br.n.Load())
}

// hasRemote reports whether a remote member has NodeId id.
func (br *busRoom) hasRemote(id wire.NodeID) bool {
	if br == nil {
		return false
	}
	_, ok := br.ids.Load(id)
	return ok
}

// remoteMembers lists the remote members, by session id.
func (br *busRoom) remoteMembers() []remoteMember {
	if br == nil {
		return nil
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	out := make([]remoteMember, 0, len(br.remote))
	for _, m := range br.remote {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b remoteMember) int { return strings.Compare(a.sid, b.sid) })
	return out
}

// otherTransport reports whether a remote member has a transport other
// than transport: O(1) (the counts by transport).
func (br *busRoom) otherTransport(transport string) bool {
	if br == nil {
		return false
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	return len(br.remote) > br.transports[transport]
}

// forward publishes an event frame that r's local fan-out just
// delivered, when another process has members it may be for. It never
// blocks; frame is not modified afterwards.
func (r *room) forward(frame []byte, unrel bool, targets []wire.NodeID) {
	br := r.bus
	if br == nil {
		return
	}
	if br.n.Load() == 0 {
		return
	}
	if len(targets) > 0 && !slices.ContainsFunc(targets, br.hasRemote) {
		return
	}
	kind := byte(busEvent)
	if unrel {
		kind = busDatagram
	}
	cl := br.cl
	cl.enqueue(br.topic, busFrame(kind, r.transport, cl.origin, frame))
}

// forwardTargeted publishes an ISSUN targeted event for a NodeId not
// connected here when it is a remote ISSUN member of the lobby or of a
// room this process holds (whichever room c is in), else sends it to the
// process the NodeId directory names (forwardByDirectory); false when
// nobody is known to have it. A full queue drops the event (counted as
// bus_queue_full, once) and still returns true: the target is known, so
// not an unknown one.
func (c *conn) forwardTargeted(target wire.NodeID, frame []byte) bool {
	cl := c.srv.cluster
	if cl == nil {
		return false
	}
	br := cl.issunHolder(target)
	if br == nil {
		return cl.forwardByDirectory(target, frame)
	}
	cl.enqueue(br.topic, busFrame(busEvent, transportISSUN, cl.origin, frame))
	return true
}

// announce publishes c joining (busJoin) or leaving (busLeave) r.
func (cl *cluster) announce(kind byte, r *room, c *conn) {
	m := c.member()
	bm := &busMember{Node: uint64(m.NodeID), SID: c.sid, User: m.User, Meta: m.Metadata, Label: presenceTransport(c.label)}
	cl.enqueueWait(r.channel, busMemberFrame(kind, r.transport, cl.origin, bm))
}

// handle receives a bus message (on the engine's reader goroutine).
func (cl *cluster) handle(topic string, data []byte) {
	m, err := decodeBusMessage(data)
	if err != nil {
		cl.dropBad.Inc()
		cl.s.log.Warn("relay bus message dropped", "topic", topic, "error", err)
		return
	}
	if m.origin == cl.origin {
		return
	}
	cl.received.Inc()
	if topic == cl.procTopic {
		cl.handleProcess(m)
		return
	}
	name, ok := strings.CutPrefix(topic, ChannelPrefix)
	br := cl.held(name)
	if !ok || br == nil {
		return // unsubscribed meanwhile
	}
	switch m.kind {
	case busEvent, busDatagram:
		cl.deliver(name, m)
	case busJoin, busLeave:
		rm := remoteMember{node: wire.NodeID(m.member.Node), sid: m.member.SID, user: m.member.User,
			transport: m.transport, meta: m.member.Meta, added: cl.s.cfg.Clock.Now(), process: m.origin}
		if f := cl.beforeNews.Load(); f != nil {
			(*f)()
		}
		br.news.Lock()
		defer br.news.Unlock()
		// Read under news, as dropDead judges: a check storing a view
		// that takes the origin for dead either ran before (the join is
		// ignored here) or runs after (it drops the member).
		if m.kind == busJoin && cl.liveness().dead(m.origin) {
			return // late news from a process already judged dead: it would stay a member forever
		}
		br.mu.Lock()
		if !br.live {
			br.mu.Unlock()
			return // released meanwhile
		}
		old, known := br.remote[rm.sid]
		if m.kind == busJoin && known {
			// A member already known: a session another process took
			// over joins there, or a lobby member's user changed (a
			// later SwitchboardAuth), no news.
			old.process, old.handed, old.user = m.origin, false, rm.user
			br.remote[rm.sid] = old // node and transport unchanged: the index holds
		}
		if m.kind == busLeave {
			// Kept even when unknown: a sync whose presence read was in
			// flight must not bring the member back.
			br.gone[rm.sid] = rm.added
			br.pruneGoneLocked(rm.added)
		}
		switch {
		case m.kind == busJoin && !known:
			br.putRemoteLocked(rm)
			delete(br.gone, rm.sid)
		case m.kind == busLeave && known:
			br.dropRemoteLocked(rm.sid)
		default:
			br.mu.Unlock()
			return
		}
		br.mu.Unlock()
		if m.kind == busJoin {
			cl.tell(name, []remoteMember{rm}, nil)
		} else {
			cl.tell(name, nil, []remoteMember{rm})
		}
	}
}

// deliver hands an event from another process to the local members of
// room name, by the rules of the local fan-out.
func (cl *cluster) deliver(name string, m *busMessage) {
	s := cl.s
	r := s.localRoom(name)
	if r == nil || r.transport != m.transport {
		cl.dropNoRoom.Inc()
		return
	}
	frame := m.frame
	var version uint8 = wire.VersionNative
	if r.transport == transportISSUN {
		version = wire.VersionISSUN
	}
	h, err := wire.ParseHeader(frame, version, s.cfg.MaxFrame)
	if err == nil && int(h.Length) != len(frame)-wire.HeaderSize {
		err = wire.ErrTruncated
	}
	if err != nil {
		cl.dropBad.Inc()
		return
	}
	start := s.cfg.Clock.Now()
	if r.transport == transportISSUN {
		v, err := wire.ParseEvent(frame[wire.HeaderSize:], s.cfg.MaxTypeName)
		if err != nil {
			cl.dropBad.Inc()
			return
		}
		switch v.Scope.Kind {
		case wire.ScopeBroadcast:
			for _, o := range *r.snap.Load() {
				o.send(frame)
			}
		case wire.ScopeTargeted:
			// By the local rule: whatever room the target is in now (the
			// sender's process may know an older membership).
			if t := s.node(v.Scope.Target); t != nil && t.issunReceiver() {
				t.send(frame)
			} else {
				s.metrics.drops.WithLabelValues(dropUnknownTarget).Inc()
			}
		}
	} else {
		unrel := m.kind == busDatagram
		t := wire.FrameEvent
		if unrel {
			t = wire.FrameDatagram
		}
		if h.Type != t {
			cl.dropBad.Inc()
			return
		}
		msg, err := wire.DecodeMessage(t, frame[wire.HeaderSize:])
		if err != nil {
			cl.dropBad.Inc()
			return
		}
		ev := msg.(*wire.NativeEvent)
		binary.LittleEndian.PutUint32(frame[wire.HeaderSize:], r.id) // this process's handle
		for _, o := range *r.snap.Load() {
			if len(ev.Targets) > 0 && !slices.Contains(ev.Targets, o.id) {
				continue
			}
			if unrel {
				o.pushDatagram(frame)
			} else {
				o.send(frame)
			}
		}
	}
	s.metrics.fanout.Observe(time.Since(start).Seconds())
}

// tell sends the local members of room name the remote joins and leaves.
func (cl *cluster) tell(name string, joined, left []remoteMember) {
	if len(joined) == 0 && len(left) == 0 {
		return
	}
	if name == lobbyName {
		return // the ISSUN lobby has no presence news
	}
	s := cl.s
	s.mu.RLock()
	r := s.rooms[name]
	s.mu.RUnlock()
	if r == nil {
		return
	}
	r.notifying(func() {
		members := *r.snap.Load()
		if r.transport == transportISSUN {
			s.tellISSUNPresence(members, name, remoteIDs(joined), remoteIDs(left))
			return
		}
		p := &wire.Presence{Handle: r.id, Leaves: remoteIDs(left)}
		for _, m := range joined {
			p.Joins = append(p.Joins, m.wireMember())
		}
		frame := wire.AppendMessage(nil, p)
		for _, o := range members {
			_ = o.native.ctlQ.Enqueue(frame)
		}
	})
}

func (m remoteMember) wireMember() wire.Member {
	return wire.Member{NodeID: m.node, User: m.user, Metadata: m.meta}
}

func remoteIDs(list []remoteMember) []wire.NodeID {
	if len(list) == 0 {
		return nil
	}
	ids := make([]wire.NodeID, len(list))
	for i, m := range list {
		ids[i] = m.node
	}
	return ids
}

// remoteRoomExists reports whether a process has members of room name.
// An engine failure wraps hub.ErrRetryLater: the JOIN may be retried.
func (cl *cluster) remoteRoomExists(name string) (bool, error) {
	if cl == nil {
		return false, nil
	}
	ctx, cancel := cl.s.opCtx()
	defer cancel()
	pres, err := cl.lister.Presence(ctx, ChannelPrefix+name)
	if err != nil {
		if !errors.Is(err, hub.ErrRetryLater) {
			err = fmt.Errorf("%w: %w", hub.ErrRetryLater, err)
		}
		return false, fmt.Errorf("relay: room %q on other processes: %w", name, err)
	}
	return len(pres) > 0, nil
}
