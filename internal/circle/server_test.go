package circle_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewRejectsInvalidKey(t *testing.T) {
	_, err := circle.New(circle.Config{Keys: []string{newKey(t).comp, "02deadbeef"}, Player: &dispatch.Local{}})
	require.ErrorIs(t, err, circle.ErrInvalidKey)
	require.Contains(t, err.Error(), `"02deadbeef"`)
	_, err = circle.New(circle.Config{Keys: []string{newKey(t).comp}})
	require.Error(t, err, "no player")
}

func TestRegistryEncodings(t *testing.T) {
	k := newKey(t)
	r, err := circle.NewRegistry([]string{k.unc, "0x" + strings.ToUpper(k.comp)})
	require.NoError(t, err)
	require.Equal(t, 1, r.Len())
	c, ok := r.Lookup(k.unc)
	require.True(t, ok)
	require.Equal(t, k.comp, c)
	_, ok = r.Lookup(newKey(t).comp)
	require.False(t, ok)
}

func TestHTTPBeforeUpgrade(t *testing.T) {
	k := newKey(t)
	s := newStack(t, stackOpts{keys: []string{k.comp}})
	get := func(path string, hdr map[string]string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, s.ts.URL+path, nil)
		for h, v := range hdr {
			req.Header.Set(h, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

	other := newKey(t).comp
	for _, path := range []string{"/" + other, "/nothex"} {
		for _, h := range []map[string]string{nil, upgrade} {
			code, body, hdr := get(path, h)
			require.Equal(t, http.StatusNotFound, code)
			require.Equal(t, `{"error":"Circle not found","message":"Circle '`+path[1:]+`' is not available on this server"}`, body)
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
		}
	}
	code, body, hdr := get("/"+k.comp, nil)
	require.Equal(t, http.StatusUpgradeRequired, code)
	require.Contains(t, body, `"error":"Upgrade Required"`)
	require.Equal(t, "websocket", hdr.Get("Upgrade"))
	// uncompressed form of a known circle is the same circle
	code, _, _ = get("/"+k.unc, nil)
	require.Equal(t, http.StatusUpgradeRequired, code)

	resp, err := http.Post(s.ts.URL+"/"+k.comp, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	code, _, _ = get("/a/b", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.True(t, s.srv.Match("/"+k.comp))
	require.False(t, s.srv.Match("/api/publish"))
	require.False(t, s.srv.Match("/"))

	// a WebSocket client sees the 404 as a failed handshake
	_, r, err := websocket.Dial(context.Background(), s.url+"/"+other, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusNotFound, r.StatusCode)
}

func TestAuthFlow(t *testing.T) {
	circleA, circleB := newKey(t), newKey(t)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	s := newStack(t, stackOpts{keys: []string{circleA.comp, circleB.unc}, enableAuth: true, clock: clk})
	user, intruder := newKey(t), newKey(t)

	a := dial(t, s.url+"/"+circleA.comp)
	var who map[string]any
	a.mustResult("whoami", nil, &who)
	require.Equal(t, map[string]any{"circle": circleA.comp, "pubkey": nil}, who)

	// play before auth
	code, _ := a.errCode("play", map[string]string{"script": "1"})
	require.Equal(t, circles.CodeAuthRequired, code)
	// authenticate without nonce
	code, _ = a.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign("x")})
	require.Equal(t, circles.CodeInvalidCredentials, code)

	// wrong key: signature made by another key than the claimed one
	n := a.nonce(user.comp)
	code, _ = a.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": intruder.sign(n)})
	require.Equal(t, circles.CodeInvalidCredentials, code)
	// the nonce was consumed by the failure
	code, _ = a.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(n)})
	require.Equal(t, circles.CodeInvalidCredentials, code)

	// good flow; nonce reuse fails
	n = a.nonce(user.unc)
	var ok map[string]bool
	a.mustResult("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(n)}, &ok)
	require.True(t, ok["authenticated"])
	code, _ = a.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(n)})
	require.Equal(t, circles.CodeInvalidCredentials, code)
	a.mustResult("whoami", nil, &who)
	require.Equal(t, user.comp, who["pubkey"])
	require.Equal(t, user.comp, a.play("CALLER_ID"))
	require.Equal(t, circleA.comp, a.play("CONTEXT_ID"))

	// auth on A grants nothing on B, and A's nonce is useless on B
	b := dial(t, s.url+"/"+circleB.comp)
	code, _ = b.errCode("play", map[string]string{"script": "1"})
	require.Equal(t, circles.CodeAuthRequired, code)
	nA := a.nonce(user.comp)
	code, _ = b.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(nA)})
	require.Equal(t, circles.CodeInvalidCredentials, code)
	// nor on another connection to the same circle
	a2 := dial(t, s.url+"/"+circleA.comp)
	code, _ = a2.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(nA)})
	require.Equal(t, circles.CodeInvalidCredentials, code)

	// expiry: a nonce older than 5 minutes is refused
	n = b.nonce(user.comp)
	clk.Add(5*time.Minute + time.Second)
	code, data := b.errCode("authenticate", map[string]string{"pubkey": user.comp, "signature": user.sign(n)})
	require.Equal(t, circles.CodeInvalidCredentials, code)
	require.Contains(t, data, "expired")
	// v as 0/1, no 0x
	n = b.nonce(user.comp)
	sig, _ := hex.DecodeString(strings.TrimPrefix(user.sign(n), "0x"))
	sig[64] -= 27
	b.mustResult("authenticate", map[string]string{"pubkey": user.unc, "signature": hex.EncodeToString(sig)}, nil)
	require.Equal(t, user.comp, b.play("CALLER_ID"))

	// bad params
	code, _ = b.errCode("fetch_nonce", map[string]string{"pubkey": "zz"})
	require.Equal(t, circles.CodeInvalidParams, code)
	code, _ = b.errCode("fetch_nonce", nil)
	require.Equal(t, circles.CodeInvalidParams, code)
	code, _ = b.errCode("authenticate", map[string]int{"pubkey": 1})
	require.Equal(t, circles.CodeInvalidParams, code)
}

func TestEd25519Client(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, enableAuth: true})
	ed := newEdKey(t)
	pub := hex.EncodeToString(ed.pub)
	cl := dial(t, s.url+"/"+c.comp)
	n := cl.nonce(pub)
	cl.mustResult("authenticate", []string{pub, hex.EncodeToString(ed25519.Sign(ed.priv, []byte(n)))}, nil)
	require.Equal(t, pub, cl.play("CALLER_ID"))
	n = cl.nonce(pub)
	code, _ := cl.errCode("authenticate", map[string]string{"pubkey": pub, "signature": hex.EncodeToString(ed25519.Sign(ed.priv, []byte(n+"x")))})
	require.Equal(t, circles.CodeInvalidCredentials, code)
}

func TestPlayWithoutAuthAndSemantics(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, timeout: 300 * time.Millisecond})
	cl := dial(t, s.url+"/"+c.unc)
	require.Equal(t, "42", cl.play("x = 40\nx + 2"))
	require.Equal(t, "hi\n", cl.play(`print("hi")`))
	require.Equal(t, "", cl.play("CALLER_ID"))
	require.Equal(t, c.comp, cl.play("CONTEXT_ID"))

	for _, src := range []string{"while True:\n  pass", "def f():\n  while True:\n    pass\nf()"} {
		start := time.Now()
		code, data := cl.errCode("play", map[string]string{"script": src})
		require.Equal(t, circles.CodeExecution, code)
		require.Contains(t, data, "timeout")
		require.Less(t, time.Since(start), 5*time.Second)
	}
	code, data := cl.errCode("play", map[string]string{"script": "fail('boom')"})
	require.Equal(t, circles.CodeExecution, code)
	require.Contains(t, data, "boom")
	code, _ = cl.errCode("play", map[string]string{"script": "x = "})
	require.Equal(t, circles.CodeExecution, code)
	code, _ = cl.errCode("play", map[string]int{"script": 3})
	require.Equal(t, circles.CodeInvalidParams, code)
	require.Equal(t, "pong", func() string { var s string; cl.mustResult("ping", nil, &s); return s }())
}

func TestStepCapOverWire(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, maxSteps: 10_000})
	cl := dial(t, s.url+"/"+c.comp)
	code, data := cl.errCode("play", map[string]string{"script": "for i in range(1000000000):\n  pass"})
	require.Equal(t, circles.CodeExecution, code)
	require.Contains(t, data, "steps")
}

func TestStorePersistsAcrossRestart(t *testing.T) {
	c := newKey(t)
	dir := t.TempDir()
	s1 := newStackNoCleanup(t, stackOpts{keys: []string{c.comp}, dataDir: dir})
	cl := dial(t, s1.url+"/"+c.comp)
	require.Equal(t, "", cl.play("store.set('greeting', 'hello ' + CONTEXT_ID[:6])"))
	cl.c.CloseNow()
	s1.stop(t)

	s2 := newStack(t, stackOpts{keys: []string{c.comp}, dataDir: dir})
	cl = dial(t, s2.url+"/"+c.comp)
	require.Equal(t, "hello "+c.comp[:6], cl.play("store.get('greeting')"))
}

func TestJSONRPCErrorsAndBatches(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, cfg: func(cfg *circle.Config) { cfg.MaxBatch = 4 }})
	cl := dial(t, s.url+"/"+c.comp)
	expectErr := func(raw string, code int, id string) {
		t.Helper()
		cl.send(raw)
		r := cl.readResp()
		require.NotNil(t, r.Error, raw)
		require.Equal(t, code, r.Error.Code, raw)
		require.JSONEq(t, id, string(r.ID), raw)
	}
	expectErr(`{"jsonrpc":"2.0","id":1,"method":`, circles.CodeParseError, "null")
	expectErr(`[]`, circles.CodeInvalidRequest, "null")
	expectErr(`[1,2,3,4,5]`, circles.CodeInvalidRequest, "null")
	expectErr(`{"jsonrpc":"1.0","id":7,"method":"ping"}`, circles.CodeInvalidRequest, "7")
	expectErr(`{"jsonrpc":"2.0","id":"x","method":5}`, circles.CodeInvalidRequest, `"x"`)
	expectErr(`{"jsonrpc":"2.0","id":true,"method":"ping"}`, circles.CodeInvalidRequest, "null")
	expectErr(`{"jsonrpc":"2.0","id":2,"method":"ping","params":"x"}`, circles.CodeInvalidRequest, "2")
	expectErr(`"hello"`, circles.CodeInvalidRequest, "null")
	expectErr(`{"jsonrpc":"2.0","id":3,"method":"nope"}`, circles.CodeMethodNotFound, "3")
	expectErr(`{"jsonrpc":"2.0","id":4,"method":"play","params":{"script":1}}`, circles.CodeInvalidParams, "4")

	// notifications get no answer: the next message is the ping reply
	cl.send(`{"jsonrpc":"2.0","method":"ping"}`)
	cl.send(`[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"play","params":{"script":"1"}}]`)
	r := cl.call("ping", nil)
	require.JSONEq(t, `"pong"`, string(r.Result))

	// a mixed batch: answers in order, notification skipped, invalid entry answered
	cl.send(`[{"jsonrpc":"2.0","id":"a","method":"play","params":{"script":"x = 40\nx + 2"}},
		{"jsonrpc":"2.0","method":"ping"},
		{"foo":1},
		{"jsonrpc":"2.0","id":"b","method":"whoami"}]`)
	b := cl.read()
	require.JSONEq(t, `[
		{"jsonrpc":"2.0","id":"a","result":"42"},
		{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"jsonrpc must be \"2.0\""}},
		{"jsonrpc":"2.0","id":"b","result":{"circle":"`+c.comp+`","pubkey":null}}
	]`, string(b))

	// binary frames are refused with 1003
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, cl.c.Write(ctx, websocket.MessageBinary, []byte(`{}`)))
	_, _, err := cl.c.Read(ctx)
	require.Equal(t, websocket.StatusUnsupportedData, websocket.CloseStatus(err))
}

func TestMessageTooBig(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, cfg: func(cfg *circle.Config) { cfg.MaxMessageSize = 1024 }})
	cl := dial(t, s.url+"/"+c.comp)
	cl.send(`{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"` + strings.Repeat("#", 2000) + `"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := cl.c.Read(ctx)
	require.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err))
}

func TestInflightLimitAndShutdown(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, timeout: 20 * time.Second, cfg: func(cfg *circle.Config) { cfg.MaxInflight = 1 }})
	cl := dial(t, s.url+"/"+c.comp)
	cl.send(`{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"while True:\n  pass"}}`)
	// second play while the first runs
	require.Eventually(t, func() bool {
		cl.send(`{"jsonrpc":"2.0","id":2,"method":"play","params":{"script":"1"}}`)
		r := cl.readResp()
		return r.Error != nil && r.Error.Code == circles.CodeTooManyRequests
	}, 5*time.Second, 10*time.Millisecond)

	// shutdown with a short deadline cuts the endless play and closes the connection
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	require.True(t, err == nil || errors.Is(err, context.DeadlineExceeded), err)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	for {
		_, _, err := cl.c.Read(rctx)
		if err != nil {
			require.NotErrorIs(t, err, context.DeadlineExceeded)
			break
		}
	}
	// new connections are refused
	resp, err := http.Get(s.ts.URL + "/" + c.comp)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUpgradeRequired, resp.StatusCode) // plain GET still answered
	_, r, err := websocket.Dial(context.Background(), s.url+"/"+c.comp, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, r.StatusCode)
}

func TestSlowCircleDoesNotDelayAnother(t *testing.T) {
	slow, fast := newKey(t), newKey(t)
	s := newStack(t, stackOpts{keys: []string{slow.comp, fast.comp}, timeout: 10 * time.Second,
		player: func(r dispatch.Runner) (circle.Player, func()) {
			l, err := dispatch.NewLocal(dispatch.Config{Concurrency: 1, QueueSize: 4}, r)
			require.NoError(t, err)
			return l, func() { require.NoError(t, l.Shutdown(context.Background())) }
		}})
	cs := dial(t, s.url+"/"+slow.comp)
	cs.send(`[{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"while True:\n  pass"}}]`)
	cs2 := dial(t, s.url+"/"+slow.comp)
	cs2.send(`[{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"while True:\n  pass"}}]`)
	cf := dial(t, s.url+"/"+fast.comp)
	start := time.Now()
	for i := 0; i < 5; i++ {
		require.Equal(t, "42", cf.play("x = 40\nx + 2"))
	}
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestPingsKeepAliveAndIdleTimeout(t *testing.T) {
	c := newKey(t)
	s := newStack(t, stackOpts{keys: []string{c.comp}, cfg: func(cfg *circle.Config) {
		cfg.WriteTimeout = 50 * time.Millisecond
		cfg.IdleTimeout = 400 * time.Millisecond
	}})
	cl := dial(t, s.url+"/"+c.comp)
	cl.mustResult("whoami", nil, nil)
	// pings keep the connection alive past the idle timeout, and pongs are
	// written even long after the last response's write deadline
	for i := 0; i < 6; i++ {
		time.Sleep(100 * time.Millisecond) // time passing is what is tested
		pingErr := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			pingErr <- cl.c.Ping(ctx)
		}()
		for done := false; !done; { // keep reading so the pong is processed
			cl.mustResult("ping", nil, nil)
			select {
			case err := <-pingErr:
				require.NoError(t, err)
				done = true
			default:
			}
		}
	}
	// silence closes it
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := cl.c.Read(ctx)
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)
}
