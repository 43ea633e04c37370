package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	relayclient "github.com/switchboard-rt/switchboard/client/relay"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// RelayCmd loads the game relay: clients in rooms, each sending events
// at a rate; every receiver measures latency (send time in the payload)
// and counts what it missed per sender.
type RelayCmd struct {
	Addr       string        `required:"" help:"Relay address, host:port (UDP); a comma-separated list spreads the clients over several relays (see --spread)."`
	Spread     string        `default:"clients" enum:"clients,rooms" help:"With several --addr: clients (client i to relay i mod n, so every room has members on each relay and events cross between processes) or rooms (room k wholly on relay k mod n)."`
	Pin        string        `help:"SHA-256 (hex) of the relay certificate to accept (relay-cert prints it; the development certificate's is logged); a comma-separated list accepts any of them (several relays with certificates of their own)."`
	Insecure   bool          `help:"Accept any relay certificate."`
	Secret     string        `help:"HMAC secret to sign HS256 connect tokens (sub=user-N) for a relay with relay.auth token." env:"BENCH_SECRET"`
	TokenFile  string        `help:"File with one connect token per line, used round-robin instead of --secret." type:"path"`
	TokenTTL   time.Duration `help:"Lifetime of the tokens signed from --secret." default:"1h"`
	Protocol   string        `default:"native" enum:"native,issun" help:"native (switchboard-relay/1) or issun (ISSUN 0.10 profile: one QUIC stream per event)."`
	Clients    int           `short:"n" default:"100" help:"Clients."`
	RoomSize   int           `default:"8" help:"Members per room."`
	Rate       float64       `default:"1.5" help:"Events per second each client sends."`
	Duration   time.Duration `default:"10s" help:"How long clients send."`
	Payload    int           `default:"64" help:"Event payload bytes (at least 16: send time and sequence)."`
	Unreliable bool          `help:"Send in datagrams (native only)."`
	Sockets    int           `default:"4" help:"UDP sockets the clients share (QUIC multiplexes connections on one); 0 gives every client its own, as separate game processes have."`
	Idle       time.Duration `default:"0s" help:"Hold the connected clients this long before sending, and report the server's RSS then (needs --server-pid)."`
	ServerPID  int           `help:"PID of the relay's process: its RSS and CPU are reported."`
	CPUProfile string        `help:"Write the tool's own CPU profile (pprof) to this file." type:"path"`
	JSON       bool          `help:"Print the result as JSON."`
}

// Validate checks the flags.
func (c *RelayCmd) Validate() error { return c.validate() }

func (c *RelayCmd) validate() error {
	switch {
	case c.Clients < 2:
		return errors.New("--clients: at least 2")
	case c.RoomSize < 2:
		return errors.New("--room-size: at least 2")
	case c.Rate <= 0:
		return errors.New("--rate: must be positive")
	case c.Duration <= 0:
		return errors.New("--duration: must be positive")
	case c.Payload < 16 || c.Payload > 60000:
		return errors.New("--payload: 16 to 60000 bytes")
	case c.Unreliable && c.Protocol != "native":
		return errors.New("--unreliable: native protocol only")
	case c.Sockets < 0:
		return errors.New("--sockets: 0 or more")
	case c.Idle < 0:
		return errors.New("--idle: must not be negative")
	case c.Idle > 0 && c.ServerPID <= 0:
		return errors.New("--idle: needs --server-pid to read the server's RSS")
	case c.Secret != "" && c.TokenFile != "":
		return errors.New("--secret and --token-file are mutually exclusive")
	case c.Pin == "" && !c.Insecure:
		return errors.New("--pin or --insecure: how to accept the relay's certificate")
	}
	if _, err := c.pins(); err != nil {
		return err
	}
	if len(c.addrs()) == 0 {
		return errors.New("--addr: no address")
	}
	for _, a := range c.addrs() {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return fmt.Errorf("--addr: %q is not host:port", a)
		}
	}
	if c.TokenFile != "" {
		if _, err := readTokens(c.TokenFile); err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
	}
	return nil
}

// pins are the certificate hashes of --pin.
func (c *RelayCmd) pins() ([][]byte, error) {
	var out [][]byte
	for _, p := range strings.Split(c.Pin, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		b, err := hex.DecodeString(p)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("--pin: %q is not 64 hex digits", p)
		}
		out = append(out, b)
	}
	if c.Pin != "" && len(out) == 0 {
		return nil, errors.New("--pin: no hash")
	}
	return out, nil
}

// addrs lists the relays of --addr.
func (c *RelayCmd) addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// relayFor is the index in --addr of the relay of client i in room.
func (c *RelayCmd) relayFor(i, room int) int {
	n := len(c.addrs())
	if c.Spread == "rooms" {
		return room % n
	}
	return i % n
}

// addrFor is the relay of client i in room.
func (c *RelayCmd) addrFor(i, room int) string { return c.addrs()[c.relayFor(i, room)] }

// RelayResult is the outcome of a relay run.
type RelayResult struct {
	Protocol    string  `json:"protocol"`
	Relays      int     `json:"relays"`
	Spread      string  `json:"spread,omitempty"`
	Unreliable  bool    `json:"unreliable"`
	Clients     int     `json:"clients"`
	Connected   int     `json:"connected"`
	ConnFailed  int     `json:"conn_failed"`
	ConnectSecs float64 `json:"connect_seconds"`
	Rooms       int     `json:"rooms"`
	Sent        uint64  `json:"sent"`
	Expected    uint64  `json:"expected_deliveries"`
	Delivered   uint64  `json:"delivered"`
	Lost        uint64  `json:"lost"`
	Duplicates  uint64  `json:"duplicates_or_reordered"`
	PerSecond   float64 `json:"deliveries_per_second"`
	Latency     Latency `json:"latency"`
	// With several relays: the deliveries to a receiver on the sender's
	// relay, and those forwarded from another relay.
	SameRelay    *Latency `json:"same_relay_latency,omitempty"`
	CrossRelay   *Latency `json:"cross_relay_latency,omitempty"`
	Disconnected int      `json:"disconnected"`
	FirstError   string   `json:"first_error,omitempty"`
	// Server figures, with --server-pid: RSS before the clients, after
	// they connected (when --idle held them) and after sending; CPU in
	// percent of one core while sending. ToolCPU is this process's.
	ServerRSSBefore uint64  `json:"server_rss_before_bytes,omitempty"`
	ServerRSSIdle   uint64  `json:"server_rss_idle_bytes,omitempty"`
	ServerRSSAfter  uint64  `json:"server_rss_after_bytes,omitempty"`
	ServerCPU       float64 `json:"server_cpu_percent,omitempty"`
	ToolCPU         float64 `json:"tool_cpu_percent"`
	// KernelDrops counts datagrams the kernel dropped at the relay's UDP
	// port during the run (full receive buffer; Linux, one relay on this host).
	KernelDrops *uint64 `json:"kernel_udp_drops,omitempty"`
	Machine     Machine `json:"machine"`
}

func (r *RelayResult) text(w io.Writer) {
	fmt.Fprintf(w, "relay %s%s: %d/%d clients in %d rooms (connect %.2fs, %d failed)\n", r.Protocol,
		map[bool]string{true: " unreliable", false: ""}[r.Unreliable], r.Connected, r.Clients, r.Rooms, r.ConnectSecs, r.ConnFailed)
	if r.Relays > 1 {
		fmt.Fprintf(w, "spread over %d relays by %s\n", r.Relays, r.Spread)
	}
	fmt.Fprintf(w, "sent %d, deliveries %d of %d expected (lost %d, duplicated or reordered %d), %.0f deliveries/s\n",
		r.Sent, r.Delivered, r.Expected, r.Lost, r.Duplicates, r.PerSecond)
	l := r.Latency
	fmt.Fprintf(w, "latency ms: p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f (mean %.2f)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	for _, x := range []struct {
		name string
		l    *Latency
	}{{"same relay", r.SameRelay}, {"cross relay", r.CrossRelay}} {
		if x.l != nil && x.l.Count > 0 {
			fmt.Fprintf(w, "  %s (%d): p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", x.name, x.l.Count, x.l.P50, x.l.P90, x.l.P99, x.l.P999, x.l.Max)
		}
	}
	if r.ConnFailed > 0 {
		fmt.Fprintf(w, "refused or failed to connect: %d of %d\n", r.ConnFailed, r.Clients)
	}
	if r.Disconnected > 0 {
		fmt.Fprintf(w, "disconnected during the run: %d\n", r.Disconnected)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	if r.ServerRSSBefore > 0 {
		fmt.Fprintf(w, "server rss MB: before %.1f", mb(r.ServerRSSBefore))
		if r.ServerRSSIdle > 0 {
			fmt.Fprintf(w, ", %d clients idle %.1f (%.1f KB per client)", r.Connected, mb(r.ServerRSSIdle),
				float64(r.ServerRSSIdle-min(r.ServerRSSIdle, r.ServerRSSBefore))/1024/float64(max(r.Connected, 1)))
		}
		fmt.Fprintf(w, ", after %.1f; server cpu %.0f %% of one core while sending\n", mb(r.ServerRSSAfter), r.ServerCPU)
	}
	fmt.Fprintf(w, "tool cpu %.0f %% of one core while sending", r.ToolCPU)
	if r.KernelDrops != nil {
		fmt.Fprintf(w, "; kernel drops at the relay's UDP port %d", *r.KernelDrops)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "machine: %d cores, load %.2f, %s\n", r.Machine.Cores, r.Machine.LoadAvg, r.Machine.GoVersion)
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func (r *RelayResult) failure() error {
	if r.Connected == 0 {
		return allFailed(fmt.Sprintf("every relay connection failed (%d): %s", r.ConnFailed, r.FirstError), nil)
	}
	if r.Sent > 0 && r.Delivered == 0 {
		return allFailed("no event reached a receiver", nil)
	}
	return nil
}

// benchPeer is one load client of either protocol.
type benchPeer interface {
	id() wire.NodeID
	send(payload []byte) error
	close()
}

type relayRun struct {
	cmd  *RelayCmd
	tls  *tls.Config
	hist Histogram
	// same and cross split hist by the sender's relay (payload byte 16),
	// with several relays and payloads of 17 bytes or more.
	same, cross Histogram
	// per receiver: last sequence seen per sender
	delivered, dups atomic.Uint64
	errMu           sync.Mutex
	firstErr        string
	disconnected    atomic.Int64
	// transports are the shared UDP sockets (--sockets), taken round
	// robin by the clients as they dial.
	transports []*quic.Transport
	dialed     atomic.Int64
	// token gives client i its connect token ("" without --secret or
	// --token-file).
	token func(i int) (string, error)
}

// nextTransport returns the shared socket of the next client, round
// robin (nil: a socket of its own).
func (r *relayRun) nextTransport() *quic.Transport {
	if len(r.transports) == 0 {
		return nil
	}
	return r.transports[int(r.dialed.Add(1))%len(r.transports)]
}

func (r *relayRun) fail(err error) {
	r.errMu.Lock()
	if r.firstErr == "" {
		r.firstErr = err.Error()
	}
	r.errMu.Unlock()
}

// receive accounts one event payload received by a client.
// home is the receiver's relay (index in --addr).
func (r *relayRun) receive(last map[wire.NodeID]uint64, sender wire.NodeID, p []byte, home int) {
	if len(p) < 16 {
		return
	}
	sent := int64(binary.LittleEndian.Uint64(p))
	seq := binary.LittleEndian.Uint64(p[8:])
	lat := time.Now().UnixNano() - sent
	r.hist.Record(lat)
	if len(p) > 16 && len(r.cmd.addrs()) > 1 {
		if int(p[16]) == home {
			r.same.Record(lat)
		} else {
			r.cross.Record(lat)
		}
	}
	r.delivered.Add(1)
	if prev, ok := last[sender]; ok && seq <= prev {
		r.dups.Add(1)
		return
	}
	last[sender] = seq
}

// Run connects the clients, lets them send for the duration, drains and
// prints the result.
func (c *RelayCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	res, err := c.run(ctx)
	if err != nil {
		return err
	}
	if err := writeResult(output, c.JSON, res, res.text); err != nil {
		return err
	}
	return res.failure()
}

func (c *RelayCmd) tlsConfig() *tls.Config {
	tc := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"} // checked below when pinned
	if pins, _ := c.pins(); len(pins) > 0 {                              // validated
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			for _, want := range pins {
				if bytes.Equal(sum[:], want) {
					return nil
				}
			}
			return fmt.Errorf("relay certificate sha256 %x is not --pin", sum)
		}
	}
	return tc
}

func (c *RelayCmd) run(ctx context.Context) (*RelayResult, error) {
	r := &relayRun{cmd: c, tls: c.tlsConfig(), token: func(int) (string, error) { return "", nil }}
	if c.Secret != "" || c.TokenFile != "" {
		tok, err := tokenSource(c.Secret, c.TokenFile, c.TokenTTL)
		if err != nil {
			return nil, err
		}
		r.token = tok
	}
	stopProf, err := (&ClientFlags{CPUProfile: c.CPUProfile}).startProfile()
	if err != nil {
		return nil, err
	}
	defer stopProf()
	for range c.Sockets {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, fmt.Errorf("--sockets: %w", err)
		}
		tr := &quic.Transport{Conn: udp}
		defer udp.Close()
		defer tr.Close()
		r.transports = append(r.transports, tr)
	}
	probe := &serverProbe{pid: c.ServerPID}
	rss := func() uint64 {
		if !probe.enabled() {
			return 0
		}
		v, err := probe.rss(ctx)
		if err != nil {
			r.fail(fmt.Errorf("--server-pid: %w", err))
		}
		return v
	}
	rssBefore := rss()
	drops := func() (uint64, bool) { return 0, false }
	if _, p, err := net.SplitHostPort(c.addrs()[0]); err == nil && len(c.addrs()) == 1 {
		if port, err := strconv.Atoi(p); err == nil {
			drops = func() (uint64, bool) { n, err := udpPortDrops(port); return n, err == nil }
		}
	}
	drops0, dropsOK := drops()
	var tag [4]byte
	_, _ = rand.Read(tag[:])
	runID := hex.EncodeToString(tag[:])
	res := &RelayResult{Protocol: c.Protocol, Unreliable: c.Unreliable, Clients: c.Clients, Machine: machine(), Relays: len(c.addrs()),
		ServerRSSBefore: rssBefore}
	if res.Relays > 1 {
		res.Spread = c.Spread
	}
	res.Rooms = (c.Clients + c.RoomSize - 1) / c.RoomSize

	peers := make([]benchPeer, c.Clients)
	roomOf := make([]int, c.Clients)
	start := time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range peers {
		roomOf[i] = i / c.RoomSize
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			room := fmt.Sprintf("bench-%s-%d", runID, roomOf[i])
			tok, err := r.token(i)
			var p benchPeer
			if err == nil {
				p, err = c.connect(ctx, r, c.relayFor(i, roomOf[i]), room, tok)
			}
			if err != nil {
				failed.Add(1)
				r.fail(err)
				return
			}
			peers[i] = p
		}()
	}
	wg.Wait()
	res.ConnectSecs = time.Since(start).Seconds()
	res.ConnFailed = int(failed.Load())
	members := make([]int, res.Rooms)
	for i, p := range peers {
		if p != nil {
			res.Connected++
			members[roomOf[i]]++
		}
	}
	defer func() {
		for _, p := range peers {
			if p != nil {
				p.close()
			}
		}
	}()
	if res.Connected == 0 {
		res.FirstError = r.firstErr
		return res, nil
	}

	if c.Idle > 0 {
		select {
		case <-time.After(c.Idle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res.ServerRSSIdle = rss()
	}
	serverCPU0, _ := probe.cpu(ctx)
	toolCPU := startCPU()

	// Send for the duration, each client on its own ticker, starts spread
	// over one period.
	sendCtx, stop := context.WithTimeout(ctx, c.Duration)
	defer stop()
	period := time.Duration(float64(time.Second) / c.Rate)
	var sent atomic.Uint64
	var expected atomic.Uint64
	sendStart := time.Now()
	for i, p := range peers {
		if p == nil {
			continue
		}
		others := uint64(members[roomOf[i]] - 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seqBuf [8]byte
			_, _ = rand.Read(seqBuf[:2])
			delay := time.Duration(binary.LittleEndian.Uint16(seqBuf[:2])) * period / 65536
			select {
			case <-time.After(delay):
			case <-sendCtx.Done():
				return
			}
			t := time.NewTicker(period)
			defer t.Stop()
			payload := make([]byte, c.Payload)
			if len(payload) > 16 {
				payload[16] = byte(c.relayFor(i, roomOf[i])) // the sender's relay
			}
			for seq := uint64(1); ; seq++ {
				binary.LittleEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				binary.LittleEndian.PutUint64(payload[8:], seq)
				if err := p.send(payload); err != nil {
					r.fail(err)
					return
				}
				sent.Add(1)
				expected.Add(others)
				select {
				case <-t.C:
				case <-sendCtx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(sendStart)
	res.ToolCPU = toolCPU.percent()
	if probe.enabled() {
		if cpu1, err := probe.cpu(ctx); err == nil {
			res.ServerCPU = 100 * float64(cpu1-serverCPU0) / float64(elapsed)
		}
	}
	// Drain: wait until everything expected arrived or two seconds passed
	// without progress.
	last, idle := r.delivered.Load(), time.Now()
	for r.delivered.Load() < expected.Load() && time.Since(idle) < 2*time.Second && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		if n := r.delivered.Load(); n != last {
			last, idle = n, time.Now()
		}
	}
	res.Sent, res.Expected, res.Delivered, res.Duplicates = sent.Load(), expected.Load(), r.delivered.Load(), r.dups.Load()
	if res.Delivered < res.Expected {
		res.Lost = res.Expected - res.Delivered
	}
	res.PerSecond = float64(res.Delivered) / elapsed.Seconds()
	snap := r.hist.Snapshot()
	res.Latency = snap.Summary()
	if res.Relays > 1 {
		same, cross := r.same.Snapshot().Summary(), r.cross.Snapshot().Summary()
		res.SameRelay, res.CrossRelay = &same, &cross
	}
	res.Disconnected = int(r.disconnected.Load())
	res.ServerRSSAfter = rss()
	if d1, ok := drops(); ok && dropsOK {
		d := d1 - min(d1, drops0)
		res.KernelDrops = &d
	}
	r.errMu.Lock()
	res.FirstError = r.firstErr
	r.errMu.Unlock()
	return res, nil
}

// connect dials one client to relay home, authenticates it with token
// (none when empty) and joins it to room.
func (c *RelayCmd) connect(ctx context.Context, r *relayRun, home int, room, token string) (benchPeer, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr := c.addrs()[home]
	if c.Protocol == "issun" {
		return dialISSUNPeer(cctx, r, home, room, token, r.nextTransport())
	}
	var mu sync.Mutex // the event and datagram readers may both call OnEvent
	last := map[wire.NodeID]uint64{}
	onEvent := func(ev relayclient.Event) {
		mu.Lock()
		r.receive(last, ev.Sender, ev.Payload, home)
		mu.Unlock()
	}
	cl, err := relayclient.Dial(cctx, addr, relayclient.Options{TLS: r.tls, Token: token, Name: "bench", Transport: r.nextTransport(), OnEvent: onEvent})
	if err != nil {
		return nil, err
	}
	rm, err := cl.Join(cctx, room, relayclient.JoinOptions{Create: true, MaxMembers: uint32(c.RoomSize)})
	if err != nil {
		_ = cl.Close()
		return nil, err
	}
	p := &nativePeer{c: cl, room: rm, unreliable: c.Unreliable}
	go func() {
		for range cl.Events() { // closed when the client ends (events go to OnEvent)
		}
		if err := cl.Err(); err != nil {
			r.disconnected.Add(1)
			r.fail(err)
		}
	}()
	go func() {
		for range cl.Presence() {
		}
	}()
	return p, nil
}

type nativePeer struct {
	c          *relayclient.Client
	room       *relayclient.Room
	unreliable bool
}

func (p *nativePeer) id() wire.NodeID { return p.c.NodeID() }
func (p *nativePeer) send(b []byte) error {
	if p.unreliable {
		_ = p.room.SendUnreliable(1, b) // a full datagram queue drops: that is unreliable delivery
		return nil
	}
	return p.room.Send(1, b)
}
func (p *nativePeer) close() { _ = p.c.Close() }

// issunPeer speaks the ISSUN 0.10 profile: a stream per event each way.
type issunPeer struct {
	qc   *quic.Conn
	node wire.NodeID
	done chan struct{}
}

func dialISSUNPeer(ctx context.Context, r *relayRun, home int, room, token string, tr *quic.Transport) (*issunPeer, error) {
	qconf := &quic.Config{MaxIdleTimeout: 30 * time.Second, MaxIncomingUniStreams: 100}
	addr := r.cmd.addrs()[home]
	var qc *quic.Conn
	var err error
	if tr == nil {
		qc, err = quic.DialAddr(ctx, addr, r.tls.Clone(), qconf)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
			qc, err = tr.Dial(ctx, ua, r.tls.Clone(), qconf)
		}
	}
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	b[7] &= 0x7f
	b[0] |= 1
	p := &issunPeer{qc: qc, node: wire.NodeID(binary.LittleEndian.Uint64(b[:])), done: make(chan struct{})}
	fail := func(err error) (*issunPeer, error) { _ = qc.CloseWithError(0, ""); return nil, err }
	if err := p.stream(b[:]); err != nil {
		return fail(err)
	}
	rs, err := qc.AcceptUniStream(ctx)
	if err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(rs, b[:]); err != nil {
		return fail(err)
	}
	if token != "" {
		auth := &wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "bench" + wire.SuffixAuth, Payload: wire.AuthRequest{Token: token}.Append(nil)}
		if err := p.stream(wire.AppendEventFrame(nil, auth)); err != nil {
			return fail(err)
		}
		if err := p.await(ctx, wire.SuffixWelcome, "auth"); err != nil {
			return fail(err)
		}
	}
	join := &wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "bench" + wire.SuffixJoin, Payload: wire.RoomRequest{Room: room}.Append(nil)}
	if err := p.stream(wire.AppendEventFrame(nil, join)); err != nil {
		return fail(err)
	}
	if err := p.await(ctx, wire.SuffixJoined, "join "+room); err != nil {
		return fail(err)
	}
	go func() {
		defer close(p.done)
		last := map[wire.NodeID]uint64{}
		for {
			ev, err := p.read(context.Background())
			if err != nil {
				var ae *quic.ApplicationError
				if errors.As(err, &ae) && ae.Remote {
					r.disconnected.Add(1)
					r.fail(err)
				}
				return
			}
			if ev.TypeName == "bench::Tick" {
				r.receive(last, ev.Metadata.Sender, ev.Payload, home)
			}
		}
	}()
	return p, nil
}

// await reads events until one whose type name ends in suffix (nil) or
// an error answer (an error naming what, the request).
func (p *issunPeer) await(ctx context.Context, suffix, what string) error {
	for {
		ev, err := p.read(ctx)
		if err != nil {
			return err
		}
		if strings.HasSuffix(ev.TypeName, suffix) {
			return nil
		}
		if strings.HasSuffix(ev.TypeName, wire.SuffixError) {
			a, _ := wire.DecodeErrorAnswer(ev.Payload)
			return fmt.Errorf("%s: %s", what, a.Message)
		}
	}
}

func (p *issunPeer) read(ctx context.Context) (wire.Event, error) {
	rs, err := p.qc.AcceptUniStream(ctx)
	if err != nil {
		return wire.Event{}, err
	}
	_, body, err := wire.ReadFrame(rs, 0, 1<<20, nil)
	rs.CancelRead(0)
	if err != nil {
		return wire.Event{}, err
	}
	return wire.DecodeEvent(body, 0)
}

func (p *issunPeer) stream(b []byte) error {
	st, err := p.qc.OpenUniStreamSync(context.Background())
	if err != nil {
		return err
	}
	if _, err := st.Write(b); err != nil {
		return err
	}
	return st.Close()
}

func (p *issunPeer) id() wire.NodeID { return p.node }
func (p *issunPeer) send(b []byte) error {
	return p.stream(wire.AppendEventFrame(nil, &wire.Event{Scope: wire.Scope{Kind: wire.ScopeBroadcast}, TypeName: "bench::Tick", Payload: b}))
}
func (p *issunPeer) close() {
	_ = p.qc.CloseWithError(0, "")
	<-p.done
}
