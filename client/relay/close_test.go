//go:build !js

package relay_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// udpProxy forwards datagrams between one client and the relay until
// cut, after which it forwards nothing: what a client sent before cut
// (on loopback, in the proxy's socket buffer already) reaches the relay,
// what it sends after never does, as when its process has exited.
type udpProxy struct {
	ln     *net.UDPConn // the clients' side
	up     *net.UDPConn // to the relay
	marker *net.UDPConn // cut's datagram comes from here
	cutOff atomic.Bool
	isCut  chan struct{}
	mu     sync.Mutex
	client *net.UDPAddr
	wg     sync.WaitGroup
}

func newUDPProxy(t *testing.T, relayAddr string) *udpProxy {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", relayAddr)
	require.NoError(t, err)
	p := &udpProxy{isCut: make(chan struct{})}
	p.ln, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	p.marker, err = net.DialUDP("udp", nil, p.ln.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	markerAddr := p.marker.LocalAddr().String()
	p.up, err = net.DialUDP("udp", nil, ra)
	require.NoError(t, err)
	p.wg.Add(2)
	go func() { // client → relay
		defer p.wg.Done()
		b := make([]byte, 64<<10)
		for {
			n, from, err := p.ln.ReadFromUDP(b)
			if err != nil {
				return
			}
			if from.String() == markerAddr {
				if !p.cutOff.Swap(true) {
					close(p.isCut)
				}
				continue
			}
			p.mu.Lock()
			p.client = from
			p.mu.Unlock()
			if !p.cutOff.Load() {
				_, _ = p.up.Write(b[:n])
			}
		}
	}()
	go func() { // relay → client
		defer p.wg.Done()
		b := make([]byte, 64<<10)
		for {
			n, err := p.up.Read(b)
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.client
			p.mu.Unlock()
			if to != nil && !p.cutOff.Load() {
				_, _ = p.ln.WriteToUDP(b[:n], to)
			}
		}
	}()
	t.Cleanup(func() {
		_ = p.ln.Close()
		_ = p.up.Close()
		_ = p.marker.Close()
		p.wg.Wait()
	})
	return p
}

func (p *udpProxy) addr() string { return p.ln.LocalAddr().String() }

// cut stops forwarding after the datagrams received so far.
func (p *udpProxy) cut(t *testing.T) {
	t.Helper()
	_, err := p.marker.Write([]byte("cut"))
	require.NoError(t, err)
	select {
	case <-p.isCut:
	case <-time.After(testenv.Wait):
		t.Fatal("the proxy did not see the cut")
	}
}

// Close has told the relay when it returns: a program that exits right
// after Close (the proxy cut then) has left its rooms at once, over
// WebTransport as over native QUIC, instead of leaving a session the
// relay parks until its idle timeout and resume grace.
func TestCloseLeavesBeforeReturning(t *testing.T) {
	for _, wt := range []bool{false, true} {
		name := "native"
		if wt {
			name = "webtransport"
		}
		t.Run(name, func(t *testing.T) {
			s, addr, pin := startRelay(t)
			ctx := context.Background()
			watcher := dial(t, addr, pin, relay.Options{Name: "watcher"})
			_, err := watcher.Join(ctx, "r", relay.JoinOptions{Create: true})
			require.NoError(t, err)
			p := newUDPProxy(t, addr)
			leaver := dial(t, p.addr(), pin, relay.Options{Name: "leaver", WebTransport: wt})
			_, err = leaver.Join(ctx, "r", relay.JoinOptions{})
			require.NoError(t, err)
			id := leaver.NodeID()
			require.Equal(t, 2, s.NumConnections())

			require.NoError(t, leaver.Close())
			p.cut(t)
			// The relay's idle timeout is 30 s, its resume grace more:
			// a leave within 3 s is the close's.
			deadline := time.After(3 * time.Second)
			for {
				select {
				case pe := <-watcher.Presence():
					if len(pe.Leaves) == 1 && pe.Leaves[0] == id {
						require.Eventually(t, func() bool { return s.NumConnections() == 1 }, time.Second, time.Millisecond)
						return
					}
				case <-deadline:
					t.Fatalf("no leave of %d after Close (connections %d)", id, s.NumConnections())
				}
			}
		})
	}
}
