package delivery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	frames      prometheus.Counter
	batches     prometheus.Counter
	bytes       prometheus.Counter
	overflows   prometheus.Counter
	writeErrors prometheus.Counter
	stalls      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_delivery_" + name, Help: help})
	}
	m := &metrics{
		frames:      c("frames_total", "Frames (protocol messages) written to connections."),
		batches:     c("batches_total", "Batch writes to connections (several frames may share one)."),
		bytes:       c("bytes_total", "Frame bytes written to connections."),
		overflows:   c("slow_disconnects_total", "Connections whose outgoing queue overflowed (slow consumers)."),
		writeErrors: c("write_errors_total", "Batch writes that failed."),
		stalls:      c("stalled_writers_total", "Writers detached because one write blocked past the stall limit."),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.frames, m.batches, m.bytes, m.overflows, m.writeErrors, m.stalls} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
