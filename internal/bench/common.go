package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ClientFlags are the connection options shared by every bench command.
type ClientFlags struct {
	URL       string        `help:"WebSocket endpoint of the server; a comma-separated list spreads connections round-robin over several nodes (connection i goes to URL i mod n)." default:"ws://127.0.0.1:8000/connection/websocket"`
	Protocol  string        `help:"Client protocol format: json or protobuf." enum:"json,protobuf" default:"json"`
	Secret    string        `help:"HMAC secret to sign HS256 connect tokens (sub=user-N)." env:"BENCH_SECRET"`
	TokenFile string        `help:"File with one connect token per line, used round-robin instead of --secret." type:"path"`
	TokenTTL  time.Duration `help:"Lifetime of the tokens signed from --secret." default:"1h"`

	DialConcurrency  int           `help:"Connections being opened at once." default:"64"`
	ConnectRate      float64       `help:"Cap on new connections per second (0 = as fast as --dial-concurrency allows)." default:"0"`
	HandshakeTimeout time.Duration `help:"Limit for dial + WebSocket handshake + connect/subscribe replies, per connection." default:"10s"`
	SourceIPs        []string      `name:"source-ips" help:"Local addresses to spread connections over (default: 127.0.0.2, 127.0.0.3, … when more connections than --per-source-addr go to a loopback server)."`
	PerSourceAddr    int           `help:"Connections per source address before moving to the next (0 = min(60000, local port range - 1000))." default:"0"`

	Duration time.Duration `help:"Length of the measurement phase (hold, publish or rpc loop)." default:"10s"`
	Timeout  time.Duration `help:"Hard cap on the whole run, connection ramp and drain included." default:"2m"`

	ServerPID     int    `help:"PID of the server under test, for RSS (/proc/PID/status VmRSS) and CPU."`
	ServerMetrics string `help:"Prometheus URL of the server (process_resident_memory_bytes), when --server-pid is not available."`

	CPUProfile string `help:"Write the tool's own CPU profile (pprof) to this file." type:"path"`

	JSON  bool   `help:"Print the result as JSON on stdout." name:"json"`
	Label string `help:"Free-form label copied into the result (e.g. the server name)."`
}

func (f *ClientFlags) validate(conns int) error { return f.check(conns, true) }

// check validates the flags; auth says whether connect tokens are needed
// (the server API scenarios open no WebSocket connections).
func (f *ClientFlags) check(conns int, auth bool) error {
	var errs []string
	urls := f.urls()
	var hosts []string
	if len(urls) == 0 {
		errs = append(errs, "--url: missing")
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("--url: %v", err))
		case u.Scheme != "ws" && u.Scheme != "wss":
			errs = append(errs, fmt.Sprintf("--url: scheme must be ws or wss, got %q", u.Scheme))
		case u.Hostname() == "":
			errs = append(errs, "--url: missing host")
		default:
			hosts = append(hosts, u.Hostname())
		}
	}
	if _, err := newCodec(f.Protocol); err != nil {
		errs = append(errs, "--protocol: "+err.Error())
	}
	if auth && f.Secret == "" && f.TokenFile == "" {
		errs = append(errs, "one of --secret or --token-file is required")
	}
	if f.Secret != "" && f.TokenFile != "" {
		errs = append(errs, "--secret and --token-file are mutually exclusive")
	}
	if f.DialConcurrency < 1 || f.DialConcurrency > 10000 {
		errs = append(errs, "--dial-concurrency must be in 1..10000")
	}
	if f.ConnectRate < 0 {
		errs = append(errs, "--connect-rate must not be negative")
	}
	if f.Duration <= 0 {
		errs = append(errs, "--duration must be positive")
	}
	if f.Timeout <= 0 {
		errs = append(errs, "--timeout must be positive")
	}
	if f.HandshakeTimeout <= 0 {
		errs = append(errs, "--handshake-timeout must be positive")
	}
	if f.PerSourceAddr < 0 {
		errs = append(errs, "--per-source-addr must not be negative")
	}
	for _, s := range f.SourceIPs {
		if net.ParseIP(s) == nil {
			errs = append(errs, fmt.Sprintf("--source-ips: %q is not an IP address", s))
		}
	}
	if conns < 0 {
		errs = append(errs, "connection count must not be negative")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if conns > 0 && len(f.SourceIPs) == 0 {
		per := f.perAddr()
		for _, h := range hosts {
			if conns > per && !isLoopbackHost(h) {
				return fmt.Errorf("%d connections exceed %d per source address and the server is not on loopback: give --source-ips", conns, per)
			}
		}
	}
	return nil
}

// urls returns the --url list: comma-separated, blanks dropped.
func (f *ClientFlags) urls() []string {
	var out []string
	for _, s := range strings.Split(f.URL, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (f *ClientFlags) perAddr() int {
	if f.PerSourceAddr > 0 {
		return f.PerSourceAddr
	}
	return defaultPerAddr(ephemeralPorts())
}

// defaultPerAddr keeps 1000 ports of the local range free for everything else, and never
// exceeds 60,000 per address.
func defaultPerAddr(ports int) int {
	n := ports - 1000
	if n > 60000 {
		n = 60000
	}
	if n < 1000 {
		n = 1000
	}
	return n
}

// sourceFunc returns the source address chooser for conns connections, nil when the kernel's
// default source address is enough.
func (f *ClientFlags) sourceFunc(conns int) func(int) net.IP {
	per := f.perAddr()
	if len(f.SourceIPs) > 0 {
		ips := make([]net.IP, len(f.SourceIPs))
		for i, s := range f.SourceIPs {
			ips[i] = net.ParseIP(s)
		}
		return func(idx int) net.IP { return ips[(idx/per)%len(ips)] }
	}
	if conns <= per {
		return nil
	}
	return func(idx int) net.IP { return loopbackSource(idx / per) }
}

// loopbackSource returns the k-th spread source address: 127.0.0.2, 127.0.0.3, … 127.0.1.0, …
func loopbackSource(k int) net.IP {
	n := k + 2
	return net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))
}

// tokenSource returns the connect token for connection idx.
func (f *ClientFlags) tokenSource() (func(int) (string, error), error) {
	return tokenSource(f.Secret, f.TokenFile, f.TokenTTL)
}

// tokenSource gives connection i a token: line i mod n of file when file
// is set, else an HS256 token for sub user-i signed with secret, valid
// for ttl (an hour when not positive).
func tokenSource(secret, file string, ttl time.Duration) (func(int) (string, error), error) {
	if file != "" {
		toks, err := readTokens(file)
		if err != nil {
			return nil, err
		}
		return func(i int) (string, error) { return toks[i%len(toks)], nil }, nil
	}
	key := []byte(secret)
	if ttl <= 0 {
		ttl = time.Hour
	}
	exp := time.Now().Add(ttl).Unix()
	return func(i int) (string, error) { return signToken(key, "user-"+strconv.Itoa(i), exp) }, nil
}

func signToken(secret []byte, sub string, exp int64) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": exp})
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

func readTokens(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer fh.Close()
	var toks []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			toks = append(toks, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("token file %s: no tokens", path)
	}
	return toks, nil
}

// startProfile starts the tool's CPU profile when --cpu-profile is set; stop writes it.
func (f *ClientFlags) startProfile() (stop func(), err error) {
	if f.CPUProfile == "" {
		return func() {}, nil
	}
	fh, err := os.Create(f.CPUProfile)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(fh); err != nil {
		fh.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = fh.Close()
	}, nil
}

// checkFDs raises the open-files limit and fails early when conns cannot fit.
func checkFDs(conns int) error {
	lim, err := raiseNoFile()
	if err != nil {
		return err
	}
	need := uint64(conns) + 256
	if need > lim {
		return fmt.Errorf("%d connections need about %d file descriptors but the limit is %d: raise `ulimit -n` (hard limit: ulimit -Hn) or split the load over several processes", conns, need, lim)
	}
	return nil
}

// pacer hands out send slots at a fixed rate (rate > 0) or immediately (rate == 0).
type pacer struct {
	rate  float64
	start time.Time
	mu    sync.Mutex
	n     int64
}

func newPacer(rate float64) *pacer { return &pacer{rate: rate, start: time.Now()} }

// wait blocks until the next slot is due; false when ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	if p.rate <= 0 {
		return ctx.Err() == nil
	}
	p.mu.Lock()
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	p.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ramp opens n connections with the given concurrency and rate cap, calling open for each
// index, until all are done, ctx ends, or stop returns true.
func ramp(ctx context.Context, n, concurrency int, rate float64, open func(ctx context.Context, idx int)) {
	if concurrency > n {
		concurrency = n
	}
	p := newPacer(rate)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range next {
				open(ctx, idx)
			}
		}()
	}
	for i := 0; i < n; i++ {
		if !p.wait(ctx) {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
}

// cpuMeter measures this process's CPU use over an interval.
type cpuMeter struct {
	wall0 time.Time
	cpu0  time.Duration
}

func startCPU() cpuMeter { return cpuMeter{time.Now(), selfCPU()} }

// percent returns CPU use since start in percent of one core, and the number of cores.
func (m cpuMeter) percent() float64 {
	wall := time.Since(m.wall0)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(selfCPU()-m.cpu0) / float64(wall)
}

// cpuSampler reports this process's CPU use since its previous sample (for progress lines).
type cpuSampler struct{ m cpuMeter }

func newCPUSampler() *cpuSampler { return &cpuSampler{startCPU()} }

func (c *cpuSampler) sample() float64 {
	p := c.m.percent()
	c.m = startCPU()
	return p
}

// Machine describes where a result was measured.
type Machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	CPUModel  string `json:"cpu_model,omitempty"`
	// LoadAvg is /proc/loadavg's 1-minute load when the run started: other work on the
	// machine skews results, so it is recorded with them.
	LoadAvg float64 `json:"load_avg_1m"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.LoadAvg, m.CPUModel = hostLoad()
	return m
}

// textResult is a scenario result that can print itself as text and says
// whether the run failed as a whole.
type textResult interface {
	text(io.Writer)
	failure() error
}

// ErrAllFailed is returned (wrapped) after the result is printed when a run
// measured nothing: every connection, publication, delivery or command
// failed. The command then exits non-zero. A run interrupted before anything
// failed is not a failure.
var ErrAllFailed = errors.New("bench: nothing succeeded")

func allFailed(what string, counts []Count) error {
	if len(counts) > 0 {
		return fmt.Errorf("%w: %s (first error: %s ×%d)", ErrAllFailed, what, counts[0].What, counts[0].Count)
	}
	return fmt.Errorf("%w: %s", ErrAllFailed, what)
}

func (r *ConnsResult) failure() error {
	if r.Established == 0 && r.Failed > 0 {
		return allFailed(fmt.Sprintf("every connection failed (%d of %d)", r.Failed, r.Requested), r.Errors)
	}
	return nil
}

func (r *FanoutResult) failure() error {
	switch {
	case r.Established == 0 && r.ConnFailed > 0:
		return allFailed(fmt.Sprintf("every subscriber connection failed (%d)", r.ConnFailed), r.ConnErrors)
	case r.Published == 0 && r.PublishFailed > 0:
		return allFailed(fmt.Sprintf("every publication failed (%d)", r.PublishFailed), r.PublishErrors)
	case r.Published > 0 && r.Delivered == 0 && !r.Interrupted:
		return allFailed(fmt.Sprintf("no delivery of %d publications reached a subscriber", r.Published), r.Disconnects)
	}
	return nil
}

func (r *RPCResult) failure() error {
	switch {
	case r.Established == 0 && r.ConnFailed > 0:
		return allFailed(fmt.Sprintf("every connection failed (%d)", r.ConnFailed), r.ConnErrors)
	case r.Requests > 0 && r.OK == 0:
		return allFailed(fmt.Sprintf("every command failed (%d)", r.Requests), r.ReplyErrors)
	}
	return nil
}

// execute runs one scenario needing fds connections: the open-files check,
// the tool's CPU profile around run, then the result as JSON or text.
func execute[R textResult](f *ClientFlags, fds int, run func() (R, error)) error {
	if err := checkFDs(fds); err != nil {
		return err
	}
	stopProf, err := f.startProfile()
	if err != nil {
		return err
	}
	res, err := run()
	stopProf()
	if err != nil {
		return err
	}
	if err := writeResult(output, f.JSON, res, res.text); err != nil {
		return err
	}
	return res.failure()
}

// writeResult prints v as indented JSON, or as text via the text func.
func writeResult(w io.Writer, asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write result: %w", err)
		}
		return nil
	}
	text(w)
	return nil
}
