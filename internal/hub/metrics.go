package hub

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type hubMetrics struct {
	publications prometheus.Counter
	deliveries   prometheus.Counter
	// undeliverable counts subscribers a push could not be encoded for.
	undeliverable prometheus.Counter
	brokerOps     *prometheus.CounterVec
	brokerTime    *prometheus.HistogramVec
}

func newHubMetrics(reg prometheus.Registerer, h *Hub) (*hubMetrics, error) {
	m := &hubMetrics{
		publications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_hub_publications_total", Help: "Publications fanned out to local subscribers.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_hub_deliveries_total", Help: "Pushes queued to subscribers by fan-out.",
		}),
		undeliverable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_hub_undeliverable_total", Help: "Subscribers a push could not be encoded for (binary data to a JSON client).",
		}),
		brokerOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_broker_operations_total", Help: "Broker operations by kind and result.",
		}, []string{"op", "result"}),
		brokerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchboard_broker_operation_seconds", Help: "Broker operation latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
	}
	if reg == nil {
		return m, nil
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_connections", Help: "Connected clients, relay sessions included."},
			func() float64 { return float64(h.NumClients()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_subscriptions", Help: "Local channel subscriptions."},
			func() float64 { return float64(h.NumSubscriptions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_channels", Help: "Channels with local subscribers."},
			func() float64 { return float64(h.NumChannels()) }),
	}
	for _, c := range append(gauges, m.publications, m.deliveries, m.undeliverable, m.brokerOps, m.brokerTime) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *hubMetrics) observeBroker(op string, start time.Time, err error) {
	m.brokerTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.brokerOps.WithLabelValues(op, result).Inc()
}
