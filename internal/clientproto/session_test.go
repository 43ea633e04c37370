package clientproto

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

const secret = "secret"

type fakeTransport struct {
	mu      sync.Mutex
	writes  [][]byte
	closed  *hub.Disconnect
	block   chan struct{} // when set, Write blocks until closed
	blocked chan struct{} // receives when a Write starts blocking
	session *Session
	done    chan struct{}
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{done: make(chan struct{}), blocked: make(chan struct{}, 16)}
}

func (f *fakeTransport) Write(data []byte) error {
	if f.block != nil {
		select {
		case f.blocked <- struct{}{}:
		default:
		}
		<-f.block
	}
	f.mu.Lock()
	f.writes = append(f.writes, append([]byte(nil), data...))
	f.mu.Unlock()
	return nil
}

func (f *fakeTransport) Close(d hub.Disconnect) {
	f.mu.Lock()
	first := f.closed == nil
	if first {
		f.closed = &d
	}
	f.mu.Unlock()
	if first {
		// Like a real transport: the read loop ends and reports it.
		go func() {
			f.session.Closed()
			close(f.done)
		}()
	}
}

func (f *fakeTransport) disconnect() *hub.Disconnect {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// messages splits the JSON writes into protocol messages.
func (f *fakeTransport) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, w := range f.writes {
		out = append(out, strings.Split(string(w), "\n")...)
	}
	return out
}

type harness struct {
	t     *testing.T
	hub   *hub.Hub
	srv   *Server
	clock *clocktest.Fake // drives the hub, the broker's history and the sessions' timers
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	// Tokens are checked against the wall clock: start the fake there.
	clk := clocktest.New(time.Now())
	h, err := hub.New(hub.Config{Broker: memory.New(clk.Now), Presence: memory.NewPresence(), Clock: clk,
		Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{
			"chat": {AllowSubscribeForClient: true, AllowPublishForSubscriber: true, AllowHistoryForSubscriber: true, HistorySize: 1000, HistoryTTL: time.Minute, ForceRecovery: true},
		}}})
	require.NoError(t, err)
	cfg := Config{Hub: h, Tokens: auth.NewTokenVerifier(secret, "", "")}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
		srv.Close()
	})
	return &harness{t: t, hub: h, srv: srv, clock: clk}
}

func (h *harness) session(format int) (*Session, *fakeTransport) {
	ft := newFakeTransport()
	s := h.srv.NewSession(ft, format)
	ft.session = s
	h.t.Cleanup(func() {
		s.Disconnect(hub.DisconnectConnectionClosed)
		select {
		case <-ft.done:
		case <-time.After(5 * time.Second):
			h.t.Error("session did not close")
		}
	})
	return s, ft
}

func tok(t testing.TB, user string) string {
	s, err := auth.SignConnect(secret, user, time.Hour, time.Now())
	require.NoError(t, err)
	return s
}

func connected(ft *fakeTransport) func() bool { return hasMessage(ft, `"id":1,"connect"`) }

func hasMessage(ft *fakeTransport, substr string) func() bool {
	return func() bool {
		for _, m := range ft.messages() {
			if strings.Contains(m, substr) {
				return true
			}
		}
		return false
	}
}

func TestConnectSubscribePublishJSON(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:a"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe":{"recoverable":true`), testenv.Wait, testenv.Tick, "subscribe reply")
	require.Contains(t, ft.messages()[0], `"id":1,"connect":{"client":`)
	require.Contains(t, ft.messages()[0], `"ping":25,"pong":true`)

	s.HandleMessage([]byte(`{"id":3,"publish":{"channel":"chat:a","data":{"x":1}}}`))
	require.Eventually(t, hasMessage(ft, `{"push":{"channel":"chat:a","pub":{"data":{"x":1},"info":{"user":"u1"`), testenv.Wait, testenv.Tick, "own publication")
	require.Eventually(t, hasMessage(ft, `{"id":3,"publish":{}}`), testenv.Wait, testenv.Tick, "publish reply")

	for _, tc := range []struct{ cmd, want string }{
		{`{"id":4,"subscribe":{"channel":"chat:a"}}`, `{"id":4,"error":{"code":105,"message":"already subscribed"}}`},
		{`{"id":5,"subscribe":{"channel":"nope:a"}}`, `{"id":5,"error":{"code":102,"message":"unknown channel"}}`},
		{`{"id":6,"publish":{"channel":"chat:b","data":{}}}`, `{"id":6,"error":{"code":103,"message":"permission denied"}}`},
		{`{"id":7,"rpc":{"method":"m","data":{}}}`, `{"id":7,"error":{"code":104,"message":"method not found"}}`},
		{`{"id":8,"presence":{"channel":"chat:a"}}`, `{"id":8,"error":{"code":108,"message":"not available"}}`},
		{`{"id":9,"history":{"channel":"chat:a","limit":5}}`, `{"id":9,"history":{"publications":[{"data":{"x":1}`},
		{`{"id":10,"history":{"channel":"chat:a","since":{"offset":0,"epoch":"wrong"}}}`, `{"id":10,"error":{"code":112`},
		{`{"id":11,"unsubscribe":{"channel":"chat:a"}}`, `{"id":11,"unsubscribe":{}}`},
		{`{"id":12,"ping":{}}`, `{"id":12,"ping":{}}`},
	} {
		s.HandleMessage([]byte(tc.cmd))
		require.Eventually(t, hasMessage(ft, tc.want), testenv.Wait, testenv.Tick, tc.want)
	}
	require.Nil(t, ft.disconnect())
}

func TestProtobufConnect(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatProtobuf)
	cmd := &protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: tok(t, "u1")}}
	b, err := cmd.MarshalVT()
	require.NoError(t, err)
	frame := binary.AppendUvarint(nil, uint64(len(b)))
	s.HandleMessage(append(frame, b...))
	require.Eventually(t, func() bool { ft.mu.Lock(); defer ft.mu.Unlock(); return len(ft.writes) == 1 }, testenv.Wait, testenv.Tick, "connect reply")
	ft.mu.Lock()
	w := ft.writes[0]
	ft.mu.Unlock()
	l, n := binary.Uvarint(w)
	require.Equal(t, len(w)-n, int(l))
	var rep protocol.Reply
	require.NoError(t, rep.UnmarshalVT(w[n:]))
	require.Equal(t, uint32(1), rep.Id)
	require.NotEmpty(t, rep.Connect.Client)
}

func TestCommandBeforeConnectIsBadRequest(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"subscribe":{"channel":"chat:a"}}`))
	require.Eventually(t, func() bool { return ft.disconnect() != nil }, testenv.Wait, testenv.Tick, "disconnect")
	require.Equal(t, hub.DisconnectBadRequest, *ft.disconnect())
}

func TestMalformedAndInvalidToken(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		in   string
		want hub.Disconnect
	}{
		{`{"id":1,"connect":`, hub.DisconnectBadRequest},
		{`{"id":1,"connect":{"token":"garbage"}}`, hub.DisconnectInvalidToken},
		{`{"id":1}`, hub.DisconnectBadRequest},
	} {
		s, ft := h.session(FormatJSON)
		s.HandleMessage([]byte(tc.in))
		require.Eventually(t, func() bool { return ft.disconnect() != nil }, testenv.Wait, testenv.Tick, tc.in)
		require.Equal(t, tc.want, *ft.disconnect(), tc.in)
	}
}

func TestAnonymousNeedsPermission(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{}}`))
	require.Eventually(t, hasMessage(ft, `{"id":1,"error":{"code":101,"message":"unauthorized"}}`), testenv.Wait, testenv.Tick, "unauthorized")
}

func disconnected(ft *fakeTransport) func() bool {
	return func() bool { return ft.disconnect() != nil }
}

func TestStaleConnectionClosed(t *testing.T) {
	h := newHarness(t, nil)
	_, ft := h.session(FormatJSON)
	h.clock.Advance(DefaultStaleCloseDelay - time.Millisecond)
	require.Nil(t, ft.disconnect(), "not before the stale delay")
	h.clock.Advance(time.Millisecond)
	require.Eventually(t, disconnected(ft), testenv.Wait, testenv.Tick, "stale disconnect")
	require.Equal(t, hub.DisconnectStale, *ft.disconnect())
}

func pings(ft *fakeTransport) int {
	n := 0
	for _, m := range ft.messages() {
		if m == "{}" {
			n++
		}
	}
	return n
}

func TestNoPongDisconnects(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connect")
	h.clock.Advance(DefaultPingInterval - time.Millisecond)
	require.Zero(t, pings(ft), "no ping before the interval")
	h.clock.Advance(time.Millisecond)
	require.Eventually(t, func() bool { return pings(ft) == 1 }, testenv.Wait, testenv.Tick, "ping")
	h.clock.Advance(DefaultPongTimeout - time.Millisecond)
	require.Nil(t, ft.disconnect(), "not before the pong timeout")
	h.clock.Advance(time.Millisecond)
	require.Eventually(t, disconnected(ft), testenv.Wait, testenv.Tick, "no pong disconnect")
	require.Equal(t, hub.DisconnectNoPong, *ft.disconnect())
}

func TestPongKeepsConnection(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connect")
	for i := 1; i <= 5; i++ {
		h.clock.Advance(DefaultPingInterval - DefaultPongTimeout)
		if i == 1 {
			h.clock.Advance(DefaultPongTimeout) // the first ping comes one interval after connect
		}
		require.Eventually(t, func() bool { return pings(ft) == i }, testenv.Wait, testenv.Tick, "ping")
		s.HandleMessage([]byte(`{}`))
		h.clock.Advance(DefaultPongTimeout) // the pong check passes
	}
	require.Nil(t, ft.disconnect())
}

func TestSlowConsumerDisconnected(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.QueueMaxSize = 4096 })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:slow"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2`), testenv.Wait, testenv.Tick, "subscribed")
	ft.block = make(chan struct{}) // the peer stops reading
	defer close(ft.block)
	payload, _ := json.Marshal(map[string]string{"p": strings.Repeat("x", 500)})
	for i := 0; i < 50 && ft.disconnect() == nil; i++ {
		_, err := h.hub.Publish(context.Background(), "chat:slow", payload, nil, nil)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return ft.disconnect() != nil }, testenv.Wait, testenv.Tick, "slow disconnect")
	require.Equal(t, hub.DisconnectSlow, *ft.disconnect())
}

func TestChannelLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ChannelLimit = 1 })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:a"}}` + "\n" + `{"id":3,"subscribe":{"channel":"chat:b"}}`))
	require.Eventually(t, hasMessage(ft, `{"id":3,"error":{"code":106,"message":"limit exceeded"}}`), testenv.Wait, testenv.Tick, "limit")
}

func TestCommandRateLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CommandRateLimit = 2 })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	for i := 2; i < 8; i++ {
		s.HandleMessage([]byte(`{"id":` + string(rune('0'+i)) + `,"ping":{}}`))
	}
	require.Eventually(t, hasMessage(ft, `"code":111`), testenv.Wait, testenv.Tick, "rate limited")
}

func TestRecoveryHoldsConcurrentPublications(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := h.hub.Publish(ctx, "chat:r", []byte(`{"n":0}`), nil, nil)
		require.NoError(t, err)
	}
	hr, err := h.hub.History(ctx, "chat:r", hub.HistoryOptions{})
	require.NoError(t, err)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ { // below the recovery cap of 300
			select {
			case <-stop:
				return
			default:
				_, _ = h.hub.Publish(ctx, "chat:r", []byte(`{"n":1}`), nil, nil)
			}
		}
	}()
	s.HandleMessage([]byte(`{"id":2,"subscribe":{"channel":"chat:r","recover":true,"offset":1,"epoch":"` + hr.Position.Epoch + `"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2`), testenv.Wait, testenv.Tick, "subscribe reply")
	close(stop)
	wg.Wait()
	// Offsets must arrive strictly increasing by one: reply publications
	// first, then live ones, no gap and no duplicate.
	var offsets []uint64
	for _, m := range ft.messages() {
		var r protocol.Reply
		require.NoError(t, json.Unmarshal([]byte(m), &r))
		if r.Subscribe != nil {
			require.True(t, r.Subscribe.Recovered)
			for _, p := range r.Subscribe.Publications {
				offsets = append(offsets, p.Offset)
			}
		}
		if r.Push != nil && r.Push.Pub != nil {
			offsets = append(offsets, r.Push.Pub.Offset)
		}
	}
	require.NotEmpty(t, offsets)
	require.Equal(t, uint64(2), offsets[0])
	for i := 1; i < len(offsets); i++ {
		require.Equal(t, offsets[i-1]+1, offsets[i], "offsets %v", offsets)
	}
}

func TestCoalescedWrites(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:c"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2`), testenv.Wait, testenv.Tick, "subscribed")
	ft.mu.Lock()
	before := len(ft.writes)
	ft.mu.Unlock()
	ft.block = make(chan struct{})
	for i := 0; i < 20; i++ {
		_, err := h.hub.Publish(context.Background(), "chat:c", []byte(`{}`), nil, nil)
		require.NoError(t, err)
	}
	close(ft.block)
	require.Eventually(t, func() bool { return len(ft.messages()) >= 22 }, testenv.Wait, testenv.Tick, "all delivered")
	ft.mu.Lock()
	frames := len(ft.writes) - before
	ft.mu.Unlock()
	require.Less(t, frames, 20, "queued messages share frames")
}

// FuzzHandleJSON feeds arbitrary JSON command frames to a connected
// session: it must never panic and must either answer or disconnect.
func FuzzHandleJSON(f *testing.F) {
	f.Add([]byte(`{"id":2,"subscribe":{"channel":"chat:a","recover":true,"offset":3,"epoch":"x"}}`))
	f.Add([]byte(`{"id":3,"publish":{"channel":"chat:a","data":{"a":[1,2]}}}` + "\n" + `{"id":4,"history":{"channel":"chat:a","limit":-1}}`))
	f.Add([]byte(`{"id":5,"presence_stats":{"channel":"chat:a"}}` + "\n" + `{}`))
	f.Add([]byte(`{"id":6,"rpc":{"method":"x","data":null}}`))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"id":7,"unsubscribe":{"channel":"chat:a"}}{"id":8}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzSession(t, FormatJSON, data)
	})
}

// FuzzHandleProtobuf does the same for length-delimited Protobuf frames.
func FuzzHandleProtobuf(f *testing.F) {
	for _, c := range []*protocol.Command{
		{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: "chat:a", Recover: true, Offset: 1}},
		{Id: 3, Publish: &protocol.PublishRequest{Channel: "chat:a", Data: []byte("{}")}},
		{Id: 4, History: &protocol.HistoryRequest{Channel: "chat:a", Limit: 10}},
		{},
	} {
		b, _ := c.MarshalVT()
		frame := binary.AppendUvarint(nil, uint64(len(b)))
		frame = append(frame, b...)
		f.Add(frame)
		f.Add(frame[:len(frame)/2]) // a message split in two
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzSession(t, FormatProtobuf, data)
	})
}

var fuzzHarness struct {
	once sync.Once
	srv  *Server
	tok  string
}

func fuzzSession(t *testing.T, format int, data []byte) {
	fuzzHarness.once.Do(func() {
		h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(),
			Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{"chat": {AllowSubscribeForClient: true,
				AllowPublishForSubscriber: true, HistorySize: 5, HistoryTTL: time.Minute, Presence: true, AllowPresenceForSubscriber: true}}}})
		if err != nil {
			panic(err)
		}
		fuzzHarness.srv, _ = NewServer(Config{Hub: h, Tokens: auth.NewTokenVerifier(secret, "", "")})
		fuzzHarness.tok = tok(t, "fuzz")
	})
	ft := newFakeTransport()
	s := fuzzHarness.srv.NewSession(ft, format)
	ft.session = s
	var connect []byte
	if format == FormatJSON {
		connect = []byte(`{"id":1,"connect":{"token":"` + fuzzHarness.tok + `"}}`)
	} else {
		b, _ := (&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: fuzzHarness.tok}}).MarshalVT()
		connect = append(binary.AppendUvarint(nil, uint64(len(b))), b...)
	}
	s.HandleMessage(connect)
	s.HandleMessage(bytes.Clone(data))
	s.Disconnect(hub.DisconnectConnectionClosed)
	select {
	case <-ft.done:
	case <-time.After(5 * time.Second):
		t.Fatal("session did not close")
	}
}

type blockingRPC struct{ started chan struct{} }

func (b blockingRPC) HandleRPC(ctx context.Context, req hub.RPCRequest) ([]byte, error) {
	if req.Method == "echo" {
		return req.Data, nil
	}
	if req.Method == "fail" {
		return nil, &hub.AppError{Code: 1000, Message: "custom failure"}
	}
	close(b.started)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRPCRepliesAndCancellationOnClose(t *testing.T) {
	rpc := blockingRPC{started: make(chan struct{})}
	h := newHarness(t, func(c *Config) { c.RPC = rpc })
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	s.HandleMessage([]byte(`{"id":2,"rpc":{"method":"echo","data":{"v":1}}}`))
	require.Eventually(t, hasMessage(ft, `{"id":2,"rpc":{"data":{"v":1}}}`), testenv.Wait, testenv.Tick, "echo reply")
	s.HandleMessage([]byte(`{"id":3,"rpc":{"method":"fail","data":{}}}`))
	require.Eventually(t, hasMessage(ft, `{"id":3,"error":{"code":1000,"message":"custom failure"}}`), testenv.Wait, testenv.Tick, "custom error")
	s.HandleMessage([]byte(`{"id":4,"rpc":{"method":"block","data":{}}}`))
	<-rpc.started
	s.Disconnect(hub.DisconnectConnectionClosed)
	select {
	case <-ft.done: // Closed returned: the blocked rpc was cancelled
	case <-time.After(5 * time.Second):
		t.Fatal("close waited for the in-flight rpc")
	}
}

func TestStuckSocketDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Writers = 1; c.WriteStall = time.Second })
	stuck, stuckT := h.session(FormatJSON)
	other, otherT := h.session(FormatJSON)
	for _, s := range []*Session{stuck, other} {
		s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:s"}}`))
	}
	require.Eventually(t, hasMessage(stuckT, `"id":2`), testenv.Wait, testenv.Tick, "stuck subscribed")
	require.Eventually(t, hasMessage(otherT, `"id":2`), testenv.Wait, testenv.Tick, "other subscribed")
	stuckT.block = make(chan struct{}) // this peer stops reading: its writes block
	defer close(stuckT.block)
	for i := 0; i < 3; i++ {
		_, err := h.hub.Publish(context.Background(), "chat:s", []byte(`{"n":`+string(rune('0'+i))+`}`), nil, nil)
		require.NoError(t, err)
	}
	<-stuckT.blocked // the only writer is stuck in this peer's write
	if hasMessage(otherT, `{"n":2}`)() {
		return // served before the stuck write began: nothing to detach
	}
	h.clock.Advance(time.Second - time.Millisecond)
	require.False(t, hasMessage(otherT, `{"n":2}`)(), "the writer is not detached before the stall limit")
	h.clock.Advance(time.Millisecond)
	// With one writer, the other connection is served once the stuck
	// writer is detached.
	require.Eventually(t, hasMessage(otherT, `{"n":2}`), testenv.Wait, testenv.Tick, "other connection served despite a stuck peer")
}

func TestExpiryEnforcedWithoutPings(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PingInterval = -1; c.ExpiredCloseDelay = 10 * time.Second })
	s, ft := h.session(FormatJSON)
	tk, err := auth.SignConnect(secret, "u1", time.Minute, h.clock.Now())
	require.NoError(t, err)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tk + `"}}`))
	require.Eventually(t, hasMessage(ft, `"expires":true,"ttl":60`), testenv.Wait, testenv.Tick, "connect")
	// Checked every ExpiredCloseDelay; closed once expiry + delay passed.
	h.clock.Advance(time.Minute)
	require.Nil(t, ft.disconnect(), "the expired close delay is a grace period")
	h.clock.Advance(10 * time.Second)
	require.Eventually(t, disconnected(ft), testenv.Wait, testenv.Tick, "expired connection closed")
	require.Equal(t, hub.DisconnectExpired, *ft.disconnect())
}

func TestExpiryCheckedAtPings(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PongTimeout = -1 })
	s, ft := h.session(FormatJSON)
	tk, err := auth.SignConnect(secret, "u1", time.Minute, h.clock.Now())
	require.NoError(t, err)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tk + `"}}`))
	require.Eventually(t, connected(ft), testenv.Wait, testenv.Tick, "connect")
	h.clock.Advance(3 * DefaultPingInterval) // 75 s: expired 15 s ago, within the 25 s delay
	require.Eventually(t, func() bool { return pings(ft) == 3 }, testenv.Wait, testenv.Tick, "pings")
	require.Nil(t, ft.disconnect())
	h.clock.Advance(DefaultPingInterval) // 100 s
	require.Eventually(t, disconnected(ft), testenv.Wait, testenv.Tick, "expired at the next ping")
	require.Equal(t, hub.DisconnectExpired, *ft.disconnect())
	require.Equal(t, 3, pings(ft), "no ping to an expired connection")
}

func TestRecoveryWithinHistoryTTL(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PingInterval = -1 })
	ctx := context.Background()
	var sp hub.StreamPosition
	for i := 1; i <= 3; i++ {
		var err error
		sp, err = h.hub.Publish(ctx, "chat:t", []byte(`{"n":`+string(rune('0'+i))+`}`), nil, nil)
		require.NoError(t, err)
	}
	recoverCmd := func(id string) []byte {
		return []byte(`{"id":` + id + `,"subscribe":{"channel":"chat:t","recover":true,"offset":1,"epoch":"` + sp.Epoch + `"}}`)
	}
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	h.clock.Advance(time.Minute - time.Millisecond) // the namespace keeps history for a minute
	s.HandleMessage(recoverCmd("2"))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe"`), testenv.Wait, testenv.Tick, "first subscribe")
	require.True(t, hasMessage(ft, `"recovered":true`)())
	require.True(t, hasMessage(ft, `{"n":3}`)())
	s.HandleMessage([]byte(`{"id":3,"unsubscribe":{"channel":"chat:t"}}`))
	require.Eventually(t, hasMessage(ft, `"id":3,"unsubscribe"`), testenv.Wait, testenv.Tick, "unsubscribed")

	h.clock.Advance(time.Millisecond) // now the publications are gone
	s.HandleMessage(recoverCmd("4"))
	require.Eventually(t, hasMessage(ft, `"id":4,"subscribe"`), testenv.Wait, testenv.Tick, "second subscribe")
	for _, m := range ft.messages() {
		if strings.Contains(m, `"id":4`) {
			require.NotContains(t, m, `"recovered":true`)
			require.NotContains(t, m, `"publications"`)
		}
	}
}

func TestHubDeliversToOneSession(t *testing.T) {
	h := newHarness(t, nil)
	a, at := h.session(FormatJSON)
	b, bt := h.session(FormatProtobuf)
	require.ErrorIs(t, h.hub.Deliver("nobody", []byte(`{}`)), hub.ErrNoClient)
	a.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	cmd, err := (&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{Token: tok(t, "u2")}}).MarshalVT()
	require.NoError(t, err)
	b.HandleMessage(append(binary.AppendUvarint(nil, uint64(len(cmd))), cmd...))
	require.Eventually(t, connected(at), testenv.Wait, testenv.Tick, "a connected")
	require.Eventually(t, func() bool { bt.mu.Lock(); defer bt.mu.Unlock(); return len(bt.writes) == 1 }, testenv.Wait, testenv.Tick, "b connected")

	require.NoError(t, h.hub.Deliver(a.ID(), []byte(`{"to":"a"}`)))
	require.NoError(t, h.hub.Deliver(b.ID(), []byte(`{"to":"b"}`)))
	require.Eventually(t, hasMessage(at, `{"push":{"message":{"data":{"to":"a"}}}}`), testenv.Wait, testenv.Tick, "message push to a")
	require.False(t, hasMessage(at, `"b"`)(), "a gets only its own message")
	require.Eventually(t, func() bool { bt.mu.Lock(); defer bt.mu.Unlock(); return len(bt.writes) == 2 }, testenv.Wait, testenv.Tick, "message to b")
	bt.mu.Lock()
	w := bt.writes[1]
	bt.mu.Unlock()
	_, n := binary.Uvarint(w)
	var rep protocol.Reply
	require.NoError(t, rep.UnmarshalVT(w[n:]))
	require.Equal(t, `{"to":"b"}`, string(rep.Push.Message.Data), "encoded in b's format")
}

func TestRefreshInfoConcurrentWithPublish(t *testing.T) {
	h := newHarness(t, nil)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"chat:a"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe"`), testenv.Wait, testenv.Tick, "subscribed")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			s.Refresh(0, false, []byte(`{"a":1}`))
		}
	}()
	for i := 0; i < 50; i++ {
		s.HandleMessage([]byte(fmt.Sprintf(`{"id":%d,"publish":{"channel":"chat:a","data":{"n":%d}}}`, 3+i, i)))
	}
	<-done
	s.HandleMessage([]byte(`{"id":99,"publish":{"channel":"chat:a","data":{"last":true}}}`))
	require.Eventually(t, hasMessage(ft, `{"last":true}`), testenv.Wait, testenv.Tick, "the last publication delivered")
	for i := 0; i < 50; i++ {
		require.True(t, hasMessage(ft, fmt.Sprintf(`"id":%d,"publish":{}`, 3+i))(), "publish %d answered", 3+i)
		require.True(t, hasMessage(ft, fmt.Sprintf(`{"n":%d}`, i))(), "publication %d delivered", i)
	}
	require.Equal(t, 50, countMessages(ft, `"refresh":{`), "every refresh pushed")
	for _, m := range ft.messages() {
		if strings.Contains(m, `{"last":true}`) {
			require.Contains(t, m, `"conn_info":{"a":1}`, "a publication after the refreshes carries the refreshed info")
		}
	}
}

func countMessages(ft *fakeTransport, substr string) int {
	n := 0
	for _, m := range ft.messages() {
		n += strings.Count(m, substr)
	}
	return n
}

func TestServerSubscribeRecoverDeliversMissed(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	var sp hub.StreamPosition
	for i := 1; i <= 3; i++ {
		var err error
		sp, err = h.hub.Publish(ctx, "chat:r", []byte(`{"n":`+string(rune('0'+i))+`}`), nil, nil)
		require.NoError(t, err)
	}
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}`))
	require.Eventually(t, hasMessage(ft, `"id":1,"connect"`), testenv.Wait, testenv.Tick, "connect")
	require.NoError(t, s.ServerSubscribe(ctx, "chat:r", hub.ServerSubscribe{RecoverSince: &hub.StreamPosition{Offset: 1, Epoch: sp.Epoch}}))
	require.Eventually(t, hasMessage(ft, `{"n":3}`), testenv.Wait, testenv.Tick, "missed publications pushed")
	var order []string
	for _, m := range ft.messages() {
		if strings.Contains(m, `"subscribe":`) || strings.Contains(m, `"pub":`) {
			order = append(order, m)
		}
	}
	require.Len(t, order, 3)
	require.Contains(t, order[0], `"subscribe":`)
	require.Contains(t, order[1], `{"n":2}`)
	require.Contains(t, order[2], `{"n":3}`)
}

func TestRecoveryBeyondLimitSendsNoPartialWindow(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HistoryMaxLimit = 3 })
	ctx := context.Background()
	var sp hub.StreamPosition
	for i := 0; i < 10; i++ {
		var err error
		sp, err = h.hub.Publish(ctx, "chat:w", []byte(`{}`), nil, nil)
		require.NoError(t, err)
	}
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" +
		`{"id":2,"subscribe":{"channel":"chat:w","recover":true,"offset":0,"epoch":"` + sp.Epoch + `"}}`))
	require.Eventually(t, hasMessage(ft, `"id":2,"subscribe"`), testenv.Wait, testenv.Tick, "subscribe reply")
	for _, m := range ft.messages() {
		if strings.Contains(m, `"id":2`) {
			require.NotContains(t, m, `"publications"`)
			require.NotContains(t, m, `"recovered":true`)
			require.Contains(t, m, `"offset":10`)
		}
	}
}

func TestBinaryPublicationDoesNotBreakJSONHistory(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	_, err := h.hub.Publish(ctx, "chat:b", []byte{0xff, 0x00, 0x01}, nil, nil)
	require.NoError(t, err)
	_, err = h.hub.Publish(ctx, "chat:b", []byte(`{"ok":true}`), nil, nil)
	require.NoError(t, err)
	s, ft := h.session(FormatJSON)
	s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + tok(t, "u1") + `"}}` + "\n" +
		`{"id":2,"subscribe":{"channel":"chat:b"}}` + "\n" + `{"id":3,"history":{"channel":"chat:b","limit":10}}`))
	require.Eventually(t, hasMessage(ft, `"id":3,"history":{"publications":[{"data":{"ok":true}`), testenv.Wait, testenv.Tick, "history without the binary one")
	require.Nil(t, ft.disconnect())
}
