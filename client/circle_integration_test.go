//go:build !js

package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/internal/circle"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// echoPlayer is a circle.Player for the integration test: "caller" returns
// the caller, "fail:X" fails with client message X, "block" waits for the
// play to be cancelled, anything else is echoed.
type echoPlayer struct{ blocked chan struct{} }

type playError string

func (e playError) Error() string         { return "play: " + string(e) }
func (e playError) ClientMessage() string { return string(e) }

func (p echoPlayer) Play(ctx context.Context, circle, caller, script string) (string, error) {
	switch {
	case script == "caller":
		return caller, nil
	case strings.HasPrefix(script, "fail:"):
		return "", playError(strings.TrimPrefix(script, "fail:"))
	case script == "block":
		p.blocked <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}
	return script, nil
}

// realCircle runs the real circle server (internal/circle) on a loopback
// listener and can restart it on the same address.
type realCircle struct {
	tb     testing.TB
	key    string
	player echoPlayer
	idle   time.Duration // circle.Config.IdleTimeout; zero = default

	mu   sync.Mutex
	addr string
	srv  *circle.Server
	http *http.Server
	done chan struct{}
}

func startRealCircle(tb testing.TB, idle time.Duration) *realCircle {
	tb.Helper()
	r := &realCircle{tb: tb, key: mustKey(tb).PublicKeyCompressed(), player: echoPlayer{blocked: make(chan struct{}, 8)}, idle: idle}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.start(ln)
	tb.Cleanup(r.stop)
	return r
}

func (r *realCircle) start(ln net.Listener) {
	r.tb.Helper()
	srv, err := circle.New(circle.Config{Keys: []string{r.key}, EnableAuth: true, Player: r.player, IdleTimeout: r.idle})
	if err != nil {
		r.tb.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	r.mu.Lock()
	r.addr, r.srv, r.http, r.done = ln.Addr().String(), srv, hs, done
	r.mu.Unlock()
}

func (r *realCircle) stop() { r.stopWithin(5*time.Second, false) }

// stopWithin shuts the server down, giving running plays grace to finish;
// abrupt tolerates the grace running out (plays are then cut off, as when a
// server process is killed).
func (r *realCircle) stopWithin(grace time.Duration, abrupt bool) {
	r.mu.Lock()
	srv, hs, done := r.srv, r.http, r.done
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	_ = hs.Close() // stop accepting
	if err := srv.Shutdown(ctx); err != nil && !(abrupt && errors.Is(err, context.DeadlineExceeded)) {
		r.tb.Errorf("circle shutdown: %v", err)
	}
	<-done
}

func (r *realCircle) restart() {
	r.tb.Helper()
	r.stopWithin(100*time.Millisecond, true)
	var ln net.Listener
	require.Eventually(r.tb, func() bool {
		var err error
		ln, err = net.Listen("tcp", r.addr)
		return err == nil
	}, testenv.Wait, testenv.Tick, "relisten on "+r.addr)
	r.start(ln)
}

func (r *realCircle) url() string { return "ws://" + r.addr + "/" + r.key }

func TestIntegrationRealCircleServer(t *testing.T) {
	srv := startRealCircle(t, 0)
	key := mustKey(t)
	rec := &statusRecorder{}
	ctx := testCtx(t)

	// Without a key: play needs authentication.
	anon, err := client.Dial(ctx, fastConfig(srv.url(), nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = anon.Play(ctx, "x")
	var rpcErr *circles.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeAuthRequired {
		t.Fatalf("anonymous play: %v, want -32001", err)
	}
	anon.Close()

	// Unknown circle: 404 before upgrade.
	if _, err := client.Dial(ctx, fastConfig("ws://"+srv.addr+"/"+mustKey(t).PublicKeyCompressed(), key, nil)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown circle: %v, want 404", err)
	}

	cfg := fastConfig(srv.url(), key, rec)
	cfg.KeepAliveInterval = 50 * time.Millisecond
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial real server: %v", err)
	}
	defer c.Close()
	id, err := c.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(id.Circle, srv.key) || id.PubKey == "" {
		t.Fatalf("whoami = %+v", id)
	}
	caller, err := c.Play(ctx, "caller")
	if err != nil || caller == "" {
		t.Fatalf("play caller = %q, %v", caller, err)
	}
	_, err = c.Play(ctx, "fail:boom")
	if !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeExecution || !strings.Contains(rpcErr.DataString(), "boom") {
		t.Fatalf("failing play: %v", err)
	}
	if err := c.Call(ctx, "no_such_method", struct{}{}, nil); !errors.As(err, &rpcErr) || rpcErr.Code != circles.CodeMethodNotFound {
		t.Fatalf("unknown method: %v", err)
	}

	// An in-flight play fails with ErrConnectionLost when the server goes
	// away; the client reconnects to the restarted server and re-authenticates.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Play(ctx, "block")
		errc <- err
	}()
	<-srv.player.blocked
	srv.restart()
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrConnectionLost) {
			t.Fatalf("in-flight play across restart: %v, want ErrConnectionLost", err)
		}
	case <-ctx.Done():
		t.Fatal("in-flight play hung across a server restart")
	}
	require.Eventually(t, func() bool { return rec.count(client.Authenticated) >= 2 }, testenv.Wait, testenv.Tick, "re-authentication")
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := c.Play(ctx, "caller")
	if err != nil || again != caller {
		t.Fatalf("play after restart = %q, %v (want %q: authenticated again as the same key)", again, err, caller)
	}
	want := []client.Status{client.Authenticated, client.Disconnected, client.Connecting, client.Connected, client.Authenticated}
	if got := rec.statuses(); !isSubsequence(want, got) {
		t.Fatalf("statuses %v do not contain %v in order", got, want)
	}
}

// The real server closes connections idle for IdleTimeout; the client's
// keep-alive pings must count as activity, while a client without
// keep-alive is dropped and comes back by itself.
func TestIntegrationKeepAliveBeatsIdleTimeout(t *testing.T) {
	// The idle timeout is a socket read deadline, which takes no fake
	// clock; the keep-alive runs at a twentieth of it, so only a stall of
	// most of a second could drop the live client, and the silent one
	// needs to be dropped only once.
	const idle = time.Second
	srv := startRealCircle(t, idle)
	ctx := testCtx(t)

	quietRec, aliveRec := &statusRecorder{}, &statusRecorder{}
	quiet, err := client.Dial(ctx, fastConfig(srv.url(), mustKey(t), quietRec)) // keep-alive disabled
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	aliveCfg := fastConfig(srv.url(), mustKey(t), aliveRec)
	aliveCfg.KeepAliveInterval = idle / 20
	alive, err := client.Dial(ctx, aliveCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()

	// An idle period passes: the silent client is dropped and reconnects.
	require.Eventually(t, func() bool {
		return quietRec.count(client.Disconnected) >= 1 && quietRec.count(client.Authenticated) >= 2
	}, testenv.Wait, testenv.Tick, "idle drop and re-authentication of the silent client")
	if n := aliveRec.count(client.Disconnected); n != 0 {
		t.Fatalf("client with keep-alive was dropped %d times (first cause %v)", n, aliveRec.firstErr(client.Disconnected))
	}
	if _, err := alive.Play(ctx, "x"); err != nil {
		t.Fatal(err)
	}
}
