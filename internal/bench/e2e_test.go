package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle-connection goroutines for a moment after CloseIdleConnections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// capture runs fn with the tool's output redirected into a buffer.
func capture(t *testing.T, fn func() error) []byte {
	t.Helper()
	var buf bytes.Buffer
	old := output
	output = &buf
	defer func() { output = old }()
	require.NoError(t, fn())
	return buf.Bytes()
}

// captureAllFailed is capture for a run that must print its result and then
// fail with ErrAllFailed (the command exits non-zero).
func captureAllFailed(t *testing.T, fn func() error) []byte {
	t.Helper()
	var buf bytes.Buffer
	old := output
	output = &buf
	defer func() { output = old }()
	require.ErrorIs(t, fn(), ErrAllFailed)
	return buf.Bytes()
}

func testFlags(f *fakeServer, proto string) ClientFlags {
	fl := validFlags()
	fl.URL = f.wsURL()
	fl.Protocol = proto
	fl.Duration = 500 * time.Millisecond
	fl.Timeout = 20 * time.Second
	fl.HandshakeTimeout = 5 * time.Second
	fl.ServerPID = os.Getpid() // the fake server lives in this process
	fl.JSON = true
	return fl
}

func TestConnsEndToEnd(t *testing.T) {
	for _, proto := range []string{"json", "protobuf"} {
		t.Run(proto, func(t *testing.T) {
			f := newFakeServer(t)
			cmd := &ConnsCmd{ClientFlags: testFlags(f, proto), Conns: 50, Subs: 3, Channels: 10, Prefix: "bench:ch"}
			out := capture(t, func() error { return cmd.Run(context.Background()) })
			var res ConnsResult
			require.NoError(t, json.Unmarshal(out, &res), string(out))
			require.Equal(t, int64(50), res.Established)
			require.Zero(t, res.Failed)
			require.Equal(t, int64(50), res.StillOpen)
			require.Equal(t, uint64(50), res.ServerPings)
			require.Greater(t, res.ConnectRate, 0.0)
			require.Greater(t, res.ServerRSSAfter, uint64(0))
			require.Equal(t, uint64(50), res.ConnectLatency.Count)
			require.Eventually(t, func() bool { return f.pongs.Load() == 50 }, 5*time.Second, 10*time.Millisecond, "every server ping answered")
			f.mu.Lock()
			n := 0
			for _, cs := range f.subs {
				n += len(cs)
			}
			f.mu.Unlock()
			require.Equal(t, 150, n)
		})
	}
}

func TestConnsReportsFailures(t *testing.T) {
	f := newFakeServer(t)
	f.rejectSub = true
	cmd := &ConnsCmd{ClientFlags: testFlags(f, "json"), Conns: 5, Subs: 1, Channels: 1, Prefix: "bench:ch"}
	out := captureAllFailed(t, func() error { return cmd.Run(context.Background()) })
	var res ConnsResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.Zero(t, res.Established)
	require.Equal(t, uint64(5), res.Failed)
	require.Len(t, res.Errors, 1)
	require.Contains(t, res.Errors[0].What, "103")
}

func TestFanoutEndToEnd(t *testing.T) {
	tests := []struct {
		name, proto, via string
		rate             float64
	}{
		{"json api paced", "json", "api", 200},
		{"protobuf api max", "protobuf", "api", 0},
		{"json client max", "json", "client", 0},
		{"protobuf client paced", "protobuf", "client", 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t)
			cmd := &FanoutCmd{
				ClientFlags: testFlags(f, tc.proto), Subscribers: 20, Channels: 3, Prefix: "bench:ch",
				Rate: tc.rate, Via: tc.via, APIKey: f.apiKey, Publishers: 2, Inflight: 8, PayloadSize: 100,
				Drain: 5 * time.Second,
			}
			out := capture(t, func() error { return cmd.Run(context.Background()) })
			var res FanoutResult
			require.NoError(t, json.Unmarshal(out, &res), string(out))
			require.Equal(t, int64(20+map[string]int64{"api": 0, "client": 2}[tc.via]), res.Established)
			require.Greater(t, res.Published, uint64(10))
			require.Zero(t, res.PublishFailed)
			require.Equal(t, res.Expected, res.Delivered, string(out))
			require.Zero(t, res.Lost)
			require.Zero(t, res.Duplicates)
			require.Zero(t, res.Reordered)
			require.Zero(t, res.BadPayloads)
			require.Equal(t, res.Delivered, res.Latency.Count)
			require.Greater(t, res.Latency.P99, 0.0)
			require.GreaterOrEqual(t, res.Latency.Max, res.Latency.P99)
			require.Greater(t, res.DeliveryRate, 0.0)
			if tc.rate > 0 {
				// Never above the offered rate (the machine may be too busy to reach it).
				require.LessOrEqual(t, res.PublishRate, tc.rate*1.2)
			}
		})
	}
}

func TestFanoutCountsDuplicatesAndSlowConsumerLoss(t *testing.T) {
	f := newFakeServer(t)
	f.dupEvery = 5
	f.kickUser = "user-3"
	cmd := &FanoutCmd{
		ClientFlags: testFlags(f, "json"), Subscribers: 10, Channels: 1, Prefix: "bench:ch",
		Rate: 100, Via: "api", APIKey: f.apiKey, Publishers: 1, Inflight: 1,
		Drain: testenv.Wait, // ends once the healthy subscribers caught up
	}
	out := capture(t, func() error { return cmd.Run(context.Background()) })
	var res FanoutResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Greater(t, res.Published, uint64(20))
	// Every fifth publication arrives twice at the 9 healthy subscribers.
	require.Equal(t, (res.Published/5)*9, res.Duplicates)
	require.Zero(t, res.Lost, "healthy connections lost nothing: %s", out)
	require.Equal(t, res.Published, res.LostDisconnect, "the kicked subscriber lost everything")
	require.Len(t, res.Disconnects, 1)
	require.Contains(t, res.Disconnects[0].What, "close 3008")
}

func TestRPCEndToEnd(t *testing.T) {
	for _, tc := range []struct{ proto, kind, method string }{
		{"json", "rpc", "echo"}, {"protobuf", "rpc", "echo"}, {"json", "publish", ""}, {"json", "rpc", "nope"},
	} {
		t.Run(tc.proto+"/"+tc.kind+"/"+tc.method, func(t *testing.T) {
			f := newFakeServer(t)
			cmd := &RPCCmd{ClientFlags: testFlags(f, tc.proto), Conns: 3, Kind: tc.kind, Method: tc.method, Channel: "bench:rpc", PayloadSize: 32}
			if tc.method == "" {
				cmd.Method = "echo"
			}
			run := capture
			if tc.method == "nope" {
				run = captureAllFailed // every command failed: the run fails
			}
			out := run(t, func() error { return cmd.Run(context.Background()) })
			var res RPCResult
			require.NoError(t, json.Unmarshal(out, &res), string(out))
			require.Equal(t, int64(3), res.Established)
			require.Greater(t, res.Requests, uint64(10))
			require.Zero(t, res.Timeouts)
			require.GreaterOrEqual(t, res.Latency.Count+3, res.Requests)
			if tc.method == "nope" {
				require.Zero(t, res.OK)
				require.Contains(t, res.ReplyErrors[0].What, "104")
			} else {
				require.Equal(t, res.Latency.Count, res.OK)
				require.Empty(t, res.ReplyErrors)
			}
		})
	}
}

func TestCancelStopsCleanly(t *testing.T) {
	f := newFakeServer(t)
	cmd := &ConnsCmd{ClientFlags: testFlags(f, "json"), Conns: 20, Subs: 1, Channels: 1, Prefix: "bench:ch"}
	cmd.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the connections are up (the Ctrl-C case).
		assert.Eventually(t, func() bool { return f.active.Load() == 20 }, 10*time.Second, 5*time.Millisecond, "20 connections up")
		cancel()
	}()
	start := time.Now()
	out := capture(t, func() error { return cmd.Run(ctx) })
	require.Less(t, time.Since(start), 15*time.Second)
	var res ConnsResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.True(t, res.Interrupted)
	require.Eventually(t, func() bool { return f.active.Load() == 0 }, 5*time.Second, 5*time.Millisecond, "connections closed")
}

func TestTextOutputAndTokenFile(t *testing.T) {
	f := newFakeServer(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tokens")
	tok, err := signToken([]byte("s"), "user-tf", time.Now().Add(time.Hour).Unix())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tokFile, []byte("# comment\n"+tok+"\n"), 0o600))
	fl := testFlags(f, "json")
	fl.Secret = ""
	fl.TokenFile = tokFile
	fl.JSON = false
	cmd := &RPCCmd{ClientFlags: fl, Conns: 2, Kind: "rpc", Method: "echo", PayloadSize: 10}
	out := capture(t, func() error { return cmd.Run(context.Background()) })
	require.Contains(t, string(out), "latency ms")
	require.Contains(t, string(out), "client cpu")

	_, err = readTokens(filepath.Join(dir, "missing"))
	require.Error(t, err)
	require.NoError(t, os.WriteFile(tokFile, []byte("\n# only comments\n"), 0o600))
	_, err = readTokens(tokFile)
	require.ErrorContains(t, err, "no tokens")
}

func TestKongWiring(t *testing.T) {
	var cli struct {
		Bench Cmd `cmd:""`
	}
	f := newFakeServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	p, err := kong.New(&cli, kong.BindTo(ctx, (*context.Context)(nil)), kong.Exit(func(int) { t.Fatal("exit") }))
	require.NoError(t, err)
	kctx, err := p.Parse([]string{"bench", "rpc", "--url", f.wsURL(), "--secret", "s", "-n", "1", "--duration", "200ms", "--json", "--label", "fake"})
	require.NoError(t, err)
	out := capture(t, func() error { return kctx.Run() })
	var res RPCResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.Equal(t, "fake", res.Label)

	// The results feed the plot command.
	results := filepath.Join(dir, "results.json")
	connsOut := capture(t, func() error {
		k, err := p.Parse([]string{"bench", "conns", "--url", f.wsURL(), "--secret", "s", "-n", "5", "--duration", "100ms", "--settle", "0s", "--json", "--server-pid", itoa(os.Getpid()), "--label", "fake"})
		require.NoError(t, err)
		return k.Run()
	})
	require.NoError(t, os.WriteFile(results, append(connsOut, out...), 0o644))
	capture(t, func() error {
		k, err := p.Parse([]string{"bench", "plot", "--in", results, "--out", filepath.Join(dir, "img")})
		require.NoError(t, err)
		return k.Run()
	})
	svg, err := os.ReadFile(filepath.Join(dir, "img", "memory.svg"))
	require.NoError(t, err)
	require.Contains(t, string(svg), "</svg>")

	_, err = p.Parse([]string{"bench", "conns", "--protocol", "xml"})
	require.Error(t, err)
}

func TestCloseDuringSetupIsAConnectFailure(t *testing.T) {
	f := newFakeServer(t)
	f.closeOnConnect = 3500
	cmd := &ConnsCmd{ClientFlags: testFlags(f, "json"), Conns: 3, Subs: 1, Channels: 1, Prefix: "bench:ch"}
	out := captureAllFailed(t, func() error { return cmd.Run(context.Background()) })
	var res ConnsResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Equal(t, int64(0), res.Established)
	require.Equal(t, uint64(3), res.Failed)
	require.Contains(t, res.Errors[0].What, "close 3500")
	require.Empty(t, res.Disconnects, "not counted as disconnects of established connections")
	require.Equal(t, int64(0), res.StillOpen)
}

func TestFanoutFailsWhenEverySubscriberFails(t *testing.T) {
	f := newFakeServer(t)
	f.rejectSub = true
	cmd := &FanoutCmd{
		ClientFlags: testFlags(f, "json"), Subscribers: 4, Channels: 1, Prefix: "bench:ch",
		Rate: 100, Via: "api", APIKey: f.apiKey, Publishers: 1, Inflight: 1, PayloadSize: 10, Drain: time.Second,
	}
	out := captureAllFailed(t, func() error { return cmd.Run(context.Background()) })
	var res FanoutResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Zero(t, res.Established)
}

func TestRPCFailsWhenEveryConnectionFails(t *testing.T) {
	f := newFakeServer(t)
	f.closeOnConnect = 3500
	cmd := &RPCCmd{ClientFlags: testFlags(f, "json"), Conns: 2, Kind: "rpc", Method: "echo", PayloadSize: 8}
	captureAllFailed(t, func() error { return cmd.Run(context.Background()) })
}

func TestFailureRules(t *testing.T) {
	require.NoError(t, (&ConnsResult{Requested: 3, Established: 1, Failed: 2}).failure())
	require.NoError(t, (&ConnsResult{Requested: 3, Interrupted: true}).failure(), "stopped before anything failed")
	require.NoError(t, (&FanoutResult{Published: 5, Interrupted: true}).failure())
	require.ErrorIs(t, (&ConnsResult{Requested: 3, Failed: 3}).failure(), ErrAllFailed)
	require.ErrorIs(t, (&FanoutResult{Established: 3, Published: 5}).failure(), ErrAllFailed, "published, nothing delivered")
	require.ErrorIs(t, (&FanoutResult{ConnFailed: 3}).failure(), ErrAllFailed)
	require.ErrorIs(t, (&RPCResult{ConnFailed: 2}).failure(), ErrAllFailed)
	require.ErrorIs(t, (&FanoutResult{Established: 3, PublishFailed: 5, PublishErrors: []Count{{"401", 5}}}).failure(), ErrAllFailed)
	require.NoError(t, (&FanoutResult{Established: 3, Published: 5, Delivered: 1, Lost: 14}).failure())
	require.NoError(t, (&RPCResult{Established: 1, Requests: 5, OK: 1}).failure())
	err := (&RPCResult{Established: 1, Requests: 5, ReplyErrors: []Count{{"104 method not found", 5}}}).failure()
	require.ErrorIs(t, err, ErrAllFailed)
	require.ErrorContains(t, err, "104 method not found")
}

func TestKongReportsBadFlagsAtParse(t *testing.T) {
	var cli struct {
		Bench Cmd `cmd:""`
	}
	p, err := kong.New(&cli, kong.Exit(func(int) { t.Fatal("exit") }))
	require.NoError(t, err)
	_, err = p.Parse([]string{"bench", "conns", "--url", "http://x", "--secret", "s"})
	require.ErrorContains(t, err, "--url: scheme must be ws or wss")
}
