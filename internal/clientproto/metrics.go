package clientproto

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Method label values; anything else is "unknown".
var methodNames = []string{"connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats",
	"history", "ping", "send", "rpc", "refresh", "sub_refresh", "pong", "unknown"}

type metrics struct {
	commands      *prometheus.CounterVec
	commandTime   *prometheus.HistogramVec
	errors        *prometheus.CounterVec
	messagesIn    prometheus.Counter
	disconnects   *prometheus.CounterVec
	skippedBinary prometheus.Counter
	// insufficient counts subscriptions found to have lost publications.
	insufficient *prometheus.CounterVec
	timeouts     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_client_commands_total", Help: "Client protocol commands by method.",
		}, []string{"method"}),
		commandTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchboard_client_command_duration_seconds", Help: "Client command handling latency by method.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_client_command_errors_total", Help: "Client command error replies by method and code.",
		}, []string{"method", "code"}),
		messagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_client_messages_received_total", Help: "Transport messages received from clients.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_client_disconnects_total", Help: "Server-initiated disconnects by code.",
		}, []string{"code"}),
		skippedBinary: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_client_binary_skipped_total", Help: "Binary publications left out of history or recovery replies to JSON clients.",
		}),
		insufficient: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_client_insufficient_state_total", Help: "Subscriptions that lost publications (offset gap or behind the stream top), by how it was found.",
		}, []string{"found_by"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_client_command_timeouts_total", Help: "Client commands that ran out of their deadline, by method.",
		}, []string{"method"}),
	}
	for _, name := range methodNames {
		m.commands.WithLabelValues(name)
		m.commandTime.WithLabelValues(name)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.commands, m.commandTime, m.errors, m.messagesIn, m.disconnects, m.skippedBinary, m.insufficient, m.timeouts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// codeLabel bounds the code label: server codes are a known set, any
// other (API-supplied) code is "other".
func codeLabel(code uint32) string {
	if knownCode(code) {
		return strconv.FormatUint(uint64(code), 10)
	}
	return "other"
}
