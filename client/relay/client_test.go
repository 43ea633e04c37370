//go:build !js

package relay_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/client/relay"
	server "github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startRelay runs a real relay on 127.0.0.1:0 and returns its address
// and the pin of its development certificate.
func startRelay(t *testing.T) (*server.Server, string, [32]byte) {
	t.Helper()
	return startRelayWith(t, server.Config{})
}

// startRelayWith runs a real relay configured by cfg (Address default
// 127.0.0.1:0); Shutdown at the end of the test is idempotent.
func startRelayWith(t *testing.T, cfg server.Config) (*server.Server, string, [32]byte) {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	cfg.Registerer = prometheus.NewRegistry()
	s, err := server.New(cfg)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	cert := s.Certificate()
	return s, s.Addr().String(), sha256.Sum256(cert.Certificate[0])
}

func dial(t *testing.T, addr string, pin [32]byte, o relay.Options) *relay.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	o.CertHashes = [][32]byte{pin}
	c, err := relay.Dial(ctx, addr, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextEvent(t *testing.T, c *relay.Client) relay.Event {
	t.Helper()
	select {
	case ev := <-c.Events():
		return ev
	case <-time.After(testenv.Wait):
		t.Fatal("no event")
	}
	return relay.Event{}
}

func TestRoomsEventsPresence(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	a := dial(t, addr, pin, relay.Options{NodeID: 1, Name: "a"})
	b := dial(t, addr, pin, relay.Options{Name: "b"})
	require.Equal(t, wire.NodeID(1), a.NodeID())
	require.NotZero(t, b.NodeID())
	require.Equal(t, uint32(server.DefaultMaxMembers), a.Limits().MaxMembers)

	ra, err := a.Join(ctx, "lobby", relay.JoinOptions{Create: true, Metadata: []byte("red")})
	require.NoError(t, err)
	_, err = b.Join(ctx, "nowhere", relay.JoinOptions{})
	var re *relay.RequestError
	require.ErrorAs(t, err, &re)
	require.Equal(t, wire.ErrCodeNotFound, re.Code)
	rb, err := b.Join(ctx, "lobby", relay.JoinOptions{})
	require.NoError(t, err)
	require.Len(t, rb.Members(), 2)
	p := <-a.Presence()
	require.Equal(t, "lobby", p.Room)
	require.Equal(t, b.NodeID(), p.Joins[0].NodeID)
	require.Eventually(t, func() bool { return len(ra.Members()) == 2 }, testenv.Wait, testenv.Tick)

	rooms, err := a.List(ctx, "lo", 0)
	require.NoError(t, err)
	require.Equal(t, []wire.RoomInfo{{Name: "lobby", Members: 2, MaxMembers: server.DefaultMaxMembers}}, rooms)

	for i := range 100 {
		require.NoError(t, ra.Send(7, []byte{byte(i)}))
	}
	for i := range 100 {
		ev := nextEvent(t, b)
		require.Equal(t, relay.Event{Room: "lobby", Sender: 1, Sequence: ev.Sequence, OpCode: 7, Payload: []byte{byte(i)}}, ev)
	}
	require.NoError(t, rb.Send(1, []byte("to a only"), a.NodeID()))
	require.Equal(t, "to a only", string(nextEvent(t, a).Payload))

	require.Eventually(t, func() bool {
		_ = ra.SendUnreliable(2, []byte("fast"))
		select {
		case ev := <-b.Events():
			return ev.Unreliable && string(ev.Payload) == "fast"
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}, testenv.Wait, testenv.Tick)

	require.NoError(t, b.Heartbeat())
	require.Eventually(t, func() bool { return b.RTT() > 0 }, testenv.Wait, testenv.Tick)

	require.NoError(t, rb.Leave(ctx))
	require.Nil(t, b.Room("lobby"))
	for p := range a.Presence() {
		if len(p.Leaves) > 0 {
			require.Equal(t, []wire.NodeID{b.NodeID()}, p.Leaves)
			break
		}
	}
}

func TestResumeAfterLoss(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	a := dial(t, addr, pin, relay.Options{NodeID: 5})
	b := dial(t, addr, pin, relay.Options{NodeID: 6})
	_, err := a.Join(ctx, "r", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "r", relay.JoinOptions{})
	require.NoError(t, err)
	token := a.ResumeToken()
	a.Abandon()

	a2 := dial(t, addr, pin, relay.Options{ResumeToken: token})
	require.True(t, a2.Resumed())
	require.Equal(t, wire.NodeID(5), a2.NodeID())
	require.Eventually(t, func() bool { return a2.Room("r") != nil }, testenv.Wait, testenv.Tick)
	require.NoError(t, rb.Send(0, []byte("still here")))
	require.Equal(t, "still here", string(nextEvent(t, a2).Payload))
}

func TestGoAwayOnShutdownAndPinning(t *testing.T) {
	s, addr, pin := startRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	_, err := relay.Dial(ctx, addr, relay.Options{CertHashes: [][32]byte{{1, 2, 3}}})
	require.ErrorContains(t, err, "is not pinned")

	a := dial(t, addr, pin, relay.Options{})
	require.NoError(t, s.Shutdown(ctx))
	<-a.Done()
	var g *relay.GoAwayError
	require.True(t, errors.As(a.Err(), &g), "err %v", a.Err())
	require.Equal(t, "shutdown", g.GoAway.Reason)
}

// Clients sharing one UDP socket (Options.Transport) are separate
// sessions: each gets the other's events, and closing one keeps the other.
func TestSharedTransport(t *testing.T) {
	srv, addr, pin := startRelay(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { _ = tr.Close(); _ = udp.Close() })
	ctx := context.Background()
	a := dial(t, addr, pin, relay.Options{Transport: tr})
	b := dial(t, addr, pin, relay.Options{Transport: tr})
	c := dial(t, addr, pin, relay.Options{Transport: tr})
	require.NotEqual(t, a.NodeID(), b.NodeID())
	require.Equal(t, 3, srv.NumConnections())
	ra, err := a.Join(ctx, "shared", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	_, err = b.Join(ctx, "shared", relay.JoinOptions{})
	require.NoError(t, err)
	rc, err := c.Join(ctx, "shared", relay.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return srv.NumConnections() == 2 }, testenv.Wait, testenv.Tick)
	require.Error(t, rc.Send(1, []byte("closed")))
	require.NoError(t, ra.Send(1, []byte("hello b")))
	ev := nextEvent(t, b)
	require.Equal(t, a.NodeID(), ev.Sender)
	require.Equal(t, "hello b", string(ev.Payload))
}

// With OnEvent, events reach the handler in order and Events stays empty.
func TestOnEvent(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	got := make(chan relay.Event, 200)
	a := dial(t, addr, pin, relay.Options{})
	b := dial(t, addr, pin, relay.Options{OnEvent: func(e relay.Event) { got <- e }})
	ra, err := a.Join(ctx, "handled", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	_, err = b.Join(ctx, "handled", relay.JoinOptions{})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, ra.Send(3, []byte{byte(i)}))
	}
	for i := range 100 {
		select {
		case e := <-got:
			require.Equal(t, []byte{byte(i)}, e.Payload)
			require.Equal(t, "handled", e.Room)
		case <-time.After(testenv.Wait):
			t.Fatalf("event %d not handled", i)
		}
	}
	require.Eventually(t, func() bool {
		_ = ra.SendUnreliable(4, []byte("dg"))
		select {
		case e := <-got:
			return e.Unreliable
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}, testenv.Wait, testenv.Tick)
	require.Empty(t, b.Events())
}
