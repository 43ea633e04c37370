package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// ConnsCmd is `switchboard bench conns`: open N connections, each subscribed to K channels,
// hold them, and report connect rate, failures and the server's memory per connection.
type ConnsCmd struct {
	ClientFlags `embed:""`

	Conns    int           `help:"Connections to open (N)." short:"n" default:"1000"`
	Subs     int           `help:"Channels each connection subscribes to (K)." default:"1"`
	Channels int           `help:"Distinct channels; connection i subscribes to channels (i*K+j) mod this." default:"1000"`
	Prefix   string        `help:"Channel name prefix; channel names are prefix + number." default:"bench:ch"`
	Settle   time.Duration `help:"Wait after the ramp before the memory sample." default:"3s"`

	AwaitMarker   bool          `help:"After the ramp and --settle, wait until every open connection has received one publication (the marker, a stamped payload {\"t\":<unix ns>,…}) and report when the last one got it; the hold follows. For runs split over several processes: timestamps are unix nanoseconds of this machine's clock."`
	ReadyFile     string        `help:"Create this file (holding the established count) once the ramp and --settle are done, so a coordinating script knows when to publish the marker." type:"path"`
	MarkerTimeout time.Duration `help:"How long --await-marker waits for the marker." default:"2m"`
}

// ConnsResult is the outcome of a conns run; byte counts are bytes, rates per second.
type ConnsResult struct {
	Kind           string    `json:"kind"`
	Label          string    `json:"label,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	URL            string    `json:"url"`
	Protocol       string    `json:"protocol"`
	Requested      int       `json:"conns_requested"`
	SubsPerConn    int       `json:"subs_per_conn"`
	Established    int64     `json:"established"`
	Failed         uint64    `json:"failed"`
	Errors         []Count   `json:"errors,omitempty"`
	ConnectSeconds float64   `json:"connect_seconds"`
	ConnectRate    float64   `json:"connect_rate"`
	ConnectLatency Latency   `json:"connect_latency"`
	HeldSeconds    float64   `json:"held_seconds"`
	StillOpen      int64     `json:"still_open"`
	Disconnects    []Count   `json:"disconnects,omitempty"`
	ServerPings    uint64    `json:"server_pings"`

	ServerRSSBefore uint64  `json:"server_rss_before,omitempty"`
	ServerRSSAfter  uint64  `json:"server_rss_after,omitempty"`
	ServerRSSMax    uint64  `json:"server_rss_max,omitempty"`
	RSSPerConn      float64 `json:"server_rss_per_conn,omitempty"`
	ServerCPUHold   float64 `json:"server_cpu_percent_hold,omitempty"`
	ServerCPURamp   float64 `json:"server_cpu_percent_ramp,omitempty"`
	ProbeError      string  `json:"probe_error,omitempty"`

	ClientCPURamp float64 `json:"client_cpu_percent_ramp"`
	ClientCPUHold float64 `json:"client_cpu_percent_hold"`
	ClientRSS     uint64  `json:"client_rss,omitempty"`

	// Marker (--await-marker): unix nanoseconds on this machine's clock.
	MarkerSentAt    int64   `json:"marker_sent_unix_nano,omitempty"` // the marker's own "t" stamp
	MarkerReceived  int64   `json:"marker_received,omitempty"`       // connections that got it
	MarkerMissing   int64   `json:"marker_missing,omitempty"`        // open connections that did not
	MarkerFirstAt   int64   `json:"marker_first_unix_nano,omitempty"`
	MarkerLastAt    int64   `json:"marker_last_unix_nano,omitempty"`
	MarkerAllMillis float64 `json:"marker_all_ms,omitempty"` // last receipt − sent stamp
	MarkerLatency   Latency `json:"marker_latency"`          // per connection: receipt − sent stamp
	Interrupted     bool    `json:"interrupted,omitempty"`
	Machine         Machine `json:"machine"`
}

func (c *ConnsCmd) validate() error {
	if err := c.ClientFlags.validate(c.Conns); err != nil {
		return err
	}
	switch {
	case c.Conns < 1:
		return errors.New("--conns must be at least 1")
	case c.Subs < 0 || c.Subs > 1000:
		return errors.New("--subs must be in 0..1000")
	case c.Subs > 0 && c.Channels < c.Subs:
		return fmt.Errorf("--channels (%d) must be at least --subs (%d) so a connection never subscribes twice", c.Channels, c.Subs)
	case c.Settle < 0:
		return errors.New("--settle must not be negative")
	case c.AwaitMarker && c.Subs < 1:
		return errors.New("--await-marker needs --subs of at least 1: the marker is a publication")
	case c.AwaitMarker && c.MarkerTimeout <= 0:
		return errors.New("--marker-timeout must be positive")
	}
	return nil
}

// channelsFor returns the K channels of connection idx: prefix + (idx*K+j) mod C.
func channelsFor(prefix string, idx, k, c int) []string {
	if k == 0 {
		return nil
	}
	out := make([]string, k)
	for j := 0; j < k; j++ {
		out[j] = prefix + strconv.Itoa((idx*k+j)%c)
	}
	return out
}

// Run executes the scenario; ctx cancellation (Ctrl-C) ends it early with a partial result.
func (c *ConnsCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	return execute(&c.ClientFlags, c.Conns, func() (*ConnsResult, error) { return c.run(ctx) })
}

func (c *ConnsCmd) run(parent context.Context) (*ConnsResult, error) {
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	cd, _ := newCodec(c.Protocol)
	tokens, err := c.tokenSource()
	if err != nil {
		return nil, err
	}
	p := newPool(poolConfig{
		urls: c.urls(), codec: cd, token: tokens, handshakeTimeout: c.HandshakeTimeout,
		source: c.sourceFunc(c.Conns), prefix: c.Prefix,
		channels: func(idx int) []string { return channelsFor(c.Prefix, idx, c.Subs, c.Channels) },
	})
	var mk *markerWait
	if c.AwaitMarker {
		mk = newMarkerWait(c.Conns)
		p.onPub = mk.onPub
	}
	probe := &serverProbe{pid: c.ServerPID, metricsURL: c.ServerMetrics}
	res := &ConnsResult{
		Kind: "conns", Label: c.Label, StartedAt: time.Now().UTC(), URL: c.URL, Protocol: c.Protocol,
		Requested: c.Conns, SubsPerConn: c.Subs, Machine: machine(),
	}
	var probeErr error
	sample := func() uint64 {
		if !probe.enabled() {
			return 0
		}
		v, err := probe.rss(context.WithoutCancel(ctx))
		if err != nil && probeErr == nil {
			probeErr = err
		}
		return v
	}
	serverCPU := func() time.Duration {
		if !probe.enabled() {
			return 0
		}
		v, _ := probe.cpu(context.WithoutCancel(ctx))
		return v
	}
	res.ServerRSSBefore = sample()

	var errs errCounter
	cpuNow := newCPUSampler()
	connLat := new(Histogram)
	var opened atomic.Int64
	var lastOpen int64
	stop := progress(ctx, output, progressEnabled(c.JSON), func() string {
		open := p.established.Load()
		rate := open - lastOpen // per second: progress redraws once a second
		lastOpen = open
		return fmt.Sprintf("conns: %d/%d open (%d/s), %d failed, %d closed by server, client cpu %.0f%%",
			open, c.Conns, rate, errs.total(), p.closedEarly.Load(), cpuNow.sample())
	})
	defer stop()

	cpuRamp := startCPU()
	srv0 := serverCPU()
	t0 := time.Now()
	ramp(ctx, c.Conns, c.DialConcurrency, c.ConnectRate, func(ctx context.Context, idx int) {
		_, d, err := p.dial(ctx, idx)
		if err != nil {
			if ctx.Err() == nil {
				errs.add(err)
			}
			return
		}
		opened.Add(1)
		connLat.Record(int64(d))
	})
	rampDur := time.Since(t0)
	res.ClientCPURamp = cpuRamp.percent()
	if probe.enabled() {
		res.ServerCPURamp = 100 * float64(serverCPU()-srv0) / float64(rampDur)
	}
	res.Established = p.established.Load()
	res.Failed = errs.total()
	res.Errors = errs.list()
	res.ConnectSeconds = rampDur.Seconds()
	if rampDur > 0 {
		res.ConnectRate = float64(res.Established) / rampDur.Seconds()
	}
	res.ConnectLatency = connLat.Snapshot().Summary()

	if ctx.Err() == nil {
		sleepCtx(ctx, c.Settle)
	}
	if c.ReadyFile != "" && ctx.Err() == nil {
		if err := writeReady(c.ReadyFile, res.Established); err != nil {
			return nil, err
		}
	}
	if mk != nil && ctx.Err() == nil {
		mk.wait(ctx, c.MarkerTimeout, func() int64 { return p.established.Load() - p.closedEarly.Load() })
		mk.report(res, p.established.Load()-p.closedEarly.Load())
	}
	cpuHold := startCPU()
	srv1 := serverCPU()
	h0 := time.Now()
	var last uint64
	for ctx.Err() == nil && time.Since(h0) < c.Duration {
		if v := sample(); v > 0 {
			last = v
			if v > res.ServerRSSMax {
				res.ServerRSSMax = v
			}
		}
		sleepCtx(ctx, min(time.Second, c.Duration-time.Since(h0)))
	}
	if v := sample(); v > 0 {
		last = v
		if v > res.ServerRSSMax {
			res.ServerRSSMax = v
		}
	}
	held := time.Since(h0)
	res.HeldSeconds = held.Seconds()
	res.ClientCPUHold = cpuHold.percent()
	if probe.enabled() && held > 0 {
		res.ServerCPUHold = 100 * float64(serverCPU()-srv1) / float64(held)
	}
	res.ServerRSSAfter = last
	if res.Established > 0 && last > 0 && res.ServerRSSBefore > 0 {
		res.RSSPerConn = (float64(last) - float64(res.ServerRSSBefore)) / float64(res.Established)
	}
	if probeErr != nil {
		res.ProbeError = probeErr.Error()
	}
	if v, err := procRSS(selfPID()); err == nil {
		res.ClientRSS = v
	}
	res.StillOpen = res.Established - p.closedEarly.Load()
	res.ServerPings = p.pings.Load()
	res.Interrupted = parent.Err() != nil || (ctx.Err() != nil && held < c.Duration)
	stop()

	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancelClose()
	if err := p.closeAll(closeCtx); err != nil {
		return nil, err
	}
	res.Disconnects = p.snapshotCloseCodes()
	return res, nil
}

// markerWait records when each connection received its first publication.
type markerWait struct {
	recv   []atomic.Int64 // by connection index: unix nanos of the first publication, 0 = none
	got    atomic.Int64
	sentAt atomic.Int64
	hist   Histogram
}

func newMarkerWait(conns int) *markerWait { return &markerWait{recv: make([]atomic.Int64, conns)} }

// onPub is the pool's publication hook (read goroutines).
func (m *markerWait) onPub(cn *conn, _ int, data []byte, now int64) {
	if cn.idx >= len(m.recv) || !m.recv[cn.idx].CompareAndSwap(0, now) {
		return
	}
	if sent, _, _, err := parseStamp(data); err == nil {
		m.sentAt.CompareAndSwap(0, sent)
		m.hist.Record(now - sent)
	}
	m.got.Add(1)
}

// wait polls until open() connections have the marker, timeout passes or ctx ends.
func (m *markerWait) wait(ctx context.Context, timeout time.Duration, open func() int64) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if m.got.Load() >= open() {
			return
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
}

func (m *markerWait) report(res *ConnsResult, open int64) {
	res.MarkerReceived = m.got.Load()
	res.MarkerMissing = max(0, open-res.MarkerReceived)
	res.MarkerSentAt = m.sentAt.Load()
	for i := range m.recv {
		v := m.recv[i].Load()
		if v == 0 {
			continue
		}
		if res.MarkerFirstAt == 0 || v < res.MarkerFirstAt {
			res.MarkerFirstAt = v
		}
		res.MarkerLastAt = max(res.MarkerLastAt, v)
	}
	if res.MarkerSentAt > 0 && res.MarkerLastAt > 0 {
		res.MarkerAllMillis = float64(res.MarkerLastAt-res.MarkerSentAt) / 1e6
	}
	res.MarkerLatency = m.hist.Snapshot().Summary()
}

// writeReady creates path atomically (write, then rename) holding n.
func writeReady(path string, n int64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(n, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}

func (r *ConnsResult) text(w io.Writer) {
	fmt.Fprintf(w, "conns %s (%s) %s\n", r.URL, r.Protocol, r.Label)
	fmt.Fprintf(w, "  established      %d of %d (%d failed), %d subs each\n", r.Established, r.Requested, r.Failed, r.SubsPerConn)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "    error %-40s %d\n", e.What, e.Count)
	}
	fmt.Fprintf(w, "  connect          %.2f s, %.0f conn/s, latency p50 %.2f ms p99 %.2f ms max %.2f ms\n",
		r.ConnectSeconds, r.ConnectRate, r.ConnectLatency.P50, r.ConnectLatency.P99, r.ConnectLatency.Max)
	fmt.Fprintf(w, "  held             %.1f s, %d still open, %d server pings\n", r.HeldSeconds, r.StillOpen, r.ServerPings)
	for _, d := range r.Disconnects {
		fmt.Fprintf(w, "    disconnect %-35s %d\n", d.What, d.Count)
	}
	if r.ServerRSSAfter > 0 {
		fmt.Fprintf(w, "  server rss       %.1f MiB -> %.1f MiB (max %.1f MiB): %.0f B per connection\n",
			mib(r.ServerRSSBefore), mib(r.ServerRSSAfter), mib(r.ServerRSSMax), r.RSSPerConn)
		fmt.Fprintf(w, "  server cpu       ramp %.0f %%, hold %.0f %% of one core\n", r.ServerCPURamp, r.ServerCPUHold)
	}
	if r.ProbeError != "" {
		fmt.Fprintf(w, "  probe error      %s\n", r.ProbeError)
	}
	fmt.Fprintf(w, "  client cpu       ramp %.0f %%, hold %.0f %% of one core (%d cores); client rss %.1f MiB\n",
		r.ClientCPURamp, r.ClientCPUHold, r.Machine.Cores, mib(r.ClientRSS))
	if r.MarkerReceived > 0 || r.MarkerMissing > 0 {
		fmt.Fprintf(w, "  marker           %d received, %d missing; last %.1f ms after it was sent (p50 %.1f ms, p99 %.1f ms)\n",
			r.MarkerReceived, r.MarkerMissing, r.MarkerAllMillis, r.MarkerLatency.P50, r.MarkerLatency.P99)
	}
	if r.Interrupted {
		fmt.Fprintln(w, "  (interrupted: partial result)")
	}
}
