package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// subsOf counts the subscribers f holds on ch.
func subsOf(f *fakeServer, ch string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs[ch])
}

func TestURLList(t *testing.T) {
	fl := validFlags()
	fl.URL = " ws://a/connection/websocket, ,ws://b/connection/websocket "
	require.Equal(t, []string{"ws://a/connection/websocket", "ws://b/connection/websocket"}, fl.urls())
	require.NoError(t, fl.validate(1))
	fl.URL = "ws://a/x,http://b/x"
	require.ErrorContains(t, fl.validate(1), "--url: scheme must be ws or wss")
	fl.URL = " , "
	require.ErrorContains(t, fl.validate(1), "--url: missing")
	fl.URL = "ws://127.0.0.1/x,ws://example.com/x"
	fl.PerSourceAddr = 10
	require.ErrorContains(t, fl.validate(11), "--source-ips", "every node must be on loopback to skip --source-ips")

	base, err := apiBase("", []string{"wss://a:8443/connection/websocket", "ws://b/x"})
	require.NoError(t, err)
	require.Equal(t, "https://a:8443/api", base, "the API defaults to the first node")
	base, err = apiBase("http://c/api/", nil)
	require.NoError(t, err)
	require.Equal(t, "http://c/api", base)
}

func TestConnsSpreadOverNodes(t *testing.T) {
	a, b := newFakeServer(t), newFakeServer(t)
	fl := testFlags(a, "json")
	fl.URL = a.wsURL() + "," + b.wsURL()
	cmd := &ConnsCmd{ClientFlags: fl, Conns: 31, Subs: 1, Channels: 1, Prefix: "bench:ch"}
	out := capture(t, func() error { return cmd.Run(context.Background()) })
	var res ConnsResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Equal(t, int64(31), res.Established)
	require.Equal(t, int64(16), a.conns.Load(), "connection i goes to URL i mod 2")
	require.Equal(t, int64(15), b.conns.Load())
}

// Publications go to node A's API; subscribers sit on A and B; nothing is lost.
func TestFanoutAcrossNodes(t *testing.T) {
	for _, via := range []string{"api", "client"} {
		t.Run(via, func(t *testing.T) {
			a, b := newFakeServer(t), newFakeServer(t)
			link(a, b)
			fl := testFlags(a, "json")
			fl.URL = b.wsURL() + "," + a.wsURL() // the API target is given explicitly
			cmd := &FanoutCmd{
				ClientFlags: fl, Subscribers: 20, Channels: 2, Prefix: "bench:ch", Rate: 200, Via: via,
				APIURL: a.srv.URL + "/api", APIKey: a.apiKey, Publishers: 2, Inflight: 4, PayloadSize: 32,
				Drain: 5 * time.Second,
			}
			if via == "client" {
				fl.URL = a.wsURL() + "," + b.wsURL() // publisher connections dial the first URL
				cmd.ClientFlags = fl
			}
			out := capture(t, func() error { return cmd.Run(context.Background()) })
			var res FanoutResult
			require.NoError(t, json.Unmarshal(out, &res), string(out))
			require.Greater(t, res.Published, uint64(10))
			require.Equal(t, res.Expected, res.Delivered, string(out))
			require.Zero(t, res.Lost)
			require.Zero(t, res.Duplicates)
			require.Equal(t, res.Published, uint64(a.pubs.Load()), "every publication went to node A")
			require.Zero(t, b.pubs.Load())
			pubConns := map[string]int64{"api": 0, "client": 2}[via]
			require.Equal(t, int64(10), b.conns.Load(), "subscribers alternate over the nodes")
			require.Equal(t, 10+pubConns, a.conns.Load(), "publisher connections dial the first URL")
		})
	}
}

func TestRPCAPIPublish(t *testing.T) {
	f := newFakeServer(t)
	fl := testFlags(f, "json")
	fl.Secret = "" // no WebSocket connections: no tokens needed
	cmd := &RPCCmd{ClientFlags: fl, Conns: 3, Kind: kindAPIPublish, Channel: "bench:hist", APIKey: f.apiKey, PayloadSize: 40}
	out := capture(t, func() error { return cmd.Run(context.Background()) })
	var res RPCResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Equal(t, kindAPIPublish, res.Command)
	require.Greater(t, res.OK, uint64(10))
	require.Equal(t, res.Requests, res.OK)
	require.Equal(t, uint64(res.OK), uint64(f.pubs.Load()))
	require.Equal(t, res.Requests, res.Latency.Count)
	require.Greater(t, res.Throughput, 0.0)
	require.Equal(t, f.srv.URL+"/api/publish", res.URL)

	// A wrong key: every request fails, the run says so.
	cmd.APIKey = "wrong"
	out = captureAllFailed(t, func() error { return cmd.Run(context.Background()) })
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Zero(t, res.OK)
	require.Contains(t, res.ReplyErrors[0].What, "status 401")
}

// Two load processes' worth of connections over two linked nodes wait for one marker.
func TestConnsAwaitMarker(t *testing.T) {
	a, b := newFakeServer(t), newFakeServer(t)
	link(a, b)
	dir := t.TempDir()
	var wg sync.WaitGroup
	var buf testenv.Buffer
	old := output
	output = &buf // both runs print one JSON document each, in one write
	defer func() { output = old }()
	for i := range 2 {
		fl := testFlags(a, "json")
		fl.URL = a.wsURL() + "," + b.wsURL()
		fl.Duration = 100 * time.Millisecond
		cmd := &ConnsCmd{
			ClientFlags: fl, Conns: 10, Subs: 1, Channels: 1, Prefix: "bench:ch",
			AwaitMarker: true, MarkerTimeout: 10 * time.Second, ReadyFile: filepath.Join(dir, "ready."+strconv.Itoa(i)),
		}
		require.NoError(t, cmd.validate())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Run(context.Background()); err != nil {
				t.Errorf("run %d: %v", i, err)
			}
		}()
	}
	for i := range 2 {
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(filepath.Join(dir, "ready."+strconv.Itoa(i)))
			return err == nil && string(b) == "10\n"
		}, 10*time.Second, 5*time.Millisecond)
	}
	require.Equal(t, 10, subsOf(a, "bench:ch0"))
	require.Equal(t, 10, subsOf(b, "bench:ch0"))
	sent := time.Now().UnixNano()
	a.publish("bench:ch0", appendStamp(nil, sent, 1, 0, 0))
	wg.Wait()
	dec := json.NewDecoder(strings.NewReader(buf.String()))
	for range 2 {
		var res ConnsResult
		require.NoError(t, dec.Decode(&res), buf.String())
		require.Equal(t, int64(10), res.MarkerReceived)
		require.Zero(t, res.MarkerMissing)
		require.Equal(t, sent, res.MarkerSentAt)
		require.GreaterOrEqual(t, res.MarkerFirstAt, sent)
		require.GreaterOrEqual(t, res.MarkerLastAt, res.MarkerFirstAt)
		require.InDelta(t, float64(res.MarkerLastAt-sent)/1e6, res.MarkerAllMillis, 1e-6)
		require.Equal(t, uint64(10), res.MarkerLatency.Count)
	}
}

// A marker that never comes: the wait ends at --marker-timeout and reports the missing.
func TestConnsMarkerTimeout(t *testing.T) {
	f := newFakeServer(t)
	fl := testFlags(f, "json")
	fl.Duration = 50 * time.Millisecond
	cmd := &ConnsCmd{ClientFlags: fl, Conns: 4, Subs: 1, Channels: 1, Prefix: "bench:ch", AwaitMarker: true, MarkerTimeout: 100 * time.Millisecond}
	out := capture(t, func() error { return cmd.Run(context.Background()) })
	var res ConnsResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Zero(t, res.MarkerReceived)
	require.Equal(t, int64(4), res.MarkerMissing)
}

func TestNewOptionsValidation(t *testing.T) {
	noAuth := validFlags()
	noAuth.Secret = ""
	tests := []struct {
		name string
		cmd  interface{ validate() error }
		want string
	}{
		{"marker without subs", &ConnsCmd{ClientFlags: validFlags(), Conns: 1, Channels: 1, AwaitMarker: true, MarkerTimeout: time.Second}, "--await-marker"},
		{"marker timeout", &ConnsCmd{ClientFlags: validFlags(), Conns: 1, Subs: 1, Channels: 1, AwaitMarker: true}, "--marker-timeout"},
		{"marker ok", &ConnsCmd{ClientFlags: validFlags(), Conns: 1, Subs: 1, Channels: 1, AwaitMarker: true, MarkerTimeout: time.Second}, ""},
		{"api publish ok without secret", &RPCCmd{ClientFlags: noAuth, Conns: 4, Kind: kindAPIPublish, Channel: "c", APIKey: "k"}, ""},
		{"api publish no key", &RPCCmd{ClientFlags: noAuth, Conns: 4, Kind: kindAPIPublish, Channel: "c"}, "--api-key"},
		{"api publish bad api url", &RPCCmd{ClientFlags: noAuth, Conns: 4, Kind: kindAPIPublish, Channel: "c", APIKey: "k", APIURL: "ws://x"}, "--api-url"},
		{"api publish no channel", &RPCCmd{ClientFlags: noAuth, Conns: 4, Kind: kindAPIPublish, APIKey: "k"}, "--channel"},
		{"client publish still needs a secret", &RPCCmd{ClientFlags: noAuth, Conns: 4, Kind: "publish", Channel: "c"}, "--secret"},
		{"rpc conns cap", &RPCCmd{ClientFlags: validFlags(), Conns: 10001, Kind: "rpc", Method: "m"}, "--conns"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// The CLI keeps a comma-separated --url intact (a string flag, split by the tool).
func TestKongURLList(t *testing.T) {
	var cli struct {
		Bench Cmd `cmd:""`
	}
	p, err := kong.New(&cli, kong.Exit(func(int) { t.Fatal("exit") }))
	require.NoError(t, err)
	_, err = p.Parse([]string{"bench", "conns", "--url", "ws://a/x,ws://b/x", "--secret", "s", "--await-marker", "--ready-file", "/tmp/r"})
	require.NoError(t, err)
	require.Equal(t, []string{"ws://a/x", "ws://b/x"}, cli.Bench.Conns.urls())
	require.True(t, cli.Bench.Conns.AwaitMarker)
	require.Equal(t, 2*time.Minute, cli.Bench.Conns.MarkerTimeout)
	_, err = p.Parse([]string{"bench", "rpc", "--kind", "api-publish", "--api-key", "k", "--api-url", "http://a:1/api"})
	require.NoError(t, err, "api-publish needs no --secret")
	_, err = p.Parse([]string{"bench", "rpc", "--kind", "api-publish"})
	require.ErrorContains(t, err, "--api-key")
}
