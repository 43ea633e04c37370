package bench

import (
	"bytes"
	"math"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value maps to a bucket whose bounds contain it, and bucket bounds tile the line.
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200000; i++ {
		v := r.Int63n(1 << uint(r.Intn(62)+1))
		b := bucketOf(v)
		require.GreaterOrEqual(t, v, bucketLow(b), "v=%d b=%d", v, b)
		require.LessOrEqual(t, v, bucketHigh(b), "v=%d b=%d", v, b)
		if v >= histSubCount {
			width := float64(bucketHigh(b) - bucketLow(b) + 1)
			require.LessOrEqual(t, width/float64(v), 1.0/float64(histHalf)+1e-12)
		}
	}
	for i := 0; i+1 < histBuckets; i++ {
		require.Equal(t, bucketHigh(i)+1, bucketLow(i+1), "bucket %d", i)
	}
	require.Equal(t, histBuckets-1, bucketOf(math.MaxInt64))
	require.Equal(t, 0, bucketOf(-5))
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	require.Zero(t, h.Quantile(0.99))
	for v := int64(1); v <= 100000; v++ {
		h.Record(v * 1000) // 1 µs .. 100 ms
	}
	vals := make([]int64, 0, 100000)
	for v := int64(1); v <= 100000; v++ {
		vals = append(vals, v*1000)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		require.InEpsilon(t, float64(exact), float64(got), 0.01, "q=%v", q)
		require.GreaterOrEqual(t, got, exact, "quantile is the bucket's upper edge")
	}
	s := h.Snapshot()
	require.Equal(t, int64(100000*1000), s.max)
	require.Equal(t, int64(1000), s.min)
	require.Equal(t, int64(100000*1000), s.Quantile(1))
	require.Equal(t, int64(1000), s.Quantile(0))
	require.InDelta(t, 50000.5*1000, s.Mean(), 1)

	sum := s.Summary()
	require.InEpsilon(t, 50.0, sum.P50, 0.01)
	require.InEpsilon(t, 99.0, sum.P99, 0.01)
	require.Equal(t, 100.0, sum.Max)
}

func TestHistogramSubAndMerge(t *testing.T) {
	var a, b Histogram
	for i := 0; i < 100; i++ {
		a.Record(10)
	}
	prev := a.Snapshot()
	for i := 0; i < 100; i++ {
		a.Record(1_000_000)
	}
	d := a.Snapshot().Sub(prev)
	require.Equal(t, uint64(100), d.Count())
	require.InEpsilon(t, 1_000_000.0, float64(d.Quantile(0.5)), 0.01)

	b.Record(5)
	b.Record(5_000_000)
	b.Merge(&a)
	require.Equal(t, uint64(202), b.Count())
	s := b.Snapshot()
	require.Equal(t, int64(5), s.min)
	require.Equal(t, int64(5_000_000), s.max)
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 10000; i++ {
				h.Record(int64(i))
			}
			done <- struct{}{}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	require.Equal(t, uint64(40000), h.Count())
	require.Equal(t, int64(9999), h.Snapshot().max)
}

func TestSeqTracker(t *testing.T) {
	tests := []struct {
		name                    string
		seqs                    []uint64
		published               uint64
		lost, dups, reord, dist uint64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, 0, 0, 0, 4},
		{"tail missing", []uint64{1, 2}, 4, 2, 0, 0, 2},
		{"gap", []uint64{1, 4, 5}, 5, 2, 0, 0, 3},
		{"gap filled late", []uint64{1, 4, 2, 3, 5}, 5, 0, 0, 2, 5},
		{"middle of gap", []uint64{1, 6, 3, 2, 5, 4}, 6, 0, 0, 4, 6},
		{"duplicate in order", []uint64{1, 2, 2, 3}, 3, 0, 1, 0, 3},
		{"duplicate of old", []uint64{1, 2, 3, 1}, 3, 0, 1, 0, 3},
		{"duplicate after gap fill", []uint64{1, 3, 2, 2}, 3, 0, 1, 1, 3},
		{"nothing", nil, 3, 3, 0, 0, 0},
		{"zero ignored", []uint64{0, 1}, 1, 0, 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range tc.seqs {
				tr.add(s)
			}
			require.Equal(t, tc.lost, tr.lost(tc.published), "lost")
			require.Equal(t, tc.dups, tr.dups, "dups")
			require.Equal(t, tc.reord, tr.reorder, "reordered")
			require.Equal(t, tc.dist, tr.distinct(), "distinct")
		})
	}
}

func TestSeqTrackerRandomPermutation(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	const n = 5000
	perm := r.Perm(n)
	var tr seqTracker
	kept := 0
	for _, p := range perm {
		if p%10 == 3 { // drop 10 %
			continue
		}
		tr.add(uint64(p + 1))
		kept++
		if p%97 == 0 {
			tr.add(uint64(p + 1)) // duplicate
		}
	}
	require.Equal(t, uint64(n-kept), tr.lost(n))
	require.Equal(t, uint64(kept), tr.distinct())
	var wantDups uint64
	for _, p := range perm {
		if p%10 != 3 && p%97 == 0 {
			wantDups++
		}
	}
	require.Equal(t, wantDups, tr.dups)
}

func TestStampRoundTrip(t *testing.T) {
	now := time.Now().UnixNano()
	for _, size := range []int{0, 10, 64, 1000} {
		b := appendStamp(nil, now, 42, 3, size)
		require.True(t, len(b) >= size, "size %d got %d", size, len(b))
		if size > 60 {
			require.Equal(t, size, len(b))
		}
		ts, seq, w, err := parseStamp(b)
		require.NoError(t, err)
		require.Equal(t, now, ts)
		require.Equal(t, uint64(42), seq)
		require.Equal(t, 3, w)
	}
	// Re-encoded by a server: other order, spaces.
	ts, seq, w, err := parseStamp([]byte(`{ "p" : "x\"s\":9", "s" : 7, "t": 123 }`))
	require.NoError(t, err)
	require.Equal(t, int64(123), ts)
	require.Equal(t, uint64(7), seq)
	require.Equal(t, 0, w)
	for _, bad := range []string{``, `{}`, `{"t":1}`, `{"s":1}`, `{"t":"1","s":2}`, `{"t":1,"s":-2}`, `{"t":99999999999999999999999,"s":1}`} {
		_, _, _, err := parseStamp([]byte(bad))
		require.Error(t, err, bad)
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add(appendStamp(nil, 1700000000000000000, 5, 1, 64))
	f.Add([]byte(`{"s":1,"t":2}`))
	f.Add([]byte(`"t":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, seq, w, err := parseStamp(b)
		if err == nil {
			out := appendStamp(nil, ts, seq, w, 0)
			ts2, seq2, w2, err := parseStamp(out)
			if err != nil || ts2 != ts || seq2 != seq || w2 != w {
				t.Fatalf("round trip of %q: %v", b, err)
			}
		}
	})
}

func TestLoopbackSourceSpreading(t *testing.T) {
	require.Equal(t, "127.0.0.2", loopbackSource(0).String())
	require.Equal(t, "127.0.0.3", loopbackSource(1).String())
	require.Equal(t, "127.0.1.0", loopbackSource(254).String())
	require.Equal(t, "127.1.0.0", loopbackSource(65534).String())

	f := ClientFlags{PerSourceAddr: 60000}
	require.Nil(t, f.sourceFunc(60000), "no spreading up to one address' worth")
	src := f.sourceFunc(100000)
	require.NotNil(t, src)
	require.Equal(t, "127.0.0.2", src(0).String())
	require.Equal(t, "127.0.0.2", src(59999).String())
	require.Equal(t, "127.0.0.3", src(60000).String())
	require.Equal(t, "127.0.0.3", src(99999).String())

	f = ClientFlags{PerSourceAddr: 2, SourceIPs: []string{"10.0.0.1", "10.0.0.2"}}
	src = f.sourceFunc(3)
	var got []string
	for i := 0; i < 6; i++ {
		got = append(got, src(i).String())
	}
	require.Equal(t, []string{"10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.1", "10.0.0.1"}, got)

	require.Equal(t, 27232, defaultPerAddr(28232))
	require.Equal(t, 60000, defaultPerAddr(64512))
	require.Equal(t, 1000, defaultPerAddr(100))
}

func validFlags() ClientFlags {
	return ClientFlags{
		URL: "ws://127.0.0.1:8000/connection/websocket", Protocol: "json", Secret: "s",
		DialConcurrency: 64, HandshakeTimeout: time.Second, Duration: time.Second, Timeout: time.Minute,
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		cmd  interface{ validate() error }
		want string // substring of the error; empty = valid
	}{
		{"conns ok", &ConnsCmd{ClientFlags: validFlags(), Conns: 10, Subs: 2, Channels: 5}, ""},
		{"no auth", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.Secret = ""; return f }(), Conns: 1}, "--secret or --token-file"},
		{"both auth", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.TokenFile = "x"; return f }(), Conns: 1}, "mutually exclusive"},
		{"bad scheme", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.URL = "http://x/"; return f }(), Conns: 1}, "scheme"},
		{"bad protocol", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.Protocol = "xml"; return f }(), Conns: 1}, "--protocol"},
		{"zero duration", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.Duration = 0; return f }(), Conns: 1}, "--duration"},
		{"bad source ip", &ConnsCmd{ClientFlags: func() ClientFlags { f := validFlags(); f.SourceIPs = []string{"nope"}; return f }(), Conns: 1}, "--source-ips"},
		{"remote needs sources", &ConnsCmd{ClientFlags: func() ClientFlags {
			f := validFlags()
			f.URL = "ws://example.com/connection/websocket"
			f.PerSourceAddr = 10
			return f
		}(), Conns: 11, Subs: 1, Channels: 1}, "--source-ips"},
		{"zero conns", &ConnsCmd{ClientFlags: validFlags(), Conns: 0}, "--conns"},
		{"subs over channels", &ConnsCmd{ClientFlags: validFlags(), Conns: 1, Subs: 3, Channels: 2}, "--channels"},
		{"fanout ok", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 10, Channels: 2, Via: "api", APIKey: "k", Publishers: 1, Inflight: 1}, ""},
		{"fanout no key", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 10, Channels: 1, Via: "api", Publishers: 1, Inflight: 1}, "--api-key"},
		{"fanout client no key", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 10, Channels: 1, Via: "client", Publishers: 1, Inflight: 1}, ""},
		{"fanout channels", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 1, Channels: 2, Via: "api", APIKey: "k", Publishers: 1, Inflight: 1}, "--channels"},
		{"fanout rate", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 1, Channels: 1, Rate: -1, Via: "api", APIKey: "k", Publishers: 1, Inflight: 1}, "--rate"},
		{"fanout api url", &FanoutCmd{ClientFlags: validFlags(), Subscribers: 1, Channels: 1, Via: "api", APIKey: "k", APIURL: "ftp://x", Publishers: 1, Inflight: 1}, "--api-url"},
		{"rpc ok", &RPCCmd{ClientFlags: validFlags(), Conns: 1, Kind: "rpc", Method: "m"}, ""},
		{"rpc kind", &RPCCmd{ClientFlags: validFlags(), Conns: 1, Kind: "ping"}, "--kind"},
		{"rpc publish channel", &RPCCmd{ClientFlags: validFlags(), Conns: 1, Kind: "publish"}, "--channel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestChannelsFor(t *testing.T) {
	require.Nil(t, channelsFor("c", 3, 0, 10))
	require.Equal(t, []string{"c6", "c7"}, channelsFor("c", 3, 2, 10))
	require.Equal(t, []string{"c4", "c0", "c1"}, channelsFor("c", 3, 3, 5))
	// Never the same channel twice on one connection when K <= C.
	for idx := 0; idx < 50; idx++ {
		chs := channelsFor("c", idx, 4, 7)
		seen := map[string]bool{}
		for _, c := range chs {
			require.False(t, seen[c])
			seen[c] = true
		}
	}
}

func TestCodecs(t *testing.T) {
	for _, name := range []string{"json", "protobuf"} {
		t.Run(name, func(t *testing.T) {
			cd, err := newCodec(name)
			require.NoError(t, err)
			frame, err := cd.appendCommand(nil, &protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: "t"}})
			require.NoError(t, err)
			frame, err = cd.appendCommand(frame, &protocol.Command{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: "a"}})
			require.NoError(t, err)
			var dec protocol.CommandDecoder
			if name == "json" {
				dec = protocol.NewJSONCommandDecoder(frame)
			} else {
				dec = protocol.NewProtobufCommandDecoder(frame)
			}
			c1, err := dec.Decode()
			require.NoError(t, err)
			require.Equal(t, "t", c1.Connect.Token)
			c2, err := dec.Decode()
			require.True(t, err == nil || err.Error() == "EOF")
			require.Equal(t, "a", c2.Subscribe.Channel)

			// Replies: a ping, a connect reply and a publication in one frame.
			out := encodeReplies(t, name == "protobuf",
				&protocol.Reply{},
				&protocol.Reply{Id: 1, Connect: &protocol.ConnectResult{Client: "c", Pong: true}},
				&protocol.Reply{Push: &protocol.Push{Channel: "a", Pub: &protocol.Publication{Data: []byte(`{"t":1,"s":2}`)}}},
			)
			var got []*protocol.Reply
			require.NoError(t, cd.decode(out, func(r *protocol.Reply) { got = append(got, r) }, nil))
			require.Len(t, got, 3)
			require.Nil(t, got[0], "empty reply is a ping")
			require.True(t, got[1].Connect.Pong)
			require.Equal(t, `{"t":1,"s":2}`, string(got[2].Push.Pub.Data))
			require.Equal(t, map[string][]byte{"json": []byte("{}"), "protobuf": {0}}[name], cd.pong())
		})
	}
	_, err := newCodec("xml")
	require.Error(t, err)
	require.Error(t, protobufCodec{}.decode([]byte{10, 1}, func(*protocol.Reply) {}, nil))
	require.Error(t, jsonCodec{}.decode([]byte(`{"id":`), func(*protocol.Reply) {}, nil))
}

func FuzzDecodeReplies(f *testing.F) {
	f.Add([]byte("{}\n{\"id\":1,\"connect\":{\"pong\":true}}"), true)
	f.Add([]byte{0, 2, 8, 1}, false)
	f.Fuzz(func(t *testing.T, b []byte, js bool) {
		var cd codec = protobufCodec{}
		if js {
			cd = jsonCodec{}
		}
		pub := func(ch, data []byte) {
			if len(data) == 0 || data[0] != '{' || data[len(data)-1] != '}' {
				t.Fatalf("fast path returned bad data %q", data)
			}
		}
		_ = cd.decode(b, func(*protocol.Reply) {}, pub)
		// Split in two must not panic either.
		if len(b) > 1 {
			_ = cd.decode(b[:len(b)/2], func(*protocol.Reply) {}, pub)
		}
	})
}

func TestPlot(t *testing.T) {
	in := `{"kind":"conns","label":"a","established":1000,"server_rss_after":10485760}
{"kind":"conns","label":"a","established":2000,"server_rss_after":20971520}
{"kind":"fanout","label":"a","subscribers":100,"offered_rate":10,"latency":{"count":5,"p50_ms":1,"p99_ms":2}}
{"kind":"fanout","label":"b<x>","subscribers":100,"offered_rate":0,"deliveries_per_second":5000}
{"kind":"rpc","label":"a"}`
	rs, err := decodeResults([]byte(in))
	require.NoError(t, err)
	require.Len(t, rs, 5)
	charts := buildCharts(rs)
	var names []string
	for n := range charts {
		names = append(names, n)
	}
	sort.Strings(names)
	require.Equal(t, []string{"latency.svg", "memory.svg", "throughput.svg"}, names)
	var buf bytes.Buffer
	charts["throughput.svg"].render(&buf)
	require.Contains(t, buf.String(), "<svg")
	require.Contains(t, buf.String(), "b&lt;x&gt;")
	require.NotContains(t, buf.String(), "NaN")

	arr, err := decodeResults([]byte(`[{"kind":"conns","label":"x"}]`))
	require.NoError(t, err)
	require.Len(t, arr, 1)
	_, err = decodeResults([]byte(`{"kind":`))
	require.Error(t, err)
	require.Equal(t, 2.0, niceStep(9, 5))
	require.Equal(t, "20k", fmtTick(20000))
	require.Equal(t, "1.5M", fmtTick(1500000))
}

func TestErrClass(t *testing.T) {
	err := &net.OpError{Op: "dial", Err: &net.AddrError{Err: "boom", Addr: "1.2.3.4:5"}}
	require.True(t, strings.HasPrefix(errClass(err), "dial: "))
	require.Equal(t, "closed", errClass(nil))
	var e errCounter
	for i := 0; i < 30; i++ {
		e.add(net.UnknownNetworkError(strings.Repeat("x", i)))
	}
	require.Equal(t, uint64(30), e.total())
	require.LessOrEqual(t, len(e.list()), 21)
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestFastJSONPub(t *testing.T) {
	tests := []struct {
		line, ch, data string
		ok             bool
	}{
		{`{"push":{"channel":"bench:ch0","pub":{"data":{"t":1,"s":2},"offset":5}}}`, "bench:ch0", `{"t":1,"s":2}`, true},
		{`{"push":{"channel":"c","pub":{"data":{"a":"}{\\\"","b":{"c":1}}}}}`, "c", `{"a":"}{\\\"","b":{"c":1}}`, true},
		{`{"push":{"pub":{"data":{}},"channel":"c"}}`, "", "", false},
		{`{"push":{"channel":"c\\"x","pub":{"data":{}}}}`, "", "", false},
		{`{"push":{"channel":"c","pub":{"data":"str"}}}`, "", "", false},
		{`{"push":{"channel":"c","pub":{"data":{"unterminated":1`, "", "", false},
		{`{"push":{"channel":"c","join":{"info":{}}}}`, "", "", false},
		{`{"id":1,"connect":{}}`, "", "", false},
	}
	for _, tc := range tests {
		ch, data, ok := fastJSONPub([]byte(tc.line))
		require.Equal(t, tc.ok, ok, tc.line)
		if ok {
			require.Equal(t, tc.ch, string(ch))
			require.Equal(t, tc.data, string(data))
		}
	}
	// The fast path and the full decoder agree on what the servers send.
	line := encodeReplies(t, false, &protocol.Reply{Push: &protocol.Push{Channel: "bench:ch7", Pub: &protocol.Publication{Data: appendStamp(nil, 5, 6, 1, 80), Offset: 3}}})
	ch, data, ok := fastJSONPub(line)
	require.True(t, ok, string(line))
	require.Equal(t, "bench:ch7", string(ch))
	require.Equal(t, string(appendStamp(nil, 5, 6, 1, 80)), string(data))
}

func TestSummaryTables(t *testing.T) {
	in := `{"kind":"conns","label":"peer","conns_requested":1000,"established":1000,"server_rss_per_conn":40960,"connect_rate":2000}
{"kind":"conns","label":"us","conns_requested":1000,"established":1000,"server_rss_per_conn":10240,"connect_rate":3000}
{"kind":"fanout","label":"peer","subscribers":100,"offered_rate":0,"deliveries_per_second":1000,"latency":{"p99_ms":4}}
{"kind":"fanout","label":"us","subscribers":100,"offered_rate":0,"deliveries_per_second":1500,"latency":{"p99_ms":2},"lost":3}
{"kind":"fanout","label":"us","subscribers":100,"offered_rate":5,"latency":{"p50_ms":1,"p99_ms":2}}
{"kind":"rpc","label":"peer","command":"publish","replies_per_second":100,"latency":{"p50_ms":1}}`
	rs, err := decodeAll[summaryResult]([]byte(in))
	require.NoError(t, err)
	var buf bytes.Buffer
	writeSummary(&buf, rs)
	out := buf.String()
	require.Contains(t, out, "| 1000 conns | 40.0 KB | 10.0 KB | 0.25 |")
	require.Contains(t, out, "| 100 subscribers | 1000 | 1500 (lost 3+0, dup 0) | 1.50 |")
	require.Contains(t, out, "100 subs × 5 msg/s = 500 deliveries/s | – | 1.00 | – |")
	require.Contains(t, out, "| publish | 100 | – | – |")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "|") {
			require.True(t, strings.HasSuffix(line, "|"), line)
		}
	}
}
