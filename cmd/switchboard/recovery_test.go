package main

import (
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// switchProxy is a TCP load balancer of one backend at a time: dropAll
// cuts every connection, target picks where new ones go ("" refuses them).
type switchProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &switchProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.dropAll()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		if target == "" {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

func (p *switchProxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *switchProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// A client of node A that comes back through the load balancer on node B
// recovers, from the history both nodes share in Redis, exactly what was
// published while it was away: nothing lost, nothing twice, in order.
func TestRedisEngineRecoveryOnAnotherNode(t *testing.T) {
	node := redisNodes(t)
	a, b := node(), node()
	lb := newSwitchProxy(t, a.Addr())

	gc := newGoClientURL(t, "ws://"+lb.ln.Addr().String()+"/connection/websocket", false, token(t, "dora", time.Hour))
	s, subscribed := gc.sub(t, "chat:nodes", centrifuge.SubscriptionConfig{})
	require.NoError(t, s.Subscribe())
	require.NoError(t, gc.Connect())
	ev := receive(t, subscribed, "subscribed on A")
	require.True(t, ev.Recoverable)
	require.Equal(t, 1, a.Hub().NumClients())

	publish := func(m *Main, n int) {
		t.Helper()
		status, body := apiCall(t, m, "publish", map[string]any{"channel": "chat:nodes", "data": map[string]any{"n": n}})
		require.Equal(t, 200, status)
		require.Contains(t, body, "result", "publish %d: %v", n, body)
	}
	publish(b, 1)
	require.Eventually(t, func() bool { return slices.Equal(gc.publications(), []string{`{"n":1}`}) }, testenv.Wait, testenv.Tick, "publication on B reaches the client on A")

	// The client loses its connection; while it is away the channel moves on.
	lb.setTarget("")
	lb.dropAll()
	require.Eventually(t, func() bool { return a.Hub().NumClients() == 0 }, testenv.Wait, testenv.Tick, "client gone from A")
	publish(a, 2)
	publish(b, 3)

	// It comes back through the load balancer, now on B.
	lb.setTarget(b.Addr())
	ev = receive(t, subscribed, "resubscribed on B")
	require.True(t, ev.WasRecovering)
	require.True(t, ev.Recovered, "recovered on another node")
	require.Equal(t, 1, b.Hub().NumClients())
	publish(a, 4)
	want := []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`}
	require.Eventually(t, func() bool { return len(gc.publications()) >= len(want) }, testenv.Wait, testenv.Tick, "missed and new publications")
	require.Equal(t, want, gc.publications())
}
