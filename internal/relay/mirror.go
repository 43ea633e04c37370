package relay

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Spectator mirroring: with Mirror.Enabled, the room-wide events (not
// targeted ones) that members connected here send are published, at most
// Mirror.Rate per second per room (burst Mirror.Burst), to the hub channel
// relay:R, so WebSocket clients subscribed to it watch the game. The
// fan-out only takes a token and queues the frame (never blocking); one
// goroutine decodes and publishes. Events over the rate, or finding the
// queue full, are dropped and counted. With several processes each
// mirrors its own members' events, so a room's cap is per process.

// Defaults of MirrorConfig.
const (
	DefaultMirrorRate  = 10
	DefaultMirrorBurst = 20
	DefaultMirrorQueue = 1024
)

// Drop reasons of the mirror (switchboard_relay_drops_total).
const (
	dropMirrorRate    = "mirror_rate"
	dropMirrorQueue   = "mirror_queue_full"
	dropMirrorPublish = "mirror_publish_failed"
)

// MirrorConfig configures spectator mirroring.
type MirrorConfig struct {
	Enabled bool
	// Rate is the events per second mirrored per room, Burst the bucket.
	Rate  float64
	Burst int
	// Queue bounds the events waiting to be published.
	Queue int
	// RoomPrefix limits mirroring to rooms whose names start with it.
	RoomPrefix string
}

// MirrorPublisher publishes into a hub channel (*hub.Hub).
type MirrorPublisher interface {
	Publish(ctx context.Context, channel string, data []byte, info *hub.ClientInfo, tags map[string]string) (hub.StreamPosition, error)
}

// MirroredEvent is the JSON data of a mirror publication. NodeIds are
// decimal strings (they exceed JavaScript's integers); Payload is the
// event's payload bytes (base64 in JSON): an ISSUN event's bincode body,
// a native event's application payload.
type MirroredEvent struct {
	Sender   string `json:"sender"`
	Type     string `json:"type,omitempty"` // ISSUN type name
	OpCode   uint32 `json:"op,omitempty"`   // native op code
	Sequence uint64 `json:"seq"`
	Reliable bool   `json:"reliable"`
	Payload  []byte `json:"payload"`
}

type mirrorItem struct {
	channel   string
	transport string
	frame     []byte
	unrel     bool
}

// mirror is the Server's spectator mirror; nil when disabled.
type mirror struct {
	s    *Server
	pub  MirrorPublisher
	q    chan mirrorItem
	stop chan struct{}
	wg   sync.WaitGroup
	// ctx bounds the publishes; cancelled when Shutdown's context ends.
	ctx    context.Context
	cancel context.CancelFunc

	published                     prometheus.Counter
	dropRate, dropQueue, dropPubl prometheus.Counter
}

// roomMirror is one room's mirror rate.
type roomMirror struct {
	m      *mirror
	mu     sync.Mutex
	bucket bucket
}

func newMirror(s *Server) (*mirror, error) {
	m := &mirror{s: s, pub: s.cfg.MirrorTo, q: make(chan mirrorItem, s.cfg.Mirror.Queue), stop: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.published = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_relay_mirror_published_total",
		Help: "Room events mirrored to their hub channel for spectators."})
	if reg := s.cfg.Registerer; reg != nil {
		if err := reg.Register(m.published); err != nil {
			return nil, err
		}
	}
	m.dropRate = s.metrics.drops.WithLabelValues(dropMirrorRate)
	m.dropQueue = s.metrics.drops.WithLabelValues(dropMirrorQueue)
	m.dropPubl = s.metrics.drops.WithLabelValues(dropMirrorPublish)
	return m, nil
}

// forRoom returns the mirror state of a new room (nil: not mirrored).
func (m *mirror) forRoom(name string) *roomMirror {
	if m == nil || !strings.HasPrefix(name, m.s.cfg.Mirror.RoomPrefix) {
		return nil
	}
	return &roomMirror{m: m, bucket: newBucket(m.s.cfg.Mirror.Rate, m.s.cfg.Mirror.Burst, m.s.cfg.Clock.Now())}
}

// offer queues a room-wide event of r for the mirror when the room's rate
// allows; it never blocks.
func (rm *roomMirror) offer(r *room, frame []byte, unrel bool) {
	m := rm.m
	rm.mu.Lock()
	ok, _ := rm.bucket.take(m.s.cfg.Clock.Now())
	rm.bucket.debt = 0 // a spectator cap, not abuse: no debt
	rm.mu.Unlock()
	if !ok {
		m.dropRate.Inc()
		return
	}
	select {
	case m.q <- mirrorItem{channel: r.channel, transport: r.transport, frame: frame, unrel: unrel}:
	default:
		m.dropQueue.Inc()
	}
}

func (m *mirror) start() {
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.run() }()
}

// close stops the publisher; what is queued is dropped. A publish in
// flight may finish until ctx ends, then it is cancelled.
func (m *mirror) close(ctx context.Context) {
	close(m.stop)
	stop := context.AfterFunc(ctx, m.cancel)
	m.wg.Wait()
	stop()
	m.cancel()
	m.dropQueue.Add(float64(len(m.q))) // left unpublished at shutdown
}

func (m *mirror) run() {
	for {
		select {
		case <-m.stop:
			return
		case it := <-m.q:
			m.publish(it)
		}
	}
}

func (m *mirror) publish(it mirrorItem) {
	ev, ok := mirroredEvent(it)
	if !ok { // the fan-out parsed it already: should not happen
		m.dropPubl.Inc()
		return
	}
	data, _ := json.Marshal(ev) // plain fields: never fails
	ctx, cancel := context.WithTimeout(m.ctx, opTimeout)
	defer cancel()
	if _, err := m.pub.Publish(ctx, it.channel, data, nil, nil); err != nil {
		m.dropPubl.Inc()
		if m.ctx.Err() == nil {
			m.s.log.Warn("relay mirror publish failed", "channel", it.channel, "error", err)
		}
		return
	}
	m.published.Inc()
}

// mirroredEvent decodes a queued frame into its mirror publication.
func mirroredEvent(it mirrorItem) (MirroredEvent, bool) {
	body := it.frame[wire.HeaderSize:]
	if it.transport == transportISSUN {
		v, err := wire.ParseEvent(body, len(body))
		if err != nil {
			return MirroredEvent{}, false
		}
		return MirroredEvent{Sender: strconv.FormatUint(uint64(v.Metadata.Sender), 10), Type: string(v.TypeName),
			Sequence: v.Metadata.Sequence, Reliable: true, Payload: v.Payload}, true
	}
	t := wire.FrameEvent
	if it.unrel {
		t = wire.FrameDatagram
	}
	msg, err := wire.DecodeMessage(t, body)
	if err != nil {
		return MirroredEvent{}, false
	}
	ev := msg.(*wire.NativeEvent)
	return MirroredEvent{Sender: strconv.FormatUint(uint64(ev.Sender), 10), OpCode: ev.OpCode, Sequence: ev.Sequence,
		Reliable: !it.unrel, Payload: ev.Payload}, true
}

// extend carries an event that r's local fan-out just delivered further:
// to the members on other processes (cluster.go) and, room-wide ones, to
// the spectators. It never blocks; frame is not modified afterwards.
func (r *room) extend(frame []byte, unrel bool, targets []wire.NodeID) {
	r.forward(frame, unrel, targets)
	if r.mirror != nil && len(targets) == 0 {
		r.mirror.offer(r, frame, unrel)
	}
}
