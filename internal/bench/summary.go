package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// summaryResult holds the fields of any result kind that the summary tables use.
type summaryResult struct {
	Kind           string  `json:"kind"`
	Label          string  `json:"label"`
	Protocol       string  `json:"protocol"`
	Requested      int     `json:"conns_requested"`
	Established    int64   `json:"established"`
	Failed         uint64  `json:"failed"`
	ConnFailed     uint64  `json:"conn_failed"`
	ConnectRate    float64 `json:"connect_rate"`
	RSSPerConn     float64 `json:"server_rss_per_conn"`
	RSSAfter       uint64  `json:"server_rss_after"`
	ClientCPURamp  float64 `json:"client_cpu_percent_ramp"`
	ServerCPURamp  float64 `json:"server_cpu_percent_ramp"`
	Subscribers    int     `json:"subscribers"`
	OfferedRate    float64 `json:"offered_rate"`
	PublishRate    float64 `json:"publish_rate"`
	Published      uint64  `json:"published"`
	Expected       uint64  `json:"expected_deliveries"`
	Delivered      uint64  `json:"delivered"`
	DeliveryRate   float64 `json:"deliveries_per_second"`
	Latency        Latency `json:"latency"`
	Lost           uint64  `json:"lost"`
	LostDisconnect uint64  `json:"lost_on_disconnected"`
	Duplicates     uint64  `json:"duplicates"`
	Disconnects    []Count `json:"disconnects"`
	ServerCPU      float64 `json:"server_cpu_percent"`
	ClientCPU      float64 `json:"client_cpu_percent"`
	Throughput     float64 `json:"replies_per_second"`
	Command        string  `json:"command"`
	Machine        Machine `json:"machine"`
}

// writeSummary renders Markdown tables of the results, one row per scenario and one column
// group per label in order of first appearance; with two labels it adds the ratio
// second/first (the first label is the reference, e.g. the peer server).
func writeSummary(w io.Writer, rs []summaryResult) {
	var labels []string
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Label] {
			seen[r.Label] = true
			labels = append(labels, r.Label)
		}
	}
	type key struct {
		kind string
		x    float64
		y    float64
	}
	by := map[key]map[string]summaryResult{}
	var keys []key
	for _, r := range rs {
		var k key
		switch r.Kind {
		case "conns":
			k = key{"conns", float64(r.Requested), 0}
		case "fanout":
			k = key{"fanout", float64(r.Subscribers), r.OfferedRate}
		case "rpc":
			k = key{"rpc:" + r.Command, 0, 0}
		default:
			continue
		}
		if by[k] == nil {
			by[k] = map[string]summaryResult{}
			keys = append(keys, k)
		}
		by[k][r.Label] = r // a repeated run replaces the earlier one
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		if keys[i].y != keys[j].y {
			return keys[i].y < keys[j].y
		}
		return keys[i].x < keys[j].x
	})
	header := func(title string, cols ...string) {
		fmt.Fprintf(w, "\n%s\n\n| scenario |", title)
		for _, c := range cols {
			for _, l := range labels {
				fmt.Fprintf(w, " %s %s |", l, c)
			}
			if len(labels) == 2 {
				fmt.Fprintf(w, " ratio %s |", c)
			}
		}
		fmt.Fprint(w, "\n|---|")
		n := len(cols) * len(labels)
		if len(labels) == 2 {
			n += len(cols)
		}
		fmt.Fprintln(w, strings.Repeat("---:|", n))
	}
	row := func(name string, m map[string]summaryResult, cols ...func(summaryResult) (float64, string)) {
		fmt.Fprintf(w, "| %s |", name)
		for _, col := range cols {
			var vals []float64
			for _, l := range labels {
				r, ok := m[l]
				if !ok {
					fmt.Fprint(w, " – |")
					vals = append(vals, 0)
					continue
				}
				v, s := col(r)
				vals = append(vals, v)
				fmt.Fprintf(w, " %s |", s)
			}
			if len(labels) == 2 {
				if vals[0] != 0 && vals[1] != 0 {
					fmt.Fprintf(w, " %.2f |", vals[1]/vals[0])
				} else {
					fmt.Fprint(w, " – |")
				}
			}
		}
		fmt.Fprintln(w)
	}
	kb := func(r summaryResult) (float64, string) {
		return r.RSSPerConn, fmt.Sprintf("%.1f KB", r.RSSPerConn/1024)
	}
	rate := func(r summaryResult) (float64, string) {
		return r.ConnectRate, fmt.Sprintf("%.0f/s (%d failed)", r.ConnectRate, r.Failed)
	}
	deliv := func(r summaryResult) (float64, string) {
		extra := ""
		if r.Lost+r.LostDisconnect+r.Duplicates > 0 || len(r.Disconnects) > 0 {
			extra = fmt.Sprintf(" (lost %d+%d, dup %d)", r.Lost, r.LostDisconnect, r.Duplicates)
		}
		return r.DeliveryRate, fmt.Sprintf("%.0f%s", r.DeliveryRate, extra)
	}
	p := func(name string, f func(Latency) float64) func(summaryResult) (float64, string) {
		return func(r summaryResult) (float64, string) {
			v := f(r.Latency)
			return v, fmt.Sprintf("%.2f", v)
		}
	}
	cpu := func(r summaryResult) (float64, string) {
		return r.ClientCPU, fmt.Sprintf("%.0f %%", r.ClientCPU)
	}

	var conns, fanMax, fanRate, rpc []key
	for _, k := range keys {
		switch {
		case k.kind == "conns":
			conns = append(conns, k)
		case k.kind == "fanout" && k.y == 0:
			fanMax = append(fanMax, k)
		case k.kind == "fanout":
			fanRate = append(fanRate, k)
		default:
			rpc = append(rpc, k)
		}
	}
	if len(conns) > 0 {
		header("Memory per idle subscribed connection (server RSS growth / connections) and connect rate", "RSS/conn", "connect rate")
		for _, k := range conns {
			row(fmt.Sprintf("%.0f conns", k.x), by[k], kb, rate)
		}
	}
	if len(fanMax) > 0 {
		header("Fan-out to one channel, API publishers publishing as fast as they can", "deliveries/s", "p99 ms", "client CPU")
		for _, k := range fanMax {
			row(fmt.Sprintf("%.0f subscribers", k.x), by[k], deliv, p("p99", func(l Latency) float64 { return l.P99 }), cpu)
		}
	}
	if len(fanRate) > 0 {
		header("Latency at a fixed offered load (ms)", "p50", "p99", "p99.9", "max")
		for _, k := range fanRate {
			row(fmt.Sprintf("%.0f subs × %.0f msg/s = %.0f deliveries/s", k.x, k.y, k.x*k.y), by[k],
				p("p50", func(l Latency) float64 { return l.P50 }), p("p99", func(l Latency) float64 { return l.P99 }),
				p("p99.9", func(l Latency) float64 { return l.P999 }), p("max", func(l Latency) float64 { return l.Max }))
		}
	}
	if len(rpc) > 0 {
		header("Command round trips, 10 connections in closed loop", "replies/s", "p50 ms", "p99 ms")
		for _, k := range rpc {
			row(strings.TrimPrefix(k.kind, "rpc:"), by[k], func(r summaryResult) (float64, string) {
				return r.Throughput, fmt.Sprintf("%.0f", r.Throughput)
			}, p("p50", func(l Latency) float64 { return l.P50 }), p("p99", func(l Latency) float64 { return l.P99 }))
		}
	}
}
