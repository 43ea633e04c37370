package ws_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo writes every message back; "panic" panics.
type echo struct {
	c      *ws.Conn
	closed *atomic.Int32
}

func (e echo) OnMessage(data []byte) {
	if string(data) == "panic" {
		panic("boom")
	}
	_ = e.c.Write(data)
}
func (e echo) OnClose() { e.closed.Add(1) }

type env struct {
	t      *ws.Transport
	srv    *httptest.Server
	url    string
	closed atomic.Int32
	last   atomic.Value // last Upgrade error
}

func newEnv(t *testing.T, cfg ws.Config, o ws.Options) *env {
	t.Helper()
	tr, err := ws.New(cfg)
	require.NoError(t, err)
	e := &env{t: tr}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := o
		o.Open = func(c *ws.Conn) ws.Session { return echo{c: c, closed: &e.closed} }
		err := tr.Upgrade(w, r, o)
		e.last.Store(&err)
		var rf *ws.Refused
		if errors.As(err, &rf) {
			http.Error(w, rf.Message, rf.Status)
		}
	}))
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, tr.Shutdown(ctx))
		e.srv.Close()
	})
	return e
}

func dial(t *testing.T, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: h.Values("X-Sub")})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func readCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoTextAndBinary(t *testing.T) {
	for _, binary := range []bool{false, true} {
		e := newEnv(t, ws.Config{}, ws.Options{Binary: binary})
		c, _, err := dial(t, e.url, nil)
		require.NoError(t, err)
		ctx := readCtx(t)
		for _, m := range []string{"a", "bb", "ccc"} {
			require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(m)))
		}
		want := websocket.MessageText
		if binary {
			want = websocket.MessageBinary
		}
		for _, m := range []string{"a", "bb", "ccc"} { // in order
			typ, data, err := c.Read(ctx)
			require.NoError(t, err)
			require.Equal(t, want, typ)
			require.Equal(t, m, string(data))
		}
		c.Close(websocket.StatusNormalClosure, "")
		require.Eventually(t, func() bool { return e.closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond, "OnClose once")
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, ws.Config{Origins: origin.MustNew("https://good.example")}, ws.Options{})
	_, resp, err := dial(t, e.url, http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	_, _, err = dial(t, e.url, http.Header{"Origin": {"https://good.example"}})
	require.NoError(t, err)

	res, err := http.Get(e.srv.URL)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode, "not an upgrade")
}

func TestTextOnlyAndPanic(t *testing.T) {
	e := newEnv(t, ws.Config{TextOnly: true}, ws.Options{})
	c, _, err := dial(t, e.url, nil)
	require.NoError(t, err)
	ctx := readCtx(t)
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte("x")))
	_, _, err = c.Read(ctx)
	require.Equal(t, websocket.StatusUnsupportedData, websocket.CloseStatus(err))

	c, _, err = dial(t, e.url, nil)
	require.NoError(t, err)
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("panic")))
	_, _, err = c.Read(ctx)
	require.Equal(t, websocket.StatusInternalError, websocket.CloseStatus(err))
}

func TestMessageSizeLimit(t *testing.T) {
	e := newEnv(t, ws.Config{MessageSizeLimit: 16}, ws.Options{})
	c, _, err := dial(t, e.url, nil)
	require.NoError(t, err)
	ctx := readCtx(t)
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 17))))
	_, _, err = c.Read(ctx)
	require.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err))
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, ws.Config{IdleTimeout: 50 * time.Millisecond}, ws.Options{})
	c, _, err := dial(t, e.url, nil)
	require.NoError(t, err)
	_, _, err = c.Read(readCtx(t))
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the server closed it, not our read deadline")
	require.Eventually(t, func() bool { return e.closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestSubprotocol(t *testing.T) {
	tr, err := ws.New(ws.Config{Subprotocols: []string{"p1"}})
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := ws.Options{Open: func(c *ws.Conn) ws.Session { return echo{c: c, closed: new(atomic.Int32)} }}
		if ws.HeaderHasToken(r.Header, "Sec-WebSocket-Protocol", "p1") {
			o.Subprotocol = "p1"
		}
		_ = tr.Upgrade(w, r, o)
	}))
	defer srv.Close()
	defer func() { require.NoError(t, tr.Shutdown(context.Background())) }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	c, _, err := dial(t, url, http.Header{"X-Sub": {"p1"}})
	require.NoError(t, err)
	require.Equal(t, "p1", c.Subprotocol())
	c, _, err = dial(t, url, nil)
	require.NoError(t, err)
	require.Equal(t, "", c.Subprotocol())
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, ws.Config{ShutdownCode: 3001, ShutdownReason: "shutdown"}, ws.Options{})
	c, _, err := dial(t, e.url, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.last.Load() != nil }, 5*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.t.Shutdown(ctx))
	require.Equal(t, int32(1), e.closed.Load(), "Shutdown waits for OnClose")
	_, _, err = c.Read(readCtx(t))
	require.Equal(t, websocket.StatusCode(3001), websocket.CloseStatus(err))
	_, resp, err := dial(t, e.url, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NoError(t, e.t.Shutdown(ctx), "idempotent")
}

// TestCloseEchoAfterQuiet: a client's close is echoed even long after the
// last write's deadline passed.
func TestCloseEchoAfterQuiet(t *testing.T) {
	e := newEnv(t, ws.Config{WriteTimeout: 20 * time.Millisecond}, ws.Options{})
	c, _, err := dial(t, e.url, nil)
	require.NoError(t, err)
	ctx := readCtx(t)
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("x")))
	_, _, err = c.Read(ctx)
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond) // time passing is what is tested
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "bye"))
	require.Eventually(t, func() bool { return e.closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
}
