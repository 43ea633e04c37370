package client_test

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/client/circletest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustKey(tb testing.TB) *client.PrivateKey {
	tb.Helper()
	k, err := client.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fastConfig returns a Config with short timings suitable for tests.
func fastConfig(url string, key *client.PrivateKey, rec *statusRecorder) client.Config {
	cfg := client.Config{
		URL:               url,
		Backoff:           client.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		KeepAliveInterval: -1,
		DialTimeout:       2 * time.Second,
	}
	if key != nil {
		cfg.PrivateKey = key.Hex()
	}
	if rec != nil {
		cfg.OnStatusChange = rec.record
	}
	return cfg
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestDialAuthenticatesAndPlays(t *testing.T) {
	srv := circletest.NewServer(t)
	key := mustKey(t)
	rec := &statusRecorder{}
	ctx := testCtx(t)

	c, err := client.Dial(ctx, fastConfig(srv.URL(), key, rec))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := c.Status(); got != client.Authenticated {
		t.Fatalf("status = %v, want authenticated", got)
	}
	id, err := c.Whoami(ctx)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if id.PubKey != key.PublicKeyUncompressed() || id.Circle != srv.Circle() {
		t.Fatalf("whoami = %+v", id)
	}
	out, err := c.Play(ctx, "echo:hello")
	if err != nil || out != "hello" {
		t.Fatalf("play = %q, %v", out, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want := []client.Status{client.Connecting, client.Connected, client.Authenticated, client.Closed}
	if got := rec.statuses(); !slices.Equal(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if _, err := c.Play(ctx, "echo:x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("play after close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second close:", err)
	}
}

func TestWithoutKeyNoAuthentication(t *testing.T) {
	srv := circletest.NewServer(t) // requires auth for play
	rec := &statusRecorder{}
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), nil, rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Status() != client.Connected {
		t.Fatalf("status %v", c.Status())
	}
	_, err = c.Play(ctx, "echo:x")
	var rpcErr *circles.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeAuthRequired {
		t.Fatalf("play without auth: %v, want -32001", err)
	}
	id, err := c.Whoami(ctx)
	if err != nil || id.PubKey != "" {
		t.Fatalf("whoami = %+v, %v", id, err)
	}
	if srv.Auths() != 0 {
		t.Fatal("authenticated without a key")
	}
}

func TestRPCErrors(t *testing.T) {
	srv := circletest.NewServer(t, circletest.WithoutAuth())
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), mustKey(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		name     string
		call     func() error
		wantCode int
		wantData string
	}{
		{"execution error", func() error { _, err := c.Play(ctx, "fail:boom"); return err }, circles.CodeExecution, "boom"},
		{"unknown method", func() error { return c.Call(ctx, "nope", struct{}{}, nil) }, circles.CodeMethodNotFound, ""},
		{"bad params", func() error { return c.Call(ctx, "play", []int{1}, nil) }, circles.CodeInvalidParams, "params have the wrong types"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var rpcErr *circles.Error
			if !errors.As(err, &rpcErr) {
				t.Fatalf("error %v (%T) is not *circles.Error", err, err)
			}
			if rpcErr.Code != tt.wantCode || rpcErr.DataString() != tt.wantData {
				t.Fatalf("got code %d data %q, want %d %q", rpcErr.Code, rpcErr.DataString(), tt.wantCode, tt.wantData)
			}
		})
	}
	// The connection survives RPC errors.
	if out, err := c.Play(ctx, "echo:ok"); err != nil || out != "ok" {
		t.Fatalf("play after errors = %q, %v", out, err)
	}
}

func TestAuthRejected(t *testing.T) {
	allowed := mustKey(t)
	srv := circletest.NewServer(t, circletest.WithAllowed(func(pk *secp256k1.PublicKey) bool {
		return strings.EqualFold(hex.EncodeToString(pk.SerializeCompressed()), allowed.PublicKeyCompressed())
	}))
	ctx := testCtx(t)

	_, err := client.Dial(ctx, fastConfig(srv.URL(), mustKey(t), nil))
	var rpcErr *circles.Error
	if !errors.Is(err, client.ErrAuthFailed) || !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeInvalidCredentials {
		t.Fatalf("dial with unknown key: %v, want ErrAuthFailed wrapping -32002", err)
	}
	c, err := client.Dial(ctx, fastConfig(srv.URL(), allowed, nil))
	if err != nil {
		t.Fatalf("dial with allowed key: %v", err)
	}
	c.Close()
}

func TestUnknownCircleFails(t *testing.T) {
	srv := circletest.NewServer(t)
	rec := &statusRecorder{}
	url := "ws://" + srv.Addr() + "/" + mustKey(t).PublicKeyCompressed()
	c, err := client.New(fastConfig(url, mustKey(t), rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Connect(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("connect to unknown circle: %v, want a 404 error", err)
	}
	if _, err := c.Play(testCtx(t), "echo:x"); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("play while not connected: %v, want ErrNotConnected", err)
	}
	// It keeps retrying in the background.
	require.Eventually(t, func() bool { return rec.count(client.Connecting) >= 2 }, testenv.Wait, testenv.Tick, "a second attempt")
}

func TestReconnectAcrossServerRestart(t *testing.T) {
	srv := circletest.NewServer(t)
	key := mustKey(t)
	rec := &statusRecorder{}
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), key, rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := srv.Auths(); n != 1 {
		t.Fatalf("auths = %d", n)
	}

	srv.Restart()
	require.Eventually(t, func() bool { return rec.count(client.Disconnected) >= 1 }, testenv.Wait, testenv.Tick, "disconnect noticed")
	if err := rec.firstErr(client.Disconnected); !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("disconnect cause = %v", err)
	}
	require.Eventually(t, func() bool {
		return c.Status() == client.Authenticated && srv.Auths() >= 2
	}, testenv.Wait, testenv.Tick, "re-authenticated")
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := c.Play(ctx, "caller")
	if err != nil || out != key.PublicKeyUncompressed() {
		t.Fatalf("play after restart = %q, %v", out, err)
	}
	// The first session's transitions, then a drop, then a fresh session.
	want := []client.Status{client.Connecting, client.Connected, client.Authenticated,
		client.Disconnected, client.Connecting, client.Connected, client.Authenticated}
	if got := rec.statuses(); !isSubsequence(want, got) {
		t.Fatalf("statuses %v do not contain %v in order", got, want)
	}
}

func TestInFlightCallFailsOnDrop(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), mustKey(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	errc := make(chan error, 1)
	go func() {
		_, err := c.Play(ctx, "block")
		errc <- err
	}()
	<-srv.Blocked()
	srv.DropAll()
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrConnectionLost) {
			t.Fatalf("in-flight play: %v, want ErrConnectionLost", err)
		}
	case <-ctx.Done():
		t.Fatal("in-flight call hung after the connection dropped")
	}
	require.Eventually(t, func() bool { return srv.Auths() >= 2 }, testenv.Wait, testenv.Tick, "reconnected")
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Play(ctx, "echo:back"); err != nil || out != "back" {
		t.Fatalf("play after reconnect = %q, %v", out, err)
	}
}

func TestKeepAliveDetectsSilentPeer(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	cfg := fastConfig(srv.URL(), mustKey(t), nil)
	cfg.KeepAliveInterval = 20 * time.Millisecond
	cfg.KeepAliveTimeout = 100 * time.Millisecond
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	start := time.Now()
	_, err = c.Play(ctx, "freeze") // the server stops reading: no answer, no pongs
	if !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("play on a silent peer: %v, want ErrConnectionLost", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent peer detected after %v", d)
	}
	require.Eventually(t, func() bool { return srv.Auths() >= 2 }, testenv.Wait, testenv.Tick, "reconnected")
}

func TestCloseFailsInFlightCalls(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), mustKey(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Play(ctx, "block")
		errc <- err
	}()
	<-srv.Blocked()
	c.Close()
	if err := <-errc; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("in-flight play at close: %v, want ErrClosed", err)
	}
	if c.Status() != client.Closed {
		t.Fatalf("status %v", c.Status())
	}
}

func TestCallContextCancelKeepsConnection(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	c, err := client.Dial(ctx, fastConfig(srv.URL(), mustKey(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Play(short, "block"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("play with short ctx: %v", err)
	}
	if out, err := c.Play(ctx, "echo:still"); err != nil || out != "still" {
		t.Fatalf("play after cancelled call = %q, %v", out, err)
	}
	if srv.Accepts() != 1 {
		t.Fatalf("a cancelled call cost the connection (%d sessions)", srv.Accepts())
	}
}

func TestConnectWhileServerDown(t *testing.T) {
	srv := circletest.NewServer(t)
	url := srv.URL()
	srv.Stop()
	rec := &statusRecorder{}
	c, err := client.New(fastConfig(url, mustKey(t), rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	if err := c.Connect(ctx); err == nil {
		t.Fatal("connect to a stopped server succeeded")
	}
	if c.Status() == client.Authenticated {
		t.Fatal("authenticated without a server")
	}
	// Bring the server back on the same address: the Conn finds it alone.
	srv.Restart()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Play(ctx, "echo:up"); err != nil || out != "up" {
		t.Fatalf("play = %q, %v", out, err)
	}
}

func TestCloseWithoutConnect(t *testing.T) {
	rec := &statusRecorder{}
	c, err := client.New(fastConfig("ws://127.0.0.1:1/x", nil, rec))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Connect(testCtx(t)); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("connect after close: %v", err)
	}
	if got := rec.statuses(); !slices.Equal(got, []client.Status{client.Closed}) {
		t.Fatalf("statuses %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  client.Config
		want error
	}{
		{"empty url", client.Config{}, client.ErrInvalidURL},
		{"http url", client.Config{URL: "http://x/y"}, client.ErrInvalidURL},
		{"no host", client.Config{URL: "ws:///k"}, client.ErrInvalidURL},
		{"short key", client.Config{URL: "ws://h/k", PrivateKey: "abcd"}, client.ErrInvalidKey},
		{"not hex", client.Config{URL: "ws://h/k", PrivateKey: strings.Repeat("zz", 32)}, client.ErrInvalidKey},
		{"zero key", client.Config{URL: "ws://h/k", PrivateKey: strings.Repeat("00", 32)}, client.ErrInvalidKey},
		{"key above order", client.Config{URL: "ws://h/k", PrivateKey: strings.Repeat("ff", 32)}, client.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.New(tt.cfg); !errors.Is(err, tt.want) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	b := client.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.5}
	prev := time.Duration(0)
	for n := 0; n < 200; n++ {
		base := b.Base(n)
		if base < prev {
			t.Fatalf("base(%d) = %v decreased from %v", n, base, prev)
		}
		if base > b.Max {
			t.Fatalf("base(%d) = %v above max", n, base)
		}
		prev = base
		for i := 0; i < 20; i++ {
			d := b.Delay(n)
			if d > base || d < base/2 {
				t.Fatalf("delay(%d) = %v outside [%v, %v]", n, d, base/2, base)
			}
		}
	}
	if b.Base(0) != 100*time.Millisecond || b.Base(1) != 200*time.Millisecond || b.Base(100) != 2*time.Second {
		t.Fatalf("bases %v %v %v", b.Base(0), b.Base(1), b.Base(100))
	}
	noJitter := client.Backoff{Initial: time.Second, Jitter: -1}
	if d := noJitter.Delay(3); d != 8*time.Second {
		t.Fatalf("no-jitter delay(3) = %v", d)
	}
	var zero client.Backoff
	if zero.Base(0) != client.DefaultBackoffInitial || zero.Base(1000) != client.DefaultBackoffMax {
		t.Fatalf("defaults: %v %v", zero.Base(0), zero.Base(1000))
	}
}

func TestKeepAlivePingsKeepConnection(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	cfg := fastConfig(srv.URL(), mustKey(t), nil)
	cfg.KeepAliveInterval = 10 * time.Millisecond
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	require.Eventually(t, func() bool { return srv.Pings() >= 5 }, testenv.Wait, testenv.Tick, "5 pings")
	if srv.Accepts() != 1 || c.Status() != client.Authenticated {
		t.Fatalf("connection churned: %d sessions, status %v", srv.Accepts(), c.Status())
	}
	if n := srv.Calls("whoami"); n != 0 {
		t.Fatalf("native keep-alive used %d whoami calls, want ping frames", n)
	}
}

func TestMaxInFlight(t *testing.T) {
	srv := circletest.NewServer(t)
	ctx := testCtx(t)
	cfg := fastConfig(srv.URL(), mustKey(t), nil)
	cfg.MaxInFlight = 2
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := c.Play(ctx, "block")
			errc <- err
		}()
	}
	<-srv.Blocked()
	<-srv.Blocked()
	if _, err := c.Play(ctx, "echo:x"); !errors.Is(err, client.ErrTooManyInFlight) {
		t.Fatalf("third call: %v, want ErrTooManyInFlight", err)
	}
	c.Close()
	for i := 0; i < 2; i++ {
		if err := <-errc; !errors.Is(err, client.ErrClosed) {
			t.Fatalf("blocked call: %v", err)
		}
	}
}

// isSubsequence reports whether want appears in got in order (not
// necessarily contiguously).
func isSubsequence(want, got []client.Status) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
