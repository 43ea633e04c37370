package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// End-to-end fault tests of the Redis engine: whole servers on a
// redis-server of the test's own, which the test stops, kills and slows.

// faultAPITimeout is the server API deadline of the fault tests' servers:
// a call during an outage must answer within it (plus scheduling margin).
const faultAPITimeout = 2 * time.Second

// withFaultNamespace adds the namespace "rs" (recovery, presence and a
// history long enough for every publication of a test) and a short server
// API deadline.
func withFaultNamespace(cfg *config.Config) {
	cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, config.Namespace{Name: "rs", NamespaceOptions: config.NamespaceOptions{
		Presence: true, HistorySize: 100000, HistoryTTL: config.Duration(5 * time.Minute), ForceRecovery: true,
		AllowSubscribeForClient: true, AllowPublishForSubscriber: true,
		AllowHistoryForSubscriber: true, AllowPresenceForSubscriber: true,
	}})
	cfg.HTTPAPI.Timeout = config.Duration(faultAPITimeout)
}

// streamClient is an official Go client subscribed to some channels that
// records every publication with its offset and every connection and
// subscription state change.
type streamClient struct {
	*centrifuge.Client
	name string

	mu          sync.Mutex
	got         map[string][]centrifuge.Publication // per channel, in arrival order
	connects    int
	disconnects []centrifuge.DisconnectedEvent
	subscribing map[uint32]int // code of every move to subscribing (0: the first Subscribe)
	subscribed  map[string][]centrifuge.SubscribedEvent
	subErrors   []string
}

func newStreamClient(t *testing.T, m *Main, name string, channels []string) *streamClient {
	t.Helper()
	c := &streamClient{
		Client: centrifuge.NewJsonClient("ws://"+m.Addr()+"/connection/websocket", centrifuge.Config{Token: token(t, name, time.Hour)}),
		name:   name, got: map[string][]centrifuge.Publication{}, subscribing: map[uint32]int{},
		subscribed: map[string][]centrifuge.SubscribedEvent{},
	}
	t.Cleanup(c.Close)
	c.OnConnected(func(centrifuge.ConnectedEvent) { c.mu.Lock(); c.connects++; c.mu.Unlock() })
	c.OnDisconnected(func(e centrifuge.DisconnectedEvent) {
		c.mu.Lock()
		c.disconnects = append(c.disconnects, e)
		c.mu.Unlock()
	})
	for _, ch := range channels {
		s, err := c.NewSubscription(ch)
		require.NoError(t, err)
		s.OnSubscribing(func(e centrifuge.SubscribingEvent) { c.mu.Lock(); c.subscribing[e.Code]++; c.mu.Unlock() })
		s.OnSubscribed(func(e centrifuge.SubscribedEvent) {
			c.mu.Lock()
			c.subscribed[ch] = append(c.subscribed[ch], e)
			c.mu.Unlock()
		})
		s.OnError(func(e centrifuge.SubscriptionErrorEvent) {
			c.mu.Lock()
			c.subErrors = append(c.subErrors, e.Error.Error())
			c.mu.Unlock()
		})
		s.OnPublication(func(e centrifuge.PublicationEvent) {
			c.mu.Lock()
			c.got[ch] = append(c.got[ch], e.Publication)
			c.mu.Unlock()
		})
		require.NoError(t, s.Subscribe())
	}
	require.NoError(t, c.Connect())
	return c
}

// numSubscribed is how many of the client's channels were subscribed at
// least once.
func (c *streamClient) numSubscribed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subscribed)
}

func (c *streamClient) publications(ch string) []centrifuge.Publication {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]centrifuge.Publication(nil), c.got[ch]...)
}

// hasOffset reports whether the client received offset on ch.
func (c *streamClient) hasOffset(ch string, offset uint64) bool {
	for _, p := range c.publications(ch) {
		if p.Offset == offset {
			return true
		}
	}
	return false
}

// apiAck is a publication the server API acknowledged.
type apiAck struct {
	n      int
	offset uint64
	epoch  string
}

// apiOutcome is the answer to one server API publish.
type apiOutcome struct {
	ack     *apiAck
	errCode int           // Centrifugo error code when the call failed
	errMsg  string        // its message
	took    time.Duration // from sending to the decoded answer
}

// apiPublish publishes {"n": n} on ch through m's server API. An error is
// a call that did not answer as Centrifugo's API does (transport error,
// hang, neither result nor error): never expected, even during a fault.
func apiPublish(m *Main, ch string, n int) (apiOutcome, error) {
	return apiPublishKey(m, ch, n, "")
}

// apiPublishKey is apiPublish with an idempotency_key (none when "").
func apiPublishKey(m *Main, ch string, n int, key string) (apiOutcome, error) {
	params := map[string]any{"channel": ch, "data": map[string]any{"n": n}}
	if key != "" {
		params["idempotency_key"] = key
	}
	start := time.Now()
	status, data, err := apiPost(m, "publish", params)
	if err != nil {
		return apiOutcome{}, fmt.Errorf("publish %s %d: %w", ch, n, err)
	}
	var out struct {
		Result *struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return apiOutcome{}, fmt.Errorf("publish %s %d: status %d, body %q: %w", ch, n, status, data, err)
	}
	o := apiOutcome{took: time.Since(start)}
	switch {
	case out.Error != nil:
		o.errCode, o.errMsg = out.Error.Code, out.Error.Message
	case out.Result != nil && out.Result.Offset > 0 && status == http.StatusOK:
		o.ack = &apiAck{n: n, offset: out.Result.Offset, epoch: out.Result.Epoch}
	default:
		return apiOutcome{}, fmt.Errorf("publish %s %d: status %d, body %s", ch, n, status, data)
	}
	return o, nil
}

// apiResult calls a server API method and returns its result object; an
// error answer is an error. It is safe in any goroutine.
func apiResult(m *Main, method string, params any) (map[string]any, error) {
	status, data, err := apiPost(m, method, params)
	if err != nil {
		return nil, err
	}
	var out struct {
		Result map[string]any `json:"result"`
		Error  map[string]any `json:"error"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: status %d, body %q: %w", method, status, data, err)
	}
	if out.Error != nil || out.Result == nil {
		return nil, fmt.Errorf("%s: status %d, error %v", method, status, out.Error)
	}
	return out.Result, nil
}

// apiPost posts params to m's server API method and returns the status
// and body. Unlike apiCall it uses no require, so it is safe in any
// goroutine; its client timeout, far above the server's deadline, makes
// a call that hangs an error.
func apiPost(m *Main, method string, params any) (int, []byte, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, m.URL()+"/api/"+method, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := (&http.Client{Timeout: 10 * faultAPITimeout}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// publishLoad publishes on each channel, one publication after the other
// (so the API's order is the channel's order), alternating the nodes, until
// stopped. Every outcome is recorded.
type publishLoad struct {
	stopc chan struct{}
	wg    sync.WaitGroup

	mu          sync.Mutex
	acked       map[string][]apiAck
	failed      int
	failCodes   map[int]int
	failMsgs    map[string]int
	slowestFail time.Duration
	retries     int     // failed calls sent again with their idempotency key
	broken      []error // answers unlike Centrifugo's: the test fails
}

// startPublishLoad starts the load, stopped at the latest by the test's
// end. On the channels named in retried, a failed publication is sent again
// with the same idempotency_key until it is acknowledged, as an
// application that must not lose one would.
func startPublishLoad(t *testing.T, nodes []*Main, channels []string, retried ...string) *publishLoad {
	t.Helper()
	l := &publishLoad{stopc: make(chan struct{}), acked: map[string][]apiAck{}, failCodes: map[int]int{}, failMsgs: map[string]int{}}
	for i, ch := range channels {
		retry := slices.Contains(retried, ch)
		l.wg.Add(1)
		go func() { // owned by l: ends at stop
			defer l.wg.Done()
			tick := time.NewTicker(5 * time.Millisecond) // pacing of the load
			defer tick.Stop()
			for n, call := 1, 0; ; n, call = n+1, call+1 {
				select {
				case <-l.stopc:
					return
				case <-tick.C:
				}
				key := ""
				if retry {
					key = fmt.Sprintf("%s.%d", ch, n)
				}
				o, err := apiPublishKey(nodes[(i+call)%len(nodes)], ch, n, key)
				l.mu.Lock()
				if err == nil && o.ack == nil && retry {
					n-- // the same publication again
					l.retries++
				}
				switch {
				case err != nil:
					l.broken = append(l.broken, err)
				case o.ack != nil:
					l.acked[ch] = append(l.acked[ch], *o.ack)
				default:
					l.failed++
					l.failCodes[o.errCode]++
					l.failMsgs[o.errMsg]++
					l.slowestFail = max(l.slowestFail, o.took)
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for its last calls; it is idempotent.
func (l *publishLoad) stop() {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
}

// minAcked is the smallest number of acknowledged publications of a channel.
func (l *publishLoad) minAcked(channels []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	least := -1
	for _, ch := range channels {
		if n := len(l.acked[ch]); least < 0 || n < least {
			least = n
		}
	}
	return least
}

func (l *publishLoad) numFailed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// waitAcked waits until every channel has more acknowledged publications
// than it had, by at least n.
func (l *publishLoad) waitAcked(t *testing.T, channels []string, n int, what string) {
	t.Helper()
	target := l.minAcked(channels) + n
	require.Eventually(t, func() bool { return l.minAcked(channels) >= target }, testenv.Wait, testenv.Tick, what)
}

// checkStreams asserts that each client received each channel's stream as
// the API numbered it: offsets 1, 2, 3… with none missing, none twice,
// none out of order, and every acknowledged publication with its data.
// It returns how many publications were delivered although their API call
// failed (executed by Redis, answer lost).
func checkStreams(t *testing.T, clients []*streamClient, channels []string, acked map[string][]apiAck) (unacked int) {
	t.Helper()
	for _, c := range clients {
		for _, ch := range channels {
			pubs := c.publications(ch)
			for i, p := range pubs {
				if p.Offset != uint64(i+1) {
					t.Fatalf("%s on %s: publication %d has offset %d (lost, duplicated or reordered): offsets %v", c.name, ch, i, p.Offset, offsets(pubs))
				}
			}
			for _, a := range acked[ch] {
				require.Greater(t, len(pubs), int(a.offset)-1, "%s on %s: acknowledged offset %d lost", c.name, ch, a.offset)
				require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, a.n), string(pubs[a.offset-1].Data), "%s on %s: offset %d", c.name, ch, a.offset)
			}
			unacked += len(pubs) - len(acked[ch])
		}
	}
	return unacked
}

func offsets(pubs []centrifuge.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

// faultRedisPersistent starts a redis-server that loses no acknowledged
// write, even to SIGKILL: append-only file, fsync before every reply.
func faultRedisPersistent(t *testing.T) *testenv.RedisServer {
	t.Helper()
	return testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", t.TempDir())
}

// Redis restarted under load, twice (SIGTERM, then SIGKILL), with
// persistence: subscribers on two nodes keep their WebSocket connections
// and end up with every publication the API acknowledged exactly once, in
// order; publications lost on PUB/SUB while it reconnected are repaired by
// the client's resubscription with recovery (2500 insufficient state). The
// API calls during the outage fail fast with a Centrifugo error; on one
// channel they are retried with an idempotency key, and there every
// publication is acknowledged and delivered exactly once.
func TestFaultRedisRestartUnderLoad(t *testing.T) {
	srv := faultRedisPersistent(t)
	node := redisNodesAt(t, srv.URL())
	a, b := node(withFaultNamespace), node(withFaultNamespace)
	// rs:retried retries failed publications with an idempotency key.
	const retried = "rs:retried"
	channels := []string{"rs:0", "rs:1", retried}
	var clients []*streamClient
	for i, m := range []*Main{a, b, a, b} {
		clients = append(clients, newStreamClient(t, m, fmt.Sprintf("c%d", i), channels))
	}
	for _, c := range clients {
		require.Eventually(t, func() bool { return c.numSubscribed() == len(channels) }, testenv.Wait, testenv.Tick, "%s subscribed", c.name)
	}

	load := startPublishLoad(t, []*Main{a, b}, channels, retried)
	load.waitAcked(t, channels, 150, "publications before the restart")
	for _, restart := range []struct {
		name string
		stop func()
	}{{"SIGTERM", srv.Stop}, {"SIGKILL", srv.Kill}} {
		restart.stop()
		failed := load.numFailed()
		// The outage lasts until 150 more calls failed: long enough for
		// the PUB/SUB connections' reconnect pause to grow.
		require.Eventually(t, func() bool { return load.numFailed() >= failed+150 }, testenv.Wait, testenv.Tick, "API calls fail while Redis is down (%s)", restart.name)
		srv.Start()
		load.waitAcked(t, channels, 150, "publications after the restart ("+restart.name+")")
	}
	load.stop()

	load.mu.Lock()
	acked, failed, codes, msgs, slowest, broken, retries := load.acked, load.failed, load.failCodes, load.failMsgs, load.slowestFail, load.broken, load.retries
	load.mu.Unlock()
	require.Empty(t, broken, "every API call answers as Centrifugo's API does, outage or not")
	require.Less(t, slowest, faultAPITimeout+time.Second, "failed API calls fail within the API deadline")
	for code := range codes {
		require.Contains(t, []int{100, 108}, code, "failures are Centrifugo errors 100/108: %v %v", codes, msgs)
	}
	total := 0
	for _, ch := range channels {
		total += len(acked[ch])
		for _, ack := range acked[ch] {
			require.Equal(t, acked[ch][0].epoch, ack.epoch, "persisted: one epoch across both restarts")
		}
	}

	// Everything acknowledged reaches everyone (delivered or recovered).
	for _, c := range clients {
		for _, ch := range channels {
			top := acked[ch][len(acked[ch])-1].offset
			require.Eventually(t, func() bool { return c.hasOffset(ch, top) }, testenv.Wait, testenv.Tick, "%s gets %s up to offset %d", c.name, ch, top)
		}
	}
	unacked := checkStreams(t, clients, channels, acked)
	// With retries every publication is acknowledged once and delivered
	// once, even those Redis ran before it went down without answering.
	for i, ack := range acked[retried] {
		require.Equal(t, i+1, ack.n, "%s: publication %d acknowledged once, in order", retried, ack.n)
	}
	for _, c := range clients {
		require.Len(t, c.publications(retried), len(acked[retried]), "%s on %s: nothing but the acknowledged, once each", c.name, retried)
	}

	// The control plane and presence are back too: both nodes in info,
	// every client in the presence of every channel.
	start := time.Now()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		res, err := apiResult(b, "info", map[string]any{})
		require.NoError(c, err)
		assert.Len(c, res["nodes"], 2, "info %v", res)
		for _, ch := range channels {
			res, err := apiResult(a, "presence_stats", map[string]any{"channel": ch})
			require.NoError(c, err)
			assert.Equal(c, float64(len(clients)), res["num_clients"], "presence of %s: %v", ch, res)
		}
	}, testenv.Wait, 20*time.Millisecond, "info and presence after the restarts")
	t.Logf("info and presence complete %s after the load", time.Since(start).Round(time.Millisecond))

	resubscribes, recovered := 0, 0
	for _, c := range clients {
		c.mu.Lock()
		require.Equal(t, 1, c.connects, "%s kept its WebSocket connection (disconnects %v)", c.name, c.disconnects)
		require.Empty(t, c.disconnects, c.name)
		resubscribes += c.subscribing[2500]
		for code, n := range c.subscribing {
			require.Contains(t, []uint32{0, 2500}, code, "%s: moves to subscribing only at start and for insufficient state (%d×%d)", c.name, n, code)
		}
		for _, evs := range c.subscribed {
			for _, ev := range evs[1:] {
				require.True(t, ev.WasRecovering && ev.Recovered, "%s: every resubscription recovers: %+v", c.name, ev)
				recovered++
			}
		}
		c.mu.Unlock()
	}
	codeList := make([]string, 0, len(codes))
	for code, n := range codes {
		codeList = append(codeList, fmt.Sprintf("%d×%d", n, code))
	}
	sort.Strings(codeList)
	t.Logf("acknowledged %d, failed %d (%s, slowest %s; %v), of which retried with the key %d; delivered although unacknowledged %d; "+
		"resubscriptions after 2500 %d, recovered %d; lost 0, duplicated 0, reordered 0",
		total, failed, strings.Join(codeList, ", "), slowest.Round(time.Millisecond), msgs, retries, unacked, resubscribes, recovered)
}

// Redis restarted WITHOUT persistence loses the streams: the channel gets
// a new epoch, and what was published before cannot be recovered. The
// subscribers keep their connections; the position check after the
// PUB/SUB reconnect sees the new epoch and unsubscribes them with 2500,
// they resubscribe with recovery and are told recovered=false, then follow
// the new stream from its position.
func TestFaultRedisRestartWithoutPersistence(t *testing.T) {
	testRedisDataLost(t, func(srv *testenv.RedisServer) { srv.Kill(); srv.Start() })
}

// Redis loses its data while the PUB/SUB connections stay (FLUSHALL here;
// a proxy in front of a restarted Redis looks the same): no reconnect
// triggers a position check, but the first publication of the new epoch
// does, so the subscribers are told recovered=false at once instead of
// dropping the new stream's first offsets as duplicates until the next
// periodic check (40s).
func TestFaultRedisDataLostWithoutReconnect(t *testing.T) {
	testRedisDataLost(t, func(srv *testenv.RedisServer) {
		reply, err := srv.Command("FLUSHALL")
		require.NoError(t, err)
		require.Equal(t, "+OK", reply)
	})
}

func testRedisDataLost(t *testing.T, lose func(*testenv.RedisServer)) {
	srv := testenv.StartRedis(t)
	node := redisNodesAt(t, srv.URL())
	a, b := node(withFaultNamespace), node(withFaultNamespace)
	const ch = "rs:volatile"
	clients := []*streamClient{newStreamClient(t, a, "c0", []string{ch}), newStreamClient(t, b, "c1", []string{ch})}
	for _, c := range clients {
		require.Eventually(t, func() bool { return c.numSubscribed() == 1 }, testenv.Wait, testenv.Tick, "%s subscribed", c.name)
	}
	publish := func(m *Main, n int) apiAck {
		t.Helper()
		var ack apiAck
		require.EventuallyWithT(t, func(c *assert.CollectT) { // the first calls after the restart may fail
			o, err := apiPublish(m, ch, n)
			require.NoError(c, err)
			require.NotNil(c, o.ack, "publish %d: %d %s", n, o.errCode, o.errMsg)
			ack = *o.ack
		}, testenv.Wait, 20*time.Millisecond, "publish %d", n)
		return ack
	}
	first := publish(a, 1)
	publish(b, 2)
	for _, c := range clients {
		require.Eventually(t, func() bool { return c.hasOffset(ch, 2) }, testenv.Wait, testenv.Tick, "%s before the restart", c.name)
	}

	lose(srv)
	// The clients resubscribe into the new epoch; publications meanwhile
	// (the loop) may be missed, which recovered=false tells them.
	var epoch string
	n := 2
	require.Eventually(t, func() bool {
		n++
		o, err := apiPublish(b, ch, n)
		if err != nil || o.ack == nil {
			return false
		}
		epoch = o.ack.epoch
		for _, c := range clients {
			c.mu.Lock()
			evs := c.subscribed[ch]
			last := evs[len(evs)-1]
			c.mu.Unlock()
			if len(evs) < 2 || last.StreamPosition == nil || last.StreamPosition.Epoch != epoch {
				return false
			}
		}
		return true
	}, testenv.Wait, 20*time.Millisecond, "clients resubscribe into the new epoch")
	require.NotEqual(t, first.epoch, epoch, "the restart without persistence lost the stream: a new epoch")
	final := publish(a, 10000)
	require.Equal(t, epoch, final.epoch)
	for _, c := range clients {
		// Offsets restart with the epoch, so an old-epoch offset can equal
		// final.offset: wait for the final publication itself.
		require.Eventually(t, func() bool {
			pubs := c.publications(ch)
			return len(pubs) > 0 && string(pubs[len(pubs)-1].Data) == `{"n":10000}`
		}, testenv.Wait, testenv.Tick, "%s follows the new stream", c.name)
		c.mu.Lock()
		require.Equal(t, 1, c.connects, "%s kept its WebSocket connection", c.name)
		require.Empty(t, c.disconnects, c.name)
		require.Positive(t, c.subscribing[2500], "%s: insufficient state on the new epoch", c.name)
		evs := c.subscribed[ch]
		last := evs[len(evs)-1]
		require.True(t, last.WasRecovering, "%s", c.name)
		require.False(t, last.Recovered, "%s: a new epoch cannot be recovered", c.name)
		c.mu.Unlock()
		pubs := c.publications(ch)
		require.JSONEq(t, `{"n":10000}`, string(pubs[len(pubs)-1].Data), c.name)
	}
}

// timed is the outcome of one call made while Redis was slow.
type timed struct {
	err  error
	took time.Duration
}

func timeCall(f func() error) timed {
	start := time.Now()
	err := f()
	return timed{err: err, took: time.Since(start)}
}

// Redis slower than the command deadline (frozen by DEBUG SLEEP): server
// API and client commands that need it fail within their deadline with
// Centrifugo's error 100 (a new channel's subscribe with 108) and a log
// line; connections keep serving commands
// that need no Redis; /health answers 503 naming Redis; once Redis answers
// again everything works without a restart and no acknowledged
// publication is lost to the subscriber.
func TestFaultRedisSlowerThanDeadline(t *testing.T) {
	const (
		commandTimeout = time.Second
		freeze         = 5 * time.Second
		// margin absorbs a loaded machine's scheduling.
		margin = time.Second
		ch     = "rs:slow"
	)
	srv := testenv.StartRedis(t, "--enable-debug-command", "local")
	logs := &testenv.Buffer{}
	cfg := testConfig()
	cfg.Engine.Type = config.BrokerRedis
	cfg.Engine.Redis.Address = srv.URL()
	cfg.Engine.Redis.Prefix = fmt.Sprintf("sbtest.slow.%d", time.Now().UnixNano())
	cfg.Client.CommandTimeout = config.Duration(commandTimeout)
	withFaultNamespace(&cfg)
	m := startMain(t, &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	sub := newStreamClient(t, m, "sub", []string{ch})
	other := newStreamClient(t, m, "other", nil)
	require.Eventually(t, func() bool { return sub.numSubscribed() == 1 }, testenv.Wait, testenv.Tick, "subscribed")
	require.Eventually(t, func() bool { other.mu.Lock(); defer other.mu.Unlock(); return other.connects == 1 }, testenv.Wait, testenv.Tick, "other connected")
	var acked []apiAck
	ack := func(n int) {
		t.Helper()
		o, err := apiPublish(m, ch, n)
		require.NoError(t, err)
		require.NotNil(t, o.ack, "publish %d: %d %s", n, o.errCode, o.errMsg)
		acked = append(acked, *o.ack)
	}
	ack(1)
	ctx := context.Background()
	// A subscription to a channel no one on this node has: its PUB/SUB
	// SUBSCRIBE runs while Redis is frozen.
	late, err := other.NewSubscription("rs:late")
	require.NoError(t, err)
	lateErr := make(chan error, 16)
	late.OnError(func(e centrifuge.SubscriptionErrorEvent) {
		select {
		case lateErr <- e.Error:
		default:
		}
	})
	lateSubscribed := make(chan struct{}, 16)
	late.OnSubscribed(func(centrifuge.SubscribedEvent) { lateSubscribed <- struct{}{} })

	awake := srv.Freeze(freeze)
	frozeAt := time.Now()
	var wg sync.WaitGroup
	var apiOut apiOutcome
	var apiErr error
	var health timed
	var healthStatus int
	var healthBody string
	client := map[string]timed{}
	wg.Add(3)
	go func() { // the server API
		defer wg.Done()
		apiOut, apiErr = apiPublishKey(m, ch, 2, "slow-2")
	}()
	go func() { // the subscriber's commands one after the other, then one that needs no Redis
		defer wg.Done()
		for _, c := range []struct {
			name string
			f    func() error
		}{
			{"publish", func() error { _, err := sub.Publish(ctx, ch, []byte(`{"n":-1}`)); return err }},
			{"history", func() error { _, err := sub.History(ctx, ch, centrifuge.WithHistoryLimit(10)); return err }},
			{"presence", func() error { _, err := sub.Presence(ctx, ch); return err }},
			{"rpc", func() error { _, err := sub.RPC(ctx, "no-such-method", []byte(`{}`)); return err }},
		} {
			client[c.name] = timeCall(c.f)
		}
	}()
	go func() { // another connection, and /health
		defer wg.Done()
		client["other rpc"] = timeCall(func() error { _, err := other.RPC(ctx, "no-such-method", []byte(`{}`)); return err })
		client["subscribe"] = timeCall(func() error {
			if err := late.Subscribe(); err != nil {
				return err
			}
			select {
			case err := <-lateErr:
				return err
			case <-lateSubscribed:
				return nil
			case <-time.After(2 * freeze):
				return errors.New("no subscribe answer")
			}
		})
		health = timeCall(func() error {
			resp, err := http.Get(m.URL() + "/health")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			healthStatus, healthBody = resp.StatusCode, string(b)
			return err
		})
	}()
	wg.Wait()
	require.Less(t, time.Since(frozeAt), freeze, "the calls above ran while Redis was frozen")

	require.NoError(t, apiErr)
	require.Nil(t, apiOut.ack, "no acknowledgement from a frozen Redis")
	require.Equal(t, 100, apiOut.errCode, "server API: %s", apiOut.errMsg)
	require.Less(t, apiOut.took, faultAPITimeout+margin, "server API publish fails within its deadline")
	for _, name := range []string{"publish", "history", "presence"} {
		var e *centrifuge.Error
		require.ErrorAs(t, client[name].err, &e, name)
		require.Equal(t, uint32(100), e.Code, "%s: %v", name, e)
		require.True(t, e.Temporary, name)
		require.Less(t, client[name].took, commandTimeout+margin, "client %s fails within the command deadline", name)
	}
	// A new channel's subscribe waits for Redis's SUBSCRIBE no longer than
	// the command deadline either, and is a temporary 108 (retried).
	var se *centrifuge.Error
	require.ErrorAs(t, client["subscribe"].err, &se)
	require.Equal(t, uint32(108), se.Code, "%v", se)
	require.True(t, se.Temporary)
	require.Less(t, client["subscribe"].took, commandTimeout+margin, "subscribe fails within the command deadline")
	for _, name := range []string{"rpc", "other rpc"} {
		require.ErrorContains(t, client[name].err, "method not found", "%s answers without Redis", name)
		require.Less(t, client[name].took, margin, "%s is not held up by the slow Redis", name)
	}
	require.NoError(t, health.err)
	require.Equal(t, http.StatusServiceUnavailable, healthStatus, healthBody)
	require.Contains(t, healthBody, "redis")
	require.Less(t, health.took, 2*margin, "/health answers while Redis is slow")
	require.Contains(t, logs.String(), "command timed out (is the broker slow?)")
	require.Contains(t, logs.String(), `api method failed`)

	// Redis answers again: everything works, without a restart.
	require.NoError(t, receive(t, awake, "Redis awake"))
	require.Eventually(t, func() bool {
		resp, err := http.Get(m.URL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, testenv.Wait, testenv.Tick, "healthy once Redis answers")
	// The failed API publish is retried with its idempotency key: whether
	// or not Redis ran the first attempt late, {"n":2} is published once.
	retry, err := apiPublishKey(m, ch, 2, "slow-2")
	require.NoError(t, err)
	require.NotNil(t, retry.ack, "retry: %d %s", retry.errCode, retry.errMsg)
	acked = append(acked, *retry.ack)
	ack(3)
	_, err = sub.Publish(ctx, ch, []byte(`{"n":4}`))
	require.NoError(t, err)
	hist, err := sub.History(ctx, ch, centrifuge.WithHistoryLimit(-1))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(hist.Publications), 3)
	_, err = sub.Presence(ctx, ch)
	require.NoError(t, err)
	ack(5)
	receive(t, lateSubscribed, "the retried subscription succeeds once Redis answers")
	top := acked[len(acked)-1].offset
	require.Eventually(t, func() bool { return sub.hasOffset(ch, top) }, testenv.Wait, testenv.Tick, "the subscriber follows the stream again")
	// Besides the client's publish of {"n":4}, calls that timed out may
	// have waited in Redis and run when it woke (so a failed publish has an
	// unknown outcome: retry with an idempotency key).
	unacked := checkStreams(t, []*streamClient{sub}, []string{ch}, map[string][]apiAck{ch: acked})
	twos := 0
	for _, p := range sub.publications(ch) {
		if string(p.Data) == `{"n":2}` {
			twos++
		}
	}
	require.Equal(t, 1, twos, "the idempotent retry published once")
	t.Logf("delivered without an API acknowledgement: %d (the client publish and timed-out calls Redis ran late)", unacked)
	for _, c := range []*streamClient{sub, other} {
		c.mu.Lock()
		require.Equal(t, 1, c.connects, "%s kept its connection (disconnects %v)", c.name, c.disconnects)
		c.mu.Unlock()
	}
}

// The last publication before a quiet period is lost on PUB/SUB (Redis
// dropped the PUB/SUB connections; the publication went through while they
// reconnected) and no later offset reveals the gap: the position check
// right after the resubscribe finds the subscriber behind the stream top,
// unsubscribes it with 2500, and the client recovers the publication.
func TestFaultPubSubLostLastPublication(t *testing.T) {
	srv := testenv.StartRedis(t)
	node := redisNodesAt(t, srv.URL())
	a := node(withFaultNamespace)
	const ch = "rs:last"
	c := newStreamClient(t, a, "c", []string{ch})
	require.Eventually(t, func() bool { return c.numSubscribed() == 1 }, testenv.Wait, testenv.Tick, "subscribed")
	o, err := apiPublish(a, ch, 1)
	require.NoError(t, err)
	require.NotNil(t, o.ack)
	require.Eventually(t, func() bool { return c.hasOffset(ch, 1) }, testenv.Wait, testenv.Tick, "first publication")

	reply, err := srv.Command("CLIENT", "KILL", "TYPE", "pubsub")
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(reply, "-"), reply)
	o, err = apiPublish(a, ch, 2) // the PUB/SUB connections wait 250ms before redialling
	require.NoError(t, err)
	require.NotNil(t, o.ack, "publish: %d %s", o.errCode, o.errMsg)

	require.Eventually(t, func() bool { return c.hasOffset(ch, 2) }, testenv.Wait, testenv.Tick, "the lost last publication is recovered")
	checkStreams(t, []*streamClient{c}, []string{ch}, map[string][]apiAck{ch: {{n: 1, offset: 1}, *o.ack}})
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, 1, c.connects, "the WebSocket connection stays")
	t.Logf("resubscriptions after 2500: %d (0: the PUB/SUB connection was back before the publication)", c.subscribing[2500])
}
