//go:build !js

package relay_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/origin"
	server "github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// A WebTransport client (as a browser connects: h3, path /relay, the
// certificate pinned by hash) and a native QUIC client share a room:
// join, presence, reliable and unreliable events both ways.
func TestWebTransportWithNativeInOneRoom(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	web := dial(t, addr, pin, relay.Options{NodeID: 10, Name: "browser", WebTransport: true})
	native := dial(t, addr, pin, relay.Options{NodeID: 11, Name: "native"})

	rw, err := web.Join(ctx, "arena", relay.JoinOptions{Create: true, Metadata: []byte("web")})
	require.NoError(t, err)
	rn, err := native.Join(ctx, "arena", relay.JoinOptions{})
	require.NoError(t, err)
	require.Len(t, rn.Members(), 2)
	p := <-web.Presence()
	require.Equal(t, "arena", p.Room)
	require.Equal(t, wire.NodeID(11), p.Joins[0].NodeID)

	for i := range 50 {
		require.NoError(t, rw.Send(3, []byte{byte(i)}))
	}
	for i := range 50 {
		ev := nextEvent(t, native)
		require.Equal(t, relay.Event{Room: "arena", Sender: 10, Sequence: ev.Sequence, OpCode: 3, Payload: []byte{byte(i)}}, ev)
	}
	require.NoError(t, rn.Send(4, []byte("hello browser")))
	ev := nextEvent(t, web)
	require.Equal(t, "hello browser", string(ev.Payload))
	require.Equal(t, wire.NodeID(11), ev.Sender)

	unreliable := func(from *relay.Room, to *relay.Client, payload string) {
		require.Eventually(t, func() bool {
			_ = from.SendUnreliable(5, []byte(payload))
			select {
			case ev := <-to.Events():
				return ev.Unreliable && string(ev.Payload) == payload
			case <-time.After(20 * time.Millisecond):
				return false
			}
		}, testenv.Wait, testenv.Tick)
	}
	unreliable(rw, native, "web datagram")
	unreliable(rn, web, "native datagram")

	require.NoError(t, web.Heartbeat())
	require.Eventually(t, func() bool { return web.RTT() > 0 }, testenv.Wait, testenv.Tick)

	require.NoError(t, web.Close())
	for p := range native.Presence() {
		if len(p.Leaves) > 0 {
			require.Equal(t, []wire.NodeID{10}, p.Leaves)
			break
		}
	}
}

// The Origin header goes through the hub's origin policy: another site
// is refused with 403; an allowed one and the relay's own pages (the
// HTTP server's port, PagePort) get a session.
func TestWebTransportOrigin(t *testing.T) {
	s, addr, pin := startRelayWith(t, server.Config{Origins: origin.MustNew()})
	s.SetPagePort(8123)
	try := func(o string) error {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
		defer cancel()
		c, err := relay.Dial(ctx, addr, relay.Options{WebTransport: true, CertHashes: [][32]byte{pin},
			Header: http.Header{"Origin": {o}}})
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	require.ErrorContains(t, try("https://evil.example"), "HTTP 403")
	require.NoError(t, try("http://127.0.0.1:8123"), "the relay's own HTTP server")
	require.ErrorContains(t, try("http://127.0.0.1:8124"), "HTTP 403")
	require.Eventually(t, func() bool { return s.NumConnections() == 0 }, testenv.Wait, testenv.Tick)

	// A session is refused by the relay's handshake like a native one
	// (the session's close carries the code and reason).
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	a := dial(t, addr, pin, relay.Options{NodeID: 3, WebTransport: true})
	_, err := relay.Dial(ctx, addr, relay.Options{NodeID: 3, WebTransport: true, CertHashes: [][32]byte{pin}})
	require.ErrorContains(t, err, "node id already connected")
	require.NoError(t, a.Close())
}

// Automatic reconnection works over WebTransport: a lost connection is
// resumed (same NodeId and rooms, no leave seen by a native member).
func TestWebTransportReconnectResumes(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	st := newStates()
	o := reconnecting(st)
	o.WebTransport = true
	a := dial(t, addr, pin, o)
	st.wait(t, relay.StateConnected)
	b := dial(t, addr, pin, relay.Options{})
	ra, err := a.Join(ctx, "r", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "r", relay.JoinOptions{})
	require.NoError(t, err)
	<-a.Presence()
	id := a.NodeID()

	relay.DropConnection(a)
	st.wait(t, relay.StateReconnecting)
	st.wait(t, relay.StateResumed)
	require.Equal(t, id, a.NodeID())
	roundTrip(t, ra, rb, a, b, "after resume over webtransport")
	noLeave(t, b, id)
}
