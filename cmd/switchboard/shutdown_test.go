package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/config"
)

// slowWorker is the command of testdata/slowworker.js: its task test.slow
// runs until the test creates its release file.
func slowWorker(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the shutdown tests hold a request on a Node worker")
	}
	_, file, _, _ := runtime.Caller(0)
	return []string{"node", filepath.Join(filepath.Dir(file), "testdata", "slowworker.js")}
}

// slowTask is one test.slow request: started appears when the worker runs
// it; creating release makes it answer.
type slowTask struct {
	started, release string
	done             chan slowResult
}

type slowResult struct {
	status int
	body   string
	err    error
}

// startSlowTask posts test.slow to the worker gateway at baseURL with its
// own client and waits until the worker runs it.
func startSlowTask(t *testing.T, client *http.Client, baseURL string) *slowTask {
	t.Helper()
	dir := t.TempDir()
	st := &slowTask{started: filepath.Join(dir, "started"), release: filepath.Join(dir, "release"), done: make(chan slowResult, 1)}
	body, err := json.Marshal(map[string]any{"input": map[string]string{"started": st.started, "release": st.release}})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, baseURL+"/__runner/task/test.slow", strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("x-runner-token", "runner-secret")
	go func() { // ends when the response (or the connection's end) arrives
		resp, err := client.Do(req)
		if err != nil {
			st.done <- slowResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		st.done <- slowResult{status: resp.StatusCode, body: string(b), err: err}
	}()
	require.Eventually(t, func() bool {
		_, err := os.Stat(st.started)
		return err == nil || len(st.done) > 0
	}, 10*time.Second, 5*time.Millisecond, "the worker runs test.slow")
	select {
	case r := <-st.done:
		t.Fatalf("test.slow ended before the test released it: %+v", r)
	default:
	}
	return st
}

// closeStatus reads from c until the server closes it and returns the close code.
func closeStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			require.NoError(t, ctx.Err(), "no close frame from the server")
			return websocket.CloseStatus(err)
		}
	}
}

// TestShutdownOrder: on Shutdown, realtime clients are disconnected at once
// (Centrifugo with 3001, circles with 1001) and the listener closes while a
// worker-gateway request is still running; /health answers 503 on a
// keep-alive connection opened before, which then closes; the running request completes with its result; nothing leaks.
func TestShutdownOrder(t *testing.T) {
	cfg := testConfig()
	cfg.Runner.Command = slowWorker(t)
	cfg.Runner.Token = "runner-secret"
	cfg.Runner.Workers = 1
	cfg.Runner.QueueTimeout = config.Duration(30 * time.Second)
	circlePriv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	circleKey := hex.EncodeToString(circlePriv.PubKey().SerializeCompressed())
	cfg.Circles.Keys = []string{circleKey}
	cfg.Circles.DataDir = t.TempDir()
	ignore := goleak.IgnoreCurrent()

	m := &Main{Config: cfg}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) }) // when the test fails early
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cent, _, err := websocket.Dial(ctx, "ws://"+m.Addr()+"/connection/websocket", nil)
	require.NoError(t, err)
	defer cent.CloseNow()
	require.NoError(t, cent.Write(ctx, websocket.MessageText, []byte(`{"id":1,"connect":{"token":"`+token(t, "alice", time.Hour)+`"}}`)))
	_, reply, err := cent.Read(ctx)
	require.NoError(t, err)
	require.Contains(t, string(reply), `"connect":{"client":`)
	circ, _, err := websocket.Dial(ctx, "ws://"+m.Addr()+"/"+circleKey, nil)
	require.NoError(t, err)
	defer circ.CloseNow()
	require.Eventually(t, func() bool { return m.Hub().NumClients() == 1 }, 10*time.Second, 5*time.Millisecond, "alice is a hub client")

	task := startSlowTask(t, client, m.URL())

	// A keep-alive connection opened before shutdown.
	early, err := net.Dial("tcp", m.Addr())
	require.NoError(t, err)
	defer early.Close()
	earlyR := bufio.NewReader(early)
	health := func() (*http.Response, string) {
		t.Helper()
		_, err := io.WriteString(early, "GET /health HTTP/1.1\r\nHost: switchboard\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(earlyR, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		return resp, string(b)
	}
	resp, body := health()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, `{}`, body)
	require.False(t, resp.Close)

	shutErr := make(chan error, 1)
	go func() { shutErr <- m.Shutdown(context.Background()) }()

	require.Equal(t, websocket.StatusCode(3001), closeStatus(t, cent), "Centrifugo client: shutdown, reconnect elsewhere")
	require.Equal(t, websocket.StatusGoingAway, closeStatus(t, circ), "circle session")
	select {
	case r := <-task.done:
		t.Fatalf("the worker-gateway request ended before the clients were disconnected: %+v", r)
	case err := <-shutErr:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	default:
	}
	_, err = net.Dial("tcp", m.Addr())
	require.Error(t, err, "the listener is closed once clients are told to reconnect")

	// The connection opened before is still answered: 503, then it closes.
	resp, body = health()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.JSONEq(t, `{"status":"shutting down"}`, body)
	require.True(t, resp.Close, "responses during shutdown close their connection")
	_, err = earlyR.ReadByte()
	require.ErrorIs(t, err, io.EOF)

	// The request in flight completes with its result; then Shutdown ends.
	require.NoError(t, os.WriteFile(task.release, nil, 0o600))
	r := receive(t, task.done, "the worker-gateway request completes")
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"ok":true,"result":{"released":true}}`, r.body)
	require.NoError(t, receive(t, shutErr, "Shutdown returns"))

	tr.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// TestShutdownDeadline: when the deadline passes with a request in flight,
// Shutdown closes its connection, stops every component and reports it.
func TestShutdownDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.Runner.Command = slowWorker(t)
	cfg.Runner.Token = "runner-secret"
	cfg.Runner.Workers = 1
	cfg.Runner.QueueTimeout = config.Duration(30 * time.Second)
	ignore := goleak.IgnoreCurrent()
	m := &Main{Config: cfg}
	require.NoError(t, m.Run(context.Background()))
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	tr := &http.Transport{}
	task := startSlowTask(t, &http.Client{Transport: tr}, m.URL())

	ctx, cancel := context.WithCancel(context.Background())
	shutErr := make(chan error, 1)
	go func() { shutErr <- m.Shutdown(ctx) }()
	require.Eventually(t, m.Hub().Closing, 10*time.Second, 5*time.Millisecond, "shutdown started")
	cancel() // the deadline passes with test.slow still running
	err := receive(t, shutErr, "Shutdown returns at its deadline")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "requests still running")
	r := receive(t, task.done, "the cut request ends")
	require.Error(t, r.err, "the connection of the cut request is closed")

	tr.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// TestSecondSignalForcesExit: a first SIGTERM starts the graceful shutdown,
// which waits for a running worker-gateway request; a second one exits at
// once with status 1.
func TestSecondSignalForcesExit(t *testing.T) {
	worker := slowWorker(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.json")
	argv, err := json.Marshal(worker)
	require.NoError(t, err)
	require.NoError(t, writeFile(conf, fmt.Sprintf(`{
  "http_server": {"port": 0},
  "client": {"token": {"hmac_secret_key": %q}},
  "http_api": {"key": %q},
  "runner": {"command": %s, "token": "runner-secret", "workers": 1, "queue_timeout": "30s"},
  "shutdown": {"timeout": "5m"}
}`, testSecret, testAPIKey, argv)))
	p := startProgram(t, "serve", "-c", conf)
	lines := p.readUntil(t, func(l string) bool { return strings.Contains(l, " listening on ") })
	base := strings.Fields(strings.SplitN(lines[len(lines)-1], " listening on ", 2)[1])[0]
	addr := strings.TrimPrefix(base, "http://")

	task := startSlowTask(t, &http.Client{}, base)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "the first signal closes the listener")
	select {
	case <-p.exited:
		t.Fatalf("exited on the first signal with a request in flight; stderr: %s", p.stderr.String())
	default:
	}

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	receive(t, p.exited, "exit on the second signal")
	require.Equal(t, 1, p.cmd.ProcessState.ExitCode())
	require.Contains(t, p.stderr.String(), "second signal: forcing exit")
	r := receive(t, task.done, "the cut request ends")
	require.Error(t, r.err)
}
