package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/lxzan/gws"
)

// poolConfig describes how a pool opens its connections.
type poolConfig struct {
	urls             []string // connection idx dials urls[idx mod len] ...
	firstFrom        int      // ... except idx >= firstFrom (when > 0), which dial urls[0]
	codec            codec
	token            func(idx int) (string, error)
	handshakeTimeout time.Duration
	readBufferSize   int
	source           func(idx int) net.IP // nil result: let the kernel choose
	channels         func(idx int) []string
	prefix           string // channel prefix; pub channel index is parsed after it
	streams          int    // sequence streams (publishers) tracked per channel; 0 means 1
}

// pool owns a run's connections: their read goroutines (stopped by closeAll), the shared
// counters they update, and the hooks that give publications and replies to the scenario.
type pool struct {
	cfg   poolConfig
	shard [statShards]statShard

	// onPub is called from a connection's read goroutine for every publication.
	onPub func(c *conn, slot int, data []byte, recvNanos int64)
	// onReply is called from a connection's read goroutine for replies to ids above the
	// connect and subscribe ids (publish, rpc).
	onReply func(c *conn, r *protocol.Reply, recvNanos int64)

	wg sync.WaitGroup

	mu          sync.Mutex
	conns       []*conn
	closeCodes  map[string]uint64 // unexpected disconnects by close code or error class
	unsubs      uint64            // server-side unsubscribe pushes
	decodeErrs  uint64
	pings       atomic.Uint64
	established atomic.Int64
	closedEarly atomic.Int64 // connections the server closed while we still wanted them
}

const statShards = 32

// statShard is one stripe of the hot counters, padded to its own cache lines.
type statShard struct {
	delivered atomic.Uint64
	dups      atomic.Uint64
	badStamp  atomic.Uint64
	hist      Histogram
	_         [64]byte
}

func newPool(cfg poolConfig) *pool {
	if cfg.handshakeTimeout <= 0 {
		cfg.handshakeTimeout = 10 * time.Second
	}
	if cfg.readBufferSize <= 0 {
		cfg.readBufferSize = 2048
	}
	return &pool{cfg: cfg, closeCodes: map[string]uint64{}}
}

// conn is one benchmark WebSocket connection. Its trackers are written by its read goroutine
// only and read by others after closeAll returned (or under mu for progress).
type conn struct {
	p        *pool
	idx      int
	ws       *gws.Conn
	channels []string
	slotIdx  []int // numeric suffix of each channel, for fast push routing

	pong        bool // server wants pongs; read goroutine only after connect reply
	pendingSubs int  // read goroutine only
	ready       chan error
	up          atomic.Bool // connect and subscribe replies all arrived (set on the read goroutine)
	closing     atomic.Bool // we are closing it
	serverGone  atomic.Bool // the server closed it while we still wanted it
	done        chan struct{}
	nextID      atomic.Uint32

	mu       sync.Mutex
	trackers []seqTracker // slot*streams + publisher
}

var errClosedDuringSetup = errors.New("connection closed during connect/subscribe")

// dial opens connection idx, sends connect, subscribes to its channels and waits until every
// reply arrived. It returns the time from dial to the last subscribe reply.
func (p *pool) dial(ctx context.Context, idx int) (*conn, time.Duration, error) {
	start := time.Now()
	tok, err := p.cfg.token(idx)
	if err != nil {
		return nil, 0, err
	}
	c := &conn{p: p, idx: idx, ready: make(chan error, 1), done: make(chan struct{})}
	if p.cfg.channels != nil {
		c.channels = p.cfg.channels(idx)
	}
	c.trackers = make([]seqTracker, len(c.channels)*max(1, p.cfg.streams))
	c.slotIdx = make([]int, len(c.channels))
	for i, ch := range c.channels {
		n, err := strconv.Atoi(ch[len(p.cfg.prefix):])
		if err != nil {
			n = -1
		}
		c.slotIdx[i] = n
	}
	c.nextID.Store(uint32(len(c.channels) + 1))

	hdr := http.Header{}
	if sp := p.cfg.codec.subprotocol(); sp != "" {
		hdr.Set("Sec-WebSocket-Protocol", sp)
	}
	var src net.IP
	if p.cfg.source != nil {
		src = p.cfg.source(idx)
	}
	timeout := p.cfg.handshakeTimeout
	opt := &gws.ClientOption{
		Addr:             p.urlOf(idx),
		RequestHeader:    hdr,
		HandshakeTimeout: timeout,
		ReadBufferSize:   p.cfg.readBufferSize,
		NewDialer: func() (gws.Dialer, error) {
			d := &net.Dialer{Timeout: timeout}
			if src != nil {
				d.LocalAddr = &net.TCPAddr{IP: src}
			}
			return d, nil
		},
	}
	ws, _, err := gws.NewClient(c, opt)
	if err != nil {
		return nil, 0, fmt.Errorf("dial: %w", err)
	}
	c.ws = ws
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ws.ReadLoop()
	}()
	frame, err := p.cfg.codec.appendCommand(nil, &protocol.Command{
		Id:      1,
		Connect: &protocol.ConnectRequest{Token: tok, Name: "switchboard-bench"},
	})
	if err == nil {
		err = ws.WriteMessage(p.cfg.codec.opcode(), frame)
	}
	if err == nil {
		t := time.NewTimer(timeout)
		select {
		case err = <-c.ready:
		case <-t.C:
			err = errors.New("timeout waiting for connect/subscribe replies")
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
	}
	if err != nil {
		c.close()
		return nil, 0, err
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	p.established.Add(1)
	return c, time.Since(start), nil
}

// urlOf returns the endpoint connection idx dials.
func (p *pool) urlOf(idx int) string {
	if p.cfg.firstFrom > 0 && idx >= p.cfg.firstFrom {
		return p.cfg.urls[0]
	}
	return p.cfg.urls[idx%len(p.cfg.urls)]
}

// close closes the connection without counting it as a server disconnect.
func (c *conn) close() {
	c.closing.Store(true)
	if c.ws != nil {
		_ = c.ws.NetConn().Close()
	}
}

// write sends one command frame.
func (c *conn) write(frame []byte) error {
	return c.ws.WriteMessage(c.p.cfg.codec.opcode(), frame)
}

func (c *conn) signal(err error) {
	select {
	case c.ready <- err:
	default:
	}
}

// OnOpen implements gws.Event.
func (c *conn) OnOpen(*gws.Conn) {}

// OnPing implements gws.Event (WebSocket-level ping; Centrifugo pings at protocol level).
func (c *conn) OnPing(s *gws.Conn, payload []byte) { _ = s.WritePong(payload) }

// OnPong implements gws.Event.
func (c *conn) OnPong(*gws.Conn, []byte) {}

// OnClose implements gws.Event: a close we did not ask for is counted by its code.
func (c *conn) OnClose(_ *gws.Conn, err error) {
	defer close(c.done)
	key := "io: " + errClass(err)
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		key = "close " + strconv.Itoa(int(ce.Code))
		if len(ce.Reason) > 0 {
			key += " " + truncate(string(ce.Reason), 60)
		}
	}
	if !c.up.Load() {
		// Still in dial: the failure is reported by dial, not as a disconnect.
		c.signal(fmt.Errorf("%w: %s", errClosedDuringSetup, key))
		return
	}
	if c.closing.Load() {
		return
	}
	c.serverGone.Store(true)
	c.p.closedEarly.Add(1)
	c.p.mu.Lock()
	if len(c.p.closeCodes) < 64 {
		c.p.closeCodes[key]++
	} else {
		c.p.closeCodes["other"]++
	}
	c.p.mu.Unlock()
}

// OnMessage implements gws.Event; it runs on the connection's read goroutine.
func (c *conn) OnMessage(_ *gws.Conn, m *gws.Message) {
	now := time.Now().UnixNano()
	err := c.p.cfg.codec.decode(m.Bytes(), func(r *protocol.Reply) { c.handle(r, now) }, func(ch, data []byte) {
		if c.p.onPub != nil {
			c.p.onPub(c, c.slotOfBytes(ch), data, now)
		}
	})
	_ = m.Close()
	if err != nil {
		c.p.mu.Lock()
		c.p.decodeErrs++
		c.p.mu.Unlock()
	}
}

func (c *conn) handle(r *protocol.Reply, now int64) {
	if r == nil { // server ping
		c.p.pings.Add(1)
		if c.pong {
			_ = c.write(c.p.cfg.codec.pong())
		}
		return
	}
	if r.Id == 0 {
		if r.Push != nil {
			c.handlePush(r.Push, now)
		}
		return
	}
	switch {
	case r.Id == 1:
		if r.Error != nil {
			c.signal(fmt.Errorf("connect: error %d %s", r.Error.Code, r.Error.Message))
			return
		}
		if r.Connect != nil {
			c.pong = r.Connect.Pong
		}
		if len(c.channels) == 0 {
			c.up.Store(true)
			c.signal(nil)
			return
		}
		var frame []byte
		var err error
		for i, ch := range c.channels {
			frame, err = c.p.cfg.codec.appendCommand(frame, &protocol.Command{
				Id: uint32(i + 2), Subscribe: &protocol.SubscribeRequest{Channel: ch},
			})
			if err != nil {
				break
			}
		}
		c.pendingSubs = len(c.channels)
		if err == nil {
			err = c.write(frame)
		}
		if err != nil {
			c.signal(fmt.Errorf("subscribe: %w", err))
		}
	case int(r.Id) <= len(c.channels)+1:
		if r.Error != nil {
			c.signal(fmt.Errorf("subscribe %s: error %d %s", c.channels[r.Id-2], r.Error.Code, r.Error.Message))
			return
		}
		c.pendingSubs--
		if c.pendingSubs == 0 {
			c.up.Store(true)
			c.signal(nil)
		}
	default:
		if c.p.onReply != nil {
			c.p.onReply(c, r, now)
		}
	}
}

func (c *conn) handlePush(p *protocol.Push, now int64) {
	switch {
	case p.Pub != nil:
		slot := c.slotOf(p.Channel)
		if c.p.onPub != nil {
			c.p.onPub(c, slot, p.Pub.Data, now)
		}
	case p.Unsubscribe != nil:
		c.p.mu.Lock()
		c.p.unsubs++
		c.p.mu.Unlock()
	case p.Disconnect != nil:
		c.p.mu.Lock()
		c.p.closeCodes["push disconnect "+strconv.Itoa(int(p.Disconnect.Code))]++
		c.p.mu.Unlock()
	}
}

// slotOfBytes is slotOf without converting ch to a string.
func (c *conn) slotOfBytes(ch []byte) int {
	if len(c.channels) == 1 {
		if string(ch) == c.channels[0] {
			return 0
		}
		return -1
	}
	for i, s := range c.channels {
		if string(ch) == s {
			return i
		}
	}
	return -1
}

// slotOf maps a channel name to this connection's subscription slot, -1 if unknown.
func (c *conn) slotOf(ch string) int {
	if len(c.channels) == 1 {
		if c.channels[0] == ch {
			return 0
		}
		return -1
	}
	if len(ch) > len(c.p.cfg.prefix) {
		if n, err := strconv.Atoi(ch[len(c.p.cfg.prefix):]); err == nil {
			for i, s := range c.slotIdx {
				if s == n {
					return i
				}
			}
		}
	}
	for i, s := range c.channels {
		if s == ch {
			return i
		}
	}
	return -1
}

// closeAll closes every connection and waits (bounded by ctx) for their read goroutines.
func (p *pool) closeAll(ctx context.Context) error {
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close connections: %w", ctx.Err())
	}
}

// snapshotCloseCodes returns the unexpected disconnects sorted by key.
func (p *pool) snapshotCloseCodes() []Count {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sortedCounts(p.closeCodes)
}

// Count is a labelled count in reports (an error text, a close code).
type Count struct {
	What  string `json:"what"`
	Count uint64 `json:"count"`
}

func sortedCounts(m map[string]uint64) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].What < out[j].What
	})
	return out
}

func (p *pool) delivered() uint64 {
	var n uint64
	for i := range p.shard {
		n += p.shard[i].delivered.Load()
	}
	return n
}

func (p *pool) latency() *Histogram {
	h := new(Histogram)
	for i := range p.shard {
		h.Merge(&p.shard[i].hist)
	}
	return h
}

// errClass shortens an error to a stable class for counting (no addresses or ports).
func errClass(err error) string {
	if err == nil {
		return "closed"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		if ne.Err != nil {
			return ne.Op + ": " + errClass(ne.Err)
		}
		return ne.Op
	}
	return truncate(err.Error(), 80)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// errCounter keeps the first distinct error texts and their counts, bounded.
type errCounter struct {
	mu sync.Mutex
	m  map[string]uint64
	n  uint64
}

func (e *errCounter) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]uint64{}
	}
	e.n++
	k := errClass(err)
	if _, ok := e.m[k]; ok || len(e.m) < 20 {
		e.m[k]++
	} else {
		e.m["other"]++
	}
}

func (e *errCounter) total() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func (e *errCounter) list() []Count {
	e.mu.Lock()
	defer e.mu.Unlock()
	return sortedCounts(e.m)
}
