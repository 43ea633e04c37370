package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/lxzan/gws"
)

// FanoutCmd is `switchboard bench fanout`: S subscribers over C channels receive publications
// sent at rate R through the server HTTP API or client publish commands. Every payload carries
// its send time and a per-channel sequence number, from which latency, loss and duplicates are
// computed.
type FanoutCmd struct {
	ClientFlags `embed:""`

	Subscribers int           `help:"Subscriber connections (S)." short:"s" default:"1000"`
	Channels    int           `help:"Channels (C); subscriber i subscribes to channel i mod C." default:"1"`
	Prefix      string        `help:"Channel name prefix; channel names are prefix + number." default:"bench:ch"`
	Rate        float64       `help:"Publications per second over all channels (0 = as fast as the publishers go)." default:"100"`
	Via         string        `help:"Publish through the server HTTP API or client publish commands." enum:"api,client" default:"api"`
	APIURL      string        `help:"Server API base URL (default: http(s)://<host of the first --url>/api); with several --url nodes, publications go here while subscribers sit on all of them." name:"api-url"`
	APIKey      string        `help:"Server API key (X-API-Key)." name:"api-key" env:"BENCH_API_KEY"`
	Publishers  int           `help:"Concurrent publishers (HTTP clients or publisher connections; publisher connections dial the first --url)." default:"4"`
	Inflight    int           `help:"Outstanding publish commands per publisher connection (--via client)." default:"32"`
	PayloadSize int           `help:"Approximate payload size in bytes." default:"64"`
	Drain       time.Duration `help:"How long to wait for in-flight deliveries after publishing stops." default:"5s"`
}

// FanoutResult is the outcome of a fanout run.
type FanoutResult struct {
	Kind        string    `json:"kind"`
	Label       string    `json:"label,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	URL         string    `json:"url"`
	Protocol    string    `json:"protocol"`
	Via         string    `json:"via"`
	Subscribers int       `json:"subscribers"`
	Channels    int       `json:"channels"`
	Established int64     `json:"established"`
	ConnFailed  uint64    `json:"conn_failed"`
	ConnErrors  []Count   `json:"conn_errors,omitempty"`
	ConnectRate float64   `json:"connect_rate"`

	OfferedRate    float64 `json:"offered_rate"`
	PublishSeconds float64 `json:"publish_seconds"`
	Published      uint64  `json:"published"`
	PublishFailed  uint64  `json:"publish_failed"`
	PublishErrors  []Count `json:"publish_errors,omitempty"`
	PublishRate    float64 `json:"publish_rate"`

	Expected        uint64  `json:"expected_deliveries"`
	Delivered       uint64  `json:"delivered"`
	DeliverySeconds float64 `json:"delivery_seconds"`
	DeliveryRate    float64 `json:"deliveries_per_second"`
	Latency         Latency `json:"latency"`
	Lost            uint64  `json:"lost"`
	LostDisconnect  uint64  `json:"lost_on_disconnected"`
	Duplicates      uint64  `json:"duplicates"`
	Reordered       uint64  `json:"reordered"`
	BadPayloads     uint64  `json:"bad_payloads,omitempty"`
	Disconnects     []Count `json:"disconnects,omitempty"`
	Unsubscribes    uint64  `json:"server_unsubscribes,omitempty"`
	DecodeErrors    uint64  `json:"decode_errors,omitempty"`

	ServerCPU   float64 `json:"server_cpu_percent,omitempty"`
	ServerRSS   uint64  `json:"server_rss,omitempty"`
	ClientCPU   float64 `json:"client_cpu_percent"`
	Interrupted bool    `json:"interrupted,omitempty"`
	Machine     Machine `json:"machine"`
}

func (c *FanoutCmd) validate() error {
	total := c.Subscribers
	if c.Via == "client" {
		total += c.Publishers
	}
	if err := c.ClientFlags.validate(total); err != nil {
		return err
	}
	switch {
	case c.Subscribers < 1:
		return errors.New("--subscribers must be at least 1")
	case c.Channels < 1:
		return errors.New("--channels must be at least 1")
	case c.Channels > c.Subscribers:
		return fmt.Errorf("--channels (%d) must not exceed --subscribers (%d): every channel needs a subscriber", c.Channels, c.Subscribers)
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.Publishers < 1 || c.Publishers > 1000:
		return errors.New("--publishers must be in 1..1000")
	case c.Inflight < 1 || c.Inflight > 10000:
		return errors.New("--inflight must be in 1..10000")
	case c.PayloadSize < 0 || c.PayloadSize > 1<<20:
		return errors.New("--payload-size must be in 0..1048576")
	case c.Drain < 0:
		return errors.New("--drain must not be negative")
	case c.Via != "api" && c.Via != "client":
		return fmt.Errorf("--via must be api or client, got %q", c.Via)
	case c.Via == "api" && c.APIKey == "":
		return errors.New("--api-key is required with --via api")
	}
	if _, err := c.apiURL(); err != nil {
		return err
	}
	return nil
}

func (c *FanoutCmd) apiURL() (string, error) { return apiBase(c.APIURL, c.urls()) }

// apiBase returns the server API base URL: explicit when given, else
// http(s)://<host of the first WebSocket URL>/api.
func apiBase(explicit string, wsURLs []string) (string, error) {
	if explicit != "" {
		u, err := url.Parse(explicit)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return "", fmt.Errorf("--api-url must be an http(s) URL, got %q", explicit)
		}
		return strings.TrimSuffix(explicit, "/"), nil
	}
	if len(wsURLs) == 0 {
		return "", errors.New("--url: missing")
	}
	u, err := url.Parse(wsURLs[0])
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host + "/api", nil
}

// Run executes the scenario; ctx cancellation (Ctrl-C) ends it early with a partial result.
func (c *FanoutCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	n := c.Subscribers
	if c.Via == "client" {
		n += c.Publishers
	}
	return execute(&c.ClientFlags, n+c.Publishers, func() (*FanoutResult, error) { return c.run(ctx) })
}

// fanoutState is the shared bookkeeping of one fanout run.
type fanoutState struct {
	pubs     int
	seq      []atomic.Uint64 // last sequence number handed out per channel*pubs+publisher
	acked    []atomic.Uint64 // successful publishes per channel*pubs+publisher
	cursor   []uint64        // per publisher round-robin channel cursor (owned by that publisher)
	failed   errCounter
	channels []string
}

func newFanoutState(prefix string, channels, pubs int) *fanoutState {
	st := &fanoutState{
		pubs: pubs, seq: make([]atomic.Uint64, channels*pubs), acked: make([]atomic.Uint64, channels*pubs),
		cursor: make([]uint64, pubs),
	}
	for i := 0; i < channels; i++ {
		st.channels = append(st.channels, prefix+strconv.Itoa(i))
	}
	for w := range st.cursor {
		st.cursor[w] = uint64(w) // spread publishers over channels
	}
	return st
}

// nextPub picks publisher w's next channel and sequence number. Only publisher w calls it
// with w.
func (f *fanoutState) nextPub(w int) (ch int, seq uint64) {
	ch = int(f.cursor[w] % uint64(len(f.channels)))
	f.cursor[w]++
	return ch, f.seq[ch*f.pubs+w].Add(1)
}

func (f *fanoutState) ack(ch, w int) { f.acked[ch*f.pubs+w].Add(1) }

// ackedChannel returns the successful publishes to channel ch by all publishers.
func (f *fanoutState) ackedChannel(ch int) uint64 {
	var n uint64
	for w := 0; w < f.pubs; w++ {
		n += f.acked[ch*f.pubs+w].Load()
	}
	return n
}

func (c *FanoutCmd) run(parent context.Context) (*FanoutResult, error) {
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	cd, _ := newCodec(c.Protocol)
	tokens, err := c.tokenSource()
	if err != nil {
		return nil, err
	}
	st := newFanoutState(c.Prefix, c.Channels, c.Publishers)
	total := c.Subscribers
	if c.Via == "client" {
		total += c.Publishers
	}
	p := newPool(poolConfig{
		urls: c.urls(), codec: cd, token: tokens, handshakeTimeout: c.HandshakeTimeout,
		firstFrom: c.Subscribers, source: c.sourceFunc(total), prefix: c.Prefix, streams: c.Publishers,
		channels: func(idx int) []string {
			if idx >= c.Subscribers {
				return nil // publisher connection
			}
			return []string{st.channels[idx%c.Channels]}
		},
	})
	p.onPub = func(cn *conn, slot int, data []byte, now int64) {
		sh := &p.shard[cn.idx%statShards]
		sent, seq, w, err := parseStamp(data)
		if err != nil || slot < 0 || w >= c.Publishers {
			sh.badStamp.Add(1)
			return
		}
		sh.delivered.Add(1)
		sh.hist.Record(now - sent)
		cn.mu.Lock()
		dup := cn.trackers[slot*c.Publishers+w].add(seq)
		cn.mu.Unlock()
		if dup {
			sh.dups.Add(1)
		}
	}
	probe := &serverProbe{pid: c.ServerPID, metricsURL: c.ServerMetrics}
	res := &FanoutResult{
		Kind: "fanout", Label: c.Label, StartedAt: time.Now().UTC(), URL: c.URL, Protocol: c.Protocol, Via: c.Via,
		Subscribers: c.Subscribers, Channels: c.Channels, OfferedRate: c.Rate, Machine: machine(),
	}

	// Phase 1: subscribers (and publisher connections).
	var connErrs errCounter
	var pubMu sync.Mutex
	var pubConns []*conn
	var prevSnap *HistSnapshot
	var prevDelivered uint64
	cpuNow := newCPUSampler()
	stopProg := progress(ctx, output, progressEnabled(c.JSON), func() string {
		snap := p.latency().Snapshot()
		cur := snap.Sub(prevSnap) // the last second only
		prevSnap = snap
		d := p.delivered()
		rate := d - prevDelivered
		prevDelivered = d
		return fmt.Sprintf("fanout: %d/%d conns, %d failed, published %d, delivered %d (%d/s), p99 now %.2f ms, closed by server %d, client cpu %.0f%%",
			p.established.Load(), total, connErrs.total(), sumAtomic(st.acked), d, rate, ms(cur.Quantile(0.99)), p.closedEarly.Load(), cpuNow.sample())
	})
	defer stopProg()
	t0 := time.Now()
	ramp(ctx, total, c.DialConcurrency, c.ConnectRate, func(ctx context.Context, idx int) {
		cn, _, err := p.dial(ctx, idx)
		if err != nil {
			if ctx.Err() == nil {
				connErrs.add(err)
			}
			return
		}
		if idx >= c.Subscribers {
			pubMu.Lock()
			pubConns = append(pubConns, cn)
			pubMu.Unlock()
		}
	})
	if d := time.Since(t0); d > 0 {
		res.ConnectRate = float64(p.established.Load()) / d.Seconds()
	}
	res.Established = p.established.Load()
	res.ConnFailed = connErrs.total()
	res.ConnErrors = connErrs.list()
	subsPerChannel := make([]uint64, c.Channels)
	p.mu.Lock()
	for _, cn := range p.conns {
		if cn.idx < c.Subscribers {
			subsPerChannel[cn.idx%c.Channels]++
		}
	}
	p.mu.Unlock()
	if c.Via == "client" && len(pubConns) == 0 && ctx.Err() == nil {
		return nil, errors.New("no publisher connection could be opened")
	}

	// Phase 2: publish for --duration.
	cpu := startCPU()
	var srvCPU0 time.Duration
	if probe.enabled() {
		srvCPU0, _ = probe.cpu(ctx)
	}
	pubStart := time.Now()
	pubCtx, stopPub := context.WithTimeout(ctx, c.Duration)
	pc := newPacer(c.Rate)
	var wg sync.WaitGroup
	if ctx.Err() == nil {
		if c.Via == "api" {
			c.publishAPI(pubCtx, &wg, st, pc)
		} else {
			c.publishClient(pubCtx, &wg, st, pc, p, pubConns)
		}
	}
	wg.Wait()
	stopPub()
	pubDur := time.Since(pubStart)
	res.PublishSeconds = pubDur.Seconds()
	res.Published = sumAtomic(st.acked)
	res.PublishFailed = st.failed.total()
	res.PublishErrors = st.failed.list()
	if pubDur > 0 {
		res.PublishRate = float64(res.Published) / pubDur.Seconds()
	}
	for ch := range st.channels {
		res.Expected += st.ackedChannel(ch) * subsPerChannel[ch]
	}

	// Phase 3: drain.
	drainEnd := time.Now().Add(c.Drain)
	for ctx.Err() == nil && time.Now().Before(drainEnd) {
		if c.caughtUp(p, st) {
			break
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	delivDur := time.Since(pubStart)
	res.ClientCPU = cpu.percent()
	if probe.enabled() {
		if v, err := probe.cpu(context.WithoutCancel(ctx)); err == nil && delivDur > 0 {
			res.ServerCPU = 100 * float64(v-srvCPU0) / float64(delivDur)
		}
		res.ServerRSS, _ = probe.rss(context.WithoutCancel(ctx))
	}
	res.Interrupted = parent.Err() != nil || ctx.Err() != nil
	stopProg()

	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancelClose()
	if err := p.closeAll(closeCtx); err != nil {
		return nil, err
	}
	// All read goroutines have ended: trackers are stable.
	res.Delivered = p.delivered()
	res.DeliverySeconds = delivDur.Seconds()
	if delivDur > 0 {
		res.DeliveryRate = float64(res.Delivered) / delivDur.Seconds()
	}
	res.Latency = p.latency().Snapshot().Summary()
	res.Duplicates = dupsOf(p)
	for i := range p.shard {
		res.BadPayloads += p.shard[i].badStamp.Load()
	}
	p.mu.Lock()
	conns := p.conns
	res.Unsubscribes = p.unsubs
	res.DecodeErrors = p.decodeErrs
	p.mu.Unlock()
	for _, cn := range conns {
		if cn.idx >= c.Subscribers {
			continue
		}
		ch := cn.idx % c.Channels
		var lost uint64
		for w := 0; w < c.Publishers; w++ {
			t := &cn.trackers[w]
			res.Reordered += t.reorder
			lost += t.lost(st.acked[ch*c.Publishers+w].Load())
		}
		if cn.closedByServer() {
			res.LostDisconnect += lost
		} else {
			res.Lost += lost
		}
	}
	res.Disconnects = p.snapshotCloseCodes()
	return res, nil
}

// caughtUp reports whether every subscriber connection the server did not
// close has received every acknowledged publication of its channel: the
// drain need not wait for connections that can receive nothing more.
func (c *FanoutCmd) caughtUp(p *pool, st *fanoutState) bool {
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	for _, cn := range conns {
		if cn.idx >= c.Subscribers || cn.closedByServer() {
			continue
		}
		ch := cn.idx % c.Channels
		cn.mu.Lock()
		for w := 0; w < c.Publishers; w++ {
			if cn.trackers[w].lost(st.acked[ch*c.Publishers+w].Load()) > 0 {
				cn.mu.Unlock()
				return false
			}
		}
		cn.mu.Unlock()
	}
	return true
}

func sumAtomic(a []atomic.Uint64) uint64 {
	var n uint64
	for i := range a {
		n += a[i].Load()
	}
	return n
}

func dupsOf(p *pool) uint64 {
	var n uint64
	for i := range p.shard {
		n += p.shard[i].dups.Load()
	}
	return n
}

// publishAPI starts c.Publishers goroutines POSTing to /api/publish until ctx ends.
func (c *FanoutCmd) publishAPI(ctx context.Context, wg *sync.WaitGroup, st *fanoutState, pc *pacer) {
	base, _ := c.apiURL()
	endpoint := base + "/publish"
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: c.Publishers, MaxIdleConnsPerHost: c.Publishers, MaxConnsPerHost: c.Publishers,
			IdleConnTimeout: 30 * time.Second,
		},
	}
	for w := 0; w < c.Publishers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer client.CloseIdleConnections()
			var body []byte
			for pc.wait(ctx) {
				ch, seq := st.nextPub(w)
				body = append(body[:0], `{"channel":`...)
				body = strconv.AppendQuote(body, st.channels[ch])
				body = append(body, `,"data":`...)
				body = appendStamp(body, time.Now().UnixNano(), seq, w, c.PayloadSize)
				body = append(body, '}')
				if err := apiPublish(ctx, client, endpoint, c.APIKey, body); err != nil {
					st.failed.add(err)
					continue
				}
				st.ack(ch, w)
			}
		}()
	}
}

func apiPublish(ctx context.Context, client *http.Client, endpoint, key string, body []byte) error {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("api publish: %w", err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("api publish: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("api publish: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("api publish: status %d: %s", resp.StatusCode, truncate(string(bytes.TrimSpace(b)), 60))
	}
	if bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("api publish: %s", truncate(string(bytes.TrimSpace(b)), 80))
	}
	return nil
}

// publishClient publishes through publisher connections with up to c.Inflight outstanding
// commands each; replies are matched by id in p.onReply.
func (c *FanoutCmd) publishClient(ctx context.Context, wg *sync.WaitGroup, st *fanoutState, pc *pacer, p *pool, pubs []*conn) {
	type pending struct{ ch, w int }
	var mu sync.Mutex
	inflight := map[*conn]map[uint32]pending{}
	sems := map[*conn]chan struct{}{}
	for _, cn := range pubs {
		inflight[cn] = map[uint32]pending{}
		sems[cn] = make(chan struct{}, c.Inflight)
	}
	p.onReply = func(cn *conn, r *protocol.Reply, _ int64) {
		mu.Lock()
		pd, ok := inflight[cn][r.Id]
		delete(inflight[cn], r.Id)
		mu.Unlock()
		if !ok {
			return
		}
		// Count before releasing the slot: the publisher's final wait relies on it.
		if r.Error != nil {
			st.failed.add(fmt.Errorf("publish: error %d %s", r.Error.Code, r.Error.Message))
		} else {
			st.ack(pd.ch, pd.w)
		}
		<-sems[cn]
	}
	for w, cn := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := sems[cn]
			var frame, data []byte
		loop:
			for pc.wait(ctx) {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					break loop
				}
				ch, seq := st.nextPub(w)
				id := cn.nextID.Add(1)
				data = appendStamp(data[:0], time.Now().UnixNano(), seq, w, c.PayloadSize)
				var err error
				frame, err = p.cfg.codec.appendCommand(frame[:0], &protocol.Command{
					Id: id, Publish: &protocol.PublishRequest{Channel: st.channels[ch], Data: data},
				})
				if err == nil {
					mu.Lock()
					inflight[cn][id] = pending{ch, w}
					mu.Unlock()
					err = cn.write(frame)
					if err != nil {
						mu.Lock()
						delete(inflight[cn], id)
						mu.Unlock()
					}
				}
				if err != nil {
					<-sem
					st.failed.add(err)
					if errors.Is(err, gws.ErrConnClosed) || cn.closedByServer() {
						return
					}
				}
			}
			// Wait (bounded) for the outstanding replies so acked counts are complete.
			deadline := time.Now().Add(c.HandshakeTimeout)
			for len(sem) > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
}

// closedByServer reports whether the server closed the connection while it was wanted.
func (c *conn) closedByServer() bool { return c.serverGone.Load() }

func (r *FanoutResult) text(w io.Writer) {
	fmt.Fprintf(w, "fanout %s (%s, via %s) %s\n", r.URL, r.Protocol, r.Via, r.Label)
	fmt.Fprintf(w, "  connections      %d for %d subscribers over %d channels (+ publisher connections with --via client), %d failed, %.0f conn/s\n", r.Established, r.Subscribers, r.Channels, r.ConnFailed, r.ConnectRate)
	for _, e := range r.ConnErrors {
		fmt.Fprintf(w, "    error %-40s %d\n", e.What, e.Count)
	}
	offered := "max"
	if r.OfferedRate > 0 {
		offered = fmt.Sprintf("%.0f/s", r.OfferedRate)
	}
	fmt.Fprintf(w, "  published        %d in %.1f s (%.0f/s, offered %s), %d failed\n", r.Published, r.PublishSeconds, r.PublishRate, offered, r.PublishFailed)
	for _, e := range r.PublishErrors {
		fmt.Fprintf(w, "    error %-40s %d\n", e.What, e.Count)
	}
	fmt.Fprintf(w, "  delivered        %d of %d expected in %.1f s: %.0f deliveries/s\n", r.Delivered, r.Expected, r.DeliverySeconds, r.DeliveryRate)
	l := r.Latency
	fmt.Fprintf(w, "  latency ms       p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "  lost             %d (plus %d on connections the server closed), duplicates %d, reordered %d\n", r.Lost, r.LostDisconnect, r.Duplicates, r.Reordered)
	if r.BadPayloads+r.DecodeErrors+r.Unsubscribes > 0 {
		fmt.Fprintf(w, "  anomalies        %d bad payloads, %d decode errors, %d server unsubscribes\n", r.BadPayloads, r.DecodeErrors, r.Unsubscribes)
	}
	for _, d := range r.Disconnects {
		fmt.Fprintf(w, "    disconnect %-35s %d\n", d.What, d.Count)
	}
	if r.ServerRSS > 0 {
		fmt.Fprintf(w, "  server           cpu %.0f %% of one core, rss %.1f MiB\n", r.ServerCPU, mib(r.ServerRSS))
	}
	fmt.Fprintf(w, "  client cpu       %.0f %% of one core (%d cores)\n", r.ClientCPU, r.Machine.Cores)
	if r.Interrupted {
		fmt.Fprintln(w, "  (interrupted: partial result)")
	}
}
