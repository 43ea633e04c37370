package relay

import "github.com/prometheus/client_golang/prometheus"

// Label values of the relay's metrics (bounded: never a client's value).
const (
	transportISSUN  = "issun"
	transportNative = "native"

	reliable   = "reliable"
	unreliable = "unreliable"

	dropRateLimited     = "rate_limited"
	dropUnknownTarget   = "unknown_target"
	dropUnauthenticated = "unauthenticated"
	dropQueueClosed     = "queue_closed"
	dropUnknownControl  = "unknown_control"
	dropNotInRoom       = "not_in_room"
	dropDatagramRing    = "datagram_ring"

	handshakeOK          = "ok"
	handshakeFull        = "server_full"
	handshakeDuplicate   = "duplicate_node"
	handshakeBad         = "bad_handshake"
	handshakeTimeout     = "timeout"
	handshakeUnauthorize = "unauthorized"
	handshakeShutdown    = "shutdown"
	handshakeResume      = "resume_refused"
	handshakeIPLimit     = "ip_limit"
	// handshakeUnavailable: a resume needed the engine, which was down.
	handshakeUnavailable = "unavailable"
)

type metrics struct {
	connections   *prometheus.GaugeVec
	rooms         prometheus.Gauge
	eventsIn      *prometheus.CounterVec
	deliveries    prometheus.Counter
	drops         *prometheus.CounterVec
	fanout        prometheus.Histogram
	handshakes    *prometheus.CounterVec
	disconnects   *prometheus.CounterVec
	controlEvents prometheus.Counter
	rtt           prometheus.Histogram
	parked        prometheus.Gauge

	// Children of the vectors above resolved once: the per-event path
	// must not hash label values.
	inReliable      prometheus.Counter
	inUnreliable    prometheus.Counter
	dropNotInRoom   prometheus.Counter
	dropRateLimited prometheus.Counter
	dropRing        prometheus.Counter
	dropQueueClosed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "switchboard_relay_"
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "connections", Help: "Relay connections past their handshake, by transport."}, []string{"transport"}),
		rooms:       prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "rooms", Help: "Relay rooms with members on this process, or with a JOIN claiming its presence (across processes)."}),
		eventsIn:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "events_in_total", Help: "Events received from clients, by reliability."}, []string{"reliability"}),
		deliveries:  prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "deliveries_total", Help: "Events queued to receiving connections."}),
		drops:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "drops_total", Help: "Events or deliveries dropped, by reason."}, []string{"reason"}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{Name: ns + "fanout_seconds", Help: "Time from an event's arrival to the end of its fan-out to the receivers' queues.",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05}}),
		handshakes:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "handshakes_total", Help: "Relay handshakes, by result."}, []string{"result"}),
		disconnects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "disconnects_total", Help: "Connections closed by the server, by reason."}, []string{"reason"}),
		controlEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "control_events_total", Help: "ISSUN control events (auth, join, leave) handled."}),
		parked:        prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "parked_sessions", Help: "Native sessions lost and waiting for a resume within the grace window."}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: ns + "heartbeat_rtt_seconds", Help: "Round-trip time of native heartbeats.",
			Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1}}),
	}
	for _, t := range []string{transportISSUN, transportNative, transportWebTransport} {
		m.connections.WithLabelValues(t) // exported at 0 before the first client
	}
	m.inReliable, m.inUnreliable = m.eventsIn.WithLabelValues(reliable), m.eventsIn.WithLabelValues(unreliable)
	m.dropNotInRoom = m.drops.WithLabelValues(dropNotInRoom)
	m.dropRateLimited = m.drops.WithLabelValues(dropRateLimited)
	m.dropRing = m.drops.WithLabelValues(dropDatagramRing)
	m.dropQueueClosed = m.drops.WithLabelValues(dropQueueClosed)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.rooms, m.eventsIn, m.deliveries, m.drops, m.fanout, m.handshakes, m.disconnects, m.controlEvents, m.rtt, m.parked} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
