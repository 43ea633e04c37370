package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/protocol"
)

// RPCCmd is `switchboard bench rpc`: each connection runs a closed loop of client `rpc` (or
// `publish`) commands, one outstanding at a time, and the round trips are measured. With
// --kind api-publish there are no WebSocket connections: --conns HTTP clients each run a
// closed loop of server API publishes (POST <api-url>/publish) instead.
type RPCCmd struct {
	ClientFlags `embed:""`

	Conns       int     `help:"Connections, each with one command in flight." short:"n" default:"10"`
	Kind        string  `help:"Command to time: rpc, publish (client command) or api-publish (server HTTP API)." enum:"rpc,publish,api-publish" default:"rpc"`
	Method      string  `help:"RPC method name (--kind rpc)." default:"echo"`
	Channel     string  `help:"Channel to publish to (--kind publish, api-publish)." default:"bench:rpc"`
	APIURL      string  `help:"Server API base URL for --kind api-publish (default: http(s)://<host of the first --url>/api)." name:"api-url"`
	APIKey      string  `help:"Server API key (X-API-Key) for --kind api-publish." name:"api-key" env:"BENCH_API_KEY"`
	Rate        float64 `help:"Commands per second over all connections (0 = closed loop, as fast as replies come)." default:"0"`
	PayloadSize int     `help:"Approximate payload size in bytes." default:"64"`
}

// RPCResult is the outcome of an rpc run.
type RPCResult struct {
	Kind        string    `json:"kind"`
	Label       string    `json:"label,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	URL         string    `json:"url"`
	Protocol    string    `json:"protocol"`
	Command     string    `json:"command"`
	Conns       int       `json:"conns"`
	Established int64     `json:"established"`
	ConnFailed  uint64    `json:"conn_failed"`
	ConnErrors  []Count   `json:"conn_errors,omitempty"`
	OfferedRate float64   `json:"offered_rate"`
	Seconds     float64   `json:"seconds"`
	Requests    uint64    `json:"requests"`
	OK          uint64    `json:"ok"`
	ReplyErrors []Count   `json:"reply_errors,omitempty"`
	Timeouts    uint64    `json:"timeouts"`
	Throughput  float64   `json:"replies_per_second"`
	Latency     Latency   `json:"latency"`
	Disconnects []Count   `json:"disconnects,omitempty"`
	ServerCPU   float64   `json:"server_cpu_percent,omitempty"`
	ClientCPU   float64   `json:"client_cpu_percent"`
	Interrupted bool      `json:"interrupted,omitempty"`
	Machine     Machine   `json:"machine"`
}

func (c *RPCCmd) validate() error {
	if c.Kind == kindAPIPublish {
		if err := c.ClientFlags.check(0, false); err != nil {
			return err
		}
	} else if err := c.ClientFlags.validate(c.Conns); err != nil {
		return err
	}
	switch {
	case c.Conns < 1 || c.Conns > 10000:
		return errors.New("--conns must be in 1..10000")
	case c.Kind != "rpc" && c.Kind != "publish" && c.Kind != kindAPIPublish:
		return fmt.Errorf("--kind must be rpc, publish or api-publish, got %q", c.Kind)
	case c.Kind == kindAPIPublish && c.APIKey == "":
		return errors.New("--api-key is required with --kind api-publish")
	case c.Kind == "rpc" && c.Method == "":
		return errors.New("--method must not be empty")
	case c.Kind != "rpc" && c.Channel == "":
		return errors.New("--channel must not be empty")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.PayloadSize < 0 || c.PayloadSize > 1<<20:
		return errors.New("--payload-size must be in 0..1048576")
	}
	if c.Kind == kindAPIPublish {
		if _, err := apiBase(c.APIURL, c.urls()); err != nil {
			return err
		}
	}
	return nil
}

const kindAPIPublish = "api-publish"

// Run executes the scenario; ctx cancellation (Ctrl-C) ends it early with a partial result.
func (c *RPCCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Kind == kindAPIPublish {
		return execute(&c.ClientFlags, c.Conns, func() (*RPCResult, error) { return c.runAPI(ctx) })
	}
	return execute(&c.ClientFlags, c.Conns, func() (*RPCResult, error) { return c.run(ctx) })
}

// runAPI is --kind api-publish: c.Conns HTTP clients, each with one server
// API publish in flight, for --duration.
func (c *RPCCmd) runAPI(parent context.Context) (*RPCResult, error) {
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	base, err := apiBase(c.APIURL, c.urls())
	if err != nil {
		return nil, err
	}
	endpoint := base + "/publish"
	probe := &serverProbe{pid: c.ServerPID, metricsURL: c.ServerMetrics}
	res := &RPCResult{
		Kind: "rpc", Label: c.Label, StartedAt: time.Now().UTC(), URL: endpoint, Protocol: "json",
		Command: c.Kind, Conns: c.Conns, OfferedRate: c.Rate, Machine: machine(),
	}
	client := &http.Client{
		Timeout: c.HandshakeTimeout,
		Transport: &http.Transport{
			MaxIdleConns: c.Conns, MaxIdleConnsPerHost: c.Conns, MaxConnsPerHost: c.Conns,
			IdleConnTimeout: 30 * time.Second,
		},
	}
	defer client.CloseIdleConnections()
	hist := new(Histogram)
	var sent, ok, timeouts atomic.Uint64
	var replyErrs errCounter
	var prevSnap *HistSnapshot
	cpuNow := newCPUSampler()
	stopProg := progress(ctx, output, progressEnabled(c.JSON), func() string {
		snap := hist.Snapshot()
		cur := snap.Sub(prevSnap)
		prevSnap = snap
		return fmt.Sprintf("api publish: %d clients, %d sent, %d ok, %d/s, p99 now %.2f ms, client cpu %.0f%%",
			c.Conns, sent.Load(), ok.Load(), cur.Count(), ms(cur.Quantile(0.99)), cpuNow.sample())
	})
	defer stopProg()
	cpu := startCPU()
	var srv0 time.Duration
	if probe.enabled() {
		srv0, _ = probe.cpu(ctx)
	}
	start := time.Now()
	loopCtx, stopLoop := context.WithTimeout(ctx, c.Duration)
	pc := newPacer(c.Rate)
	var wg sync.WaitGroup
	for w := 0; w < c.Conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for seq := uint64(1); pc.wait(loopCtx); seq++ {
				body = append(body[:0], `{"channel":`...)
				body = strconv.AppendQuote(body, c.Channel)
				body = append(body, `,"data":`...)
				body = appendStamp(body, time.Now().UnixNano(), seq, w, c.PayloadSize)
				body = append(body, '}')
				t0 := time.Now()
				sent.Add(1)
				err := apiPublish(loopCtx, client, endpoint, c.APIKey, body)
				hist.Record(int64(time.Since(t0)))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
					timeouts.Add(1)
				default:
					replyErrs.add(err)
				}
			}
		}()
	}
	wg.Wait()
	stopLoop()
	dur := time.Since(start)
	res.Established = int64(c.Conns)
	res.Seconds = dur.Seconds()
	res.ClientCPU = cpu.percent()
	if probe.enabled() {
		if v, err := probe.cpu(context.WithoutCancel(ctx)); err == nil && dur > 0 {
			res.ServerCPU = 100 * float64(v-srv0) / float64(dur)
		}
	}
	res.Requests = sent.Load()
	res.OK = ok.Load()
	res.Timeouts = timeouts.Load()
	res.ReplyErrors = replyErrs.list()
	res.Latency = hist.Snapshot().Summary()
	if dur > 0 {
		res.Throughput = float64(res.OK) / dur.Seconds()
	}
	res.Interrupted = parent.Err() != nil || ctx.Err() != nil
	return res, nil
}

// isTimeout reports whether err is a network or client timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type rpcReply struct {
	id   uint32
	err  *protocol.Error
	when int64
}

func (c *RPCCmd) run(parent context.Context) (*RPCResult, error) {
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	cd, _ := newCodec(c.Protocol)
	tokens, err := c.tokenSource()
	if err != nil {
		return nil, err
	}
	p := newPool(poolConfig{urls: c.urls(), codec: cd, token: tokens, handshakeTimeout: c.HandshakeTimeout, source: c.sourceFunc(c.Conns)})
	var repMu sync.Mutex
	replies := map[*conn]chan rpcReply{}
	p.onReply = func(cn *conn, r *protocol.Reply, now int64) {
		repMu.Lock()
		ch := replies[cn]
		repMu.Unlock()
		if ch == nil {
			return
		}
		select {
		case ch <- rpcReply{id: r.Id, err: r.Error, when: now}:
		default: // an unexpected extra reply; the loop only waits for one
		}
	}
	probe := &serverProbe{pid: c.ServerPID, metricsURL: c.ServerMetrics}
	res := &RPCResult{
		Kind: "rpc", Label: c.Label, StartedAt: time.Now().UTC(), URL: c.URL, Protocol: c.Protocol,
		Command: c.Kind, Conns: c.Conns, OfferedRate: c.Rate, Machine: machine(),
	}
	var connErrs errCounter
	var conns []*conn
	var cmu sync.Mutex
	ramp(ctx, c.Conns, c.DialConcurrency, c.ConnectRate, func(ctx context.Context, idx int) {
		cn, _, err := p.dial(ctx, idx)
		if err != nil {
			if ctx.Err() == nil {
				connErrs.add(err)
			}
			return
		}
		repMu.Lock()
		replies[cn] = make(chan rpcReply, 1)
		repMu.Unlock()
		cmu.Lock()
		conns = append(conns, cn)
		cmu.Unlock()
	})
	res.Established = p.established.Load()
	res.ConnFailed = connErrs.total()
	res.ConnErrors = connErrs.list()

	hist := new(Histogram)
	var sent, ok, timeouts atomic.Uint64
	var replyErrs errCounter
	var prevSnap *HistSnapshot
	cpuNow := newCPUSampler()
	stopProg := progress(ctx, output, progressEnabled(c.JSON), func() string {
		snap := hist.Snapshot()
		cur := snap.Sub(prevSnap)
		prevSnap = snap
		return fmt.Sprintf("rpc: %d conns, %d sent, %d ok, %d/s, p99 now %.2f ms, client cpu %.0f%%",
			len(conns), sent.Load(), ok.Load(), cur.Count(), ms(cur.Quantile(0.99)), cpuNow.sample())
	})
	defer stopProg()
	cpu := startCPU()
	var srv0 time.Duration
	if probe.enabled() {
		srv0, _ = probe.cpu(ctx)
	}
	start := time.Now()
	loopCtx, stopLoop := context.WithTimeout(ctx, c.Duration)
	pc := newPacer(c.Rate)
	var wg sync.WaitGroup
	for _, cn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repMu.Lock()
			ch := replies[cn]
			repMu.Unlock()
			var frame, data []byte
			for pc.wait(loopCtx) {
				id := cn.nextID.Add(1)
				data = appendStamp(data[:0], time.Now().UnixNano(), uint64(id), 0, c.PayloadSize)
				cmd := &protocol.Command{Id: id}
				if c.Kind == "rpc" {
					cmd.Rpc = &protocol.RPCRequest{Method: c.Method, Data: data}
				} else {
					cmd.Publish = &protocol.PublishRequest{Channel: c.Channel, Data: data}
				}
				var err error
				frame, err = cd.appendCommand(frame[:0], cmd)
				if err != nil {
					replyErrs.add(err)
					return
				}
				t0 := time.Now()
				sent.Add(1)
				if err := cn.write(frame); err != nil {
					replyErrs.add(err)
					return
				}
				timer := time.NewTimer(c.HandshakeTimeout)
			wait:
				for {
					select {
					case r := <-ch:
						if r.id != id {
							continue // a late reply to a command that timed out
						}
						hist.Record(r.when - t0.UnixNano())
						if r.err != nil {
							replyErrs.add(fmt.Errorf("error %d %s", r.err.Code, r.err.Message))
						} else {
							ok.Add(1)
						}
						break wait
					case <-timer.C:
						timeouts.Add(1)
						break wait
					case <-ctx.Done():
						timer.Stop()
						return
					}
				}
				timer.Stop()
			}
		}()
	}
	wg.Wait()
	stopLoop()
	dur := time.Since(start)
	res.Seconds = dur.Seconds()
	res.ClientCPU = cpu.percent()
	if probe.enabled() {
		if v, err := probe.cpu(context.WithoutCancel(ctx)); err == nil && dur > 0 {
			res.ServerCPU = 100 * float64(v-srv0) / float64(dur)
		}
	}
	res.Requests = sent.Load()
	res.OK = ok.Load()
	res.Timeouts = timeouts.Load()
	res.ReplyErrors = replyErrs.list()
	snap := hist.Snapshot()
	res.Latency = snap.Summary()
	if dur > 0 {
		res.Throughput = float64(snap.Count()) / dur.Seconds()
	}
	res.Interrupted = parent.Err() != nil || ctx.Err() != nil
	stopProg()
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancelClose()
	if err := p.closeAll(closeCtx); err != nil {
		return nil, err
	}
	res.Disconnects = p.snapshotCloseCodes()
	return res, nil
}

func (r *RPCResult) text(w io.Writer) {
	fmt.Fprintf(w, "rpc %s (%s, %s) %s\n", r.URL, r.Protocol, r.Command, r.Label)
	fmt.Fprintf(w, "  connections      %d of %d (%d failed)\n", r.Established, r.Conns, r.ConnFailed)
	for _, e := range r.ConnErrors {
		fmt.Fprintf(w, "    error %-40s %d\n", e.What, e.Count)
	}
	offered := "closed loop"
	if r.OfferedRate > 0 {
		offered = strconv.FormatFloat(r.OfferedRate, 'f', 0, 64) + "/s"
	}
	fmt.Fprintf(w, "  requests         %d in %.1f s (%s): %.0f replies/s, %d ok, %d timeouts\n", r.Requests, r.Seconds, offered, r.Throughput, r.OK, r.Timeouts)
	for _, e := range r.ReplyErrors {
		fmt.Fprintf(w, "    reply %-40s %d\n", e.What, e.Count)
	}
	l := r.Latency
	fmt.Fprintf(w, "  latency ms       p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	for _, d := range r.Disconnects {
		fmt.Fprintf(w, "    disconnect %-35s %d\n", d.What, d.Count)
	}
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, "  server cpu       %.0f %% of one core\n", r.ServerCPU)
	}
	fmt.Fprintf(w, "  client cpu       %.0f %% of one core (%d cores)\n", r.ClientCPU, r.Machine.Cores)
	if r.Interrupted {
		fmt.Fprintln(w, "  (interrupted: partial result)")
	}
}
