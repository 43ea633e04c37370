package circle_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
	"github.com/switchboard-rt/switchboard/protocol/circles"
	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type stackOpts struct {
	keys       []string
	enableAuth bool
	dataDir    string
	timeout    time.Duration
	maxSteps   uint64
	clock      *clock
	player     func(dispatch.Runner) (circle.Player, func())
	cfg        func(*circle.Config)
}

type stack struct {
	srv *circle.Server
	ts  *httptest.Server
	url string
}

// newStack boots store + engine + dispatcher + circle server behind
// httptest; everything is shut down at cleanup.
func newStack(t testing.TB, o stackOpts) *stack {
	t.Helper()
	ctx := context.Background()
	dir := o.dataDir
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Dir: dir})
	require.NoError(t, err)
	eng, err := script.New(script.Config{Store: st, Timeout: o.timeout, MaxSteps: o.maxSteps, Metrics: prometheus.NewRegistry()})
	require.NoError(t, err)
	var player circle.Player
	var stopPlayer func()
	if o.player != nil {
		player, stopPlayer = o.player(eng)
	} else {
		l, err := dispatch.NewLocal(dispatch.Config{}, eng)
		require.NoError(t, err)
		player, stopPlayer = l, func() { require.NoError(t, l.Shutdown(ctx)) }
	}
	cfg := circle.Config{Keys: o.keys, EnableAuth: o.enableAuth, Player: player, Metrics: prometheus.NewRegistry()}
	if o.clock != nil {
		cfg.Now = o.clock.Now
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	srv, err := circle.New(cfg)
	require.NoError(t, err)
	ts := httptest.NewServer(srv)
	s := &stack{srv: srv, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http")}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(sctx))
		ts.Close()
		stopPlayer()
		require.NoError(t, st.Close())
	})
	return s
}

type key struct {
	priv *secp256k1.PrivateKey
	comp string // compressed hex
	unc  string // uncompressed hex
}

func newKey(t testing.TB) key {
	t.Helper()
	p, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	return key{priv: p, comp: hex.EncodeToString(p.PubKey().SerializeCompressed()), unc: hex.EncodeToString(p.PubKey().SerializeUncompressed())}
}

func (k key) sign(nonce string) string {
	return "0x" + hex.EncodeToString(eip191.Sign(k.priv, []byte(nonce)))
}

type edKey struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newEdKey(t testing.TB) edKey {
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	return edKey{pub, priv}
}

// client is a minimal JSON-RPC client over coder/websocket.
type client struct {
	t    testing.TB
	c    *websocket.Conn
	next int
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	require.NoError(t, err)
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, c: c}
}

type rpcResp struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *circles.Error  `json:"error"`
}

func (c *client) send(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(c.t, c.c.Write(ctx, websocket.MessageText, []byte(raw)))
}

func (c *client) read() []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.MessageText, typ)
	return b
}

func (c *client) readResp() rpcResp {
	c.t.Helper()
	var r rpcResp
	b := c.read()
	require.NoError(c.t, json.Unmarshal(b, &r), string(b))
	require.Equal(c.t, "2.0", r.JSONRPC)
	return r
}

func (c *client) call(method string, params any) rpcResp {
	c.t.Helper()
	c.next++
	req := map[string]any{"jsonrpc": "2.0", "id": c.next, "method": method}
	if params != nil {
		req["params"] = params
	}
	b, _ := json.Marshal(req)
	c.send(string(b))
	r := c.readResp()
	require.JSONEq(c.t, itoa(c.next), string(r.ID))
	return r
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func (c *client) mustResult(method string, params any, into any) {
	c.t.Helper()
	r := c.call(method, params)
	require.Nil(c.t, r.Error, "%s: %+v", method, r.Error)
	if into != nil {
		require.NoError(c.t, json.Unmarshal(r.Result, into))
	}
}

func (c *client) errCode(method string, params any) (int, string) {
	c.t.Helper()
	r := c.call(method, params)
	require.NotNil(c.t, r.Error, "%s: expected error, got %s", method, r.Result)
	return r.Error.Code, string(r.Error.Data)
}

func (c *client) nonce(pub string) string {
	c.t.Helper()
	var n struct {
		Nonce     string `json:"nonce"`
		ExpiresAt int64  `json:"expires_at"`
	}
	c.mustResult("fetch_nonce", map[string]string{"pubkey": pub}, &n)
	require.NotEmpty(c.t, n.Nonce)
	return n.Nonce
}

func (c *client) login(k key) {
	c.t.Helper()
	n := c.nonce(k.unc)
	var r map[string]bool
	c.mustResult("authenticate", map[string]string{"pubkey": k.comp, "signature": k.sign(n)}, &r)
	require.True(c.t, r["authenticated"])
}

func (c *client) play(src string) string {
	c.t.Helper()
	var out string
	c.mustResult("play", map[string]string{"script": src}, &out)
	return out
}

type stoppable struct {
	*stack
	stop func(t testing.TB)
}

// newStackNoCleanup is newStack with an explicit stop, for restarts.
func newStackNoCleanup(t testing.TB, o stackOpts) stoppable {
	t.Helper()
	var cleanups []func()
	ft := &cleanupT{TB: t, add: func(f func()) { cleanups = append(cleanups, f) }}
	s := newStack(ft, o)
	return stoppable{stack: s, stop: func(testing.TB) {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}}
}

type cleanupT struct {
	testing.TB
	add func(func())
}

func (c *cleanupT) Cleanup(f func()) { c.add(f) }
