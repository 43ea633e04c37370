//go:build !js

package relay_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/client/relay"
	server "github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// states records a client's state changes.
type states chan relay.StateChange

func newStates() states { return make(states, 256) }

func (s states) record(sc relay.StateChange) {
	select {
	case s <- sc:
	default:
	}
}

// wait returns the next change to want, failing on StateClosed first.
func (s states) wait(t *testing.T, want relay.State) relay.StateChange {
	t.Helper()
	deadline := time.After(testenv.Wait)
	for {
		select {
		case sc := <-s:
			t.Logf("state %s attempt %d delay %s err %v lost %v", sc.State, sc.Attempt, sc.Delay, sc.Err, sc.Lost)
			if sc.State == want {
				return sc
			}
			if sc.State == relay.StateClosed {
				t.Fatalf("closed (%v) while waiting for %s", sc.Err, want)
			}
		case <-deadline:
			t.Fatalf("no state %s", want)
		}
	}
}

func reconnecting(st states) relay.Options {
	return relay.Options{Reconnect: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, OnState: st.record}
}

// noLeave fails when p carries a leave of n (after draining what came).
func noLeave(t *testing.T, c *relay.Client, n wire.NodeID) {
	t.Helper()
	for {
		select {
		case p := <-c.Presence():
			require.NotContains(t, p.Leaves, n, "the others saw %d leave", n)
		default:
			return
		}
	}
}

// roundTrip checks that ra's and rb's clients hear each other.
func roundTrip(t *testing.T, ra, rb *relay.Room, a, b *relay.Client, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return ra.Send(1, []byte(what+" from a")) == nil }, testenv.Wait, testenv.Tick)
	require.Equal(t, what+" from a", string(nextEvent(t, b).Payload))
	require.NoError(t, rb.Send(1, []byte(what+" from b")))
	require.Equal(t, what+" from b", string(nextEvent(t, a).Payload))
}

// A connection lost from the client's side is resumed: same NodeId, same
// Room values, and the other member sees no leave.
func TestReconnectResumesLostConnection(t *testing.T) {
	_, addr, pin := startRelay(t)
	ctx := context.Background()
	st := newStates()
	a := dial(t, addr, pin, reconnecting(st))
	st.wait(t, relay.StateConnected)
	b := dial(t, addr, pin, relay.Options{})
	ra, err := a.Join(ctx, "r", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "r", relay.JoinOptions{})
	require.NoError(t, err)
	<-a.Presence() // b joined
	id, sid := a.NodeID(), a.SessionID()

	relay.DropConnection(a)
	sc := st.wait(t, relay.StateReconnecting)
	require.Error(t, sc.Err)
	st.wait(t, relay.StateResumed)
	require.Equal(t, relay.StateResumed, a.State())
	require.Equal(t, id, a.NodeID())
	require.Equal(t, sid, a.SessionID())
	require.True(t, a.Resumed())
	require.Same(t, ra, a.Room("r"))
	require.Len(t, ra.Members(), 2)
	roundTrip(t, ra, rb, a, b, "after resume")
	noLeave(t, b, id)

	require.NoError(t, a.Close())
	require.Equal(t, relay.StateClosed, a.State())
	require.NoError(t, a.Err())
	for p := range b.Presence() {
		if len(p.Leaves) > 0 {
			require.Equal(t, []wire.NodeID{id}, p.Leaves) // Close leaves at once
			break
		}
	}
}

// The relay closes a connection that stops answering heartbeats (GOAWAY
// no pong, come back after 1 s) and parks it: the client resumes it.
func TestReconnectResumesAfterServerKill(t *testing.T) {
	_, addr, pin := startRelayWith(t, server.Config{HeartbeatInterval: 50 * time.Millisecond})
	ctx := context.Background()
	st := newStates()
	a := dial(t, addr, pin, reconnecting(st))
	b := dial(t, addr, pin, relay.Options{})
	ra, err := a.Join(ctx, "r", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "r", relay.JoinOptions{})
	require.NoError(t, err)
	id := a.NodeID()

	relay.MuteHeartbeats(a)
	sc := st.wait(t, relay.StateReconnecting)
	var g *relay.GoAwayError
	require.ErrorAs(t, sc.Err, &g)
	require.True(t, g.Retry())
	require.GreaterOrEqual(t, sc.Delay, time.Duration(g.GoAway.RetryAfterMillis)*time.Millisecond, "retry-after honored")
	require.ErrorIs(t, ra.Send(1, nil), relay.ErrReconnecting)
	st.wait(t, relay.StateResumed)
	require.Equal(t, id, a.NodeID())
	roundTrip(t, ra, rb, a, b, "after kill")
	noLeave(t, b, id)
}

// After a relay restart nothing can be resumed: both clients get new
// sessions and rejoin their rooms (recreated), and play on.
func TestReconnectRejoinsAfterRestart(t *testing.T) {
	s1, addr, pin := startRelay(t)
	cert := s1.Certificate()
	ctx := context.Background()
	sta, stb := newStates(), newStates()
	a := dial(t, addr, pin, reconnecting(sta))
	b := dial(t, addr, pin, reconnecting(stb))
	ra, err := a.Join(ctx, "table", relay.JoinOptions{Create: true, MaxMembers: 2})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "table", relay.JoinOptions{})
	require.NoError(t, err)
	oldA := a.SessionID()

	sctx, cancel := context.WithTimeout(ctx, testenv.Wait)
	defer cancel()
	require.NoError(t, s1.Shutdown(sctx))
	sc := sta.wait(t, relay.StateReconnecting)
	var g *relay.GoAwayError
	require.ErrorAs(t, sc.Err, &g)
	require.Equal(t, "shutdown", g.GoAway.Reason)
	startRelayWith(t, server.Config{Address: addr, Certificate: &cert})

	rc := sta.wait(t, relay.StateRejoined)
	require.Empty(t, rc.Lost)
	require.Empty(t, stb.wait(t, relay.StateRejoined).Lost)
	require.NotEqual(t, oldA, a.SessionID())
	require.False(t, a.Resumed())
	require.Same(t, ra, a.Room("table"))
	require.Eventually(t, func() bool { return len(ra.Members()) == 2 && len(rb.Members()) == 2 }, testenv.Wait, testenv.Tick,
		"members a %v b %v", ra.Members(), rb.Members())
	roundTrip(t, ra, rb, a, b, "after restart")
}

// Close stops a reconnection under way; MaxAttempts gives up.
func TestReconnectCloseAndGiveUp(t *testing.T) {
	s, addr, pin := startRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	st := newStates()
	o := reconnecting(st)
	a := dial(t, addr, pin, o)
	st2 := newStates()
	o2 := reconnecting(st2)
	o2.MaxAttempts, o2.DialTimeout = 2, 100*time.Millisecond
	b := dial(t, addr, pin, o2)
	require.NoError(t, s.Shutdown(ctx))

	st.wait(t, relay.StateReconnecting)
	require.NoError(t, a.Close())
	require.Equal(t, relay.StateClosed, a.State())
	require.NoError(t, a.Err())
	_, err := a.Join(ctx, "x", relay.JoinOptions{})
	require.ErrorIs(t, err, relay.ErrClosed)

	<-b.Done()
	require.ErrorContains(t, b.Err(), "gave up after 2 attempts")
	require.Equal(t, relay.StateClosed, b.State())
}

// A GOAWAY that does not invite back ends the client.
func TestGoAwayRetry(t *testing.T) {
	for code, retry := range map[uint32]bool{3001: true, 3012: true, 3499: true, 3500: false, 3501: false, 4000: false, 5000: true} {
		e := relay.GoAwayError{GoAway: wire.GoAway{Code: code}}
		require.Equal(t, retry, e.Retry(), "code %d", code)
	}
}

// A redial after the grace window gets a new session that rejoins: the
// other member sees the old NodeId leave and the new one join.
func TestReconnectRejoinsAfterGraceWindow(t *testing.T) {
	_, addr, pin := startRelayWith(t, server.Config{ResumeGrace: 20 * time.Millisecond})
	ctx := context.Background()
	st := newStates()
	o := reconnecting(st)
	o.MinBackoff, o.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond // ≥ 150 ms after the loss
	a := dial(t, addr, pin, o)
	b := dial(t, addr, pin, relay.Options{})
	ra, err := a.Join(ctx, "r", relay.JoinOptions{Create: true})
	require.NoError(t, err)
	rb, err := b.Join(ctx, "r", relay.JoinOptions{})
	require.NoError(t, err)
	old := a.NodeID()

	relay.DropConnection(a)
	require.Empty(t, st.wait(t, relay.StateRejoined).Lost)
	require.NotEqual(t, old, a.NodeID())
	var left, joined bool
	for !left || !joined {
		select {
		case p := <-b.Presence():
			left = left || slices.Contains(p.Leaves, old)
			for _, m := range p.Joins {
				joined = joined || m.NodeID == a.NodeID()
			}
		case <-time.After(testenv.Wait):
			t.Fatalf("presence: left %v joined %v", left, joined)
		}
	}
	roundTrip(t, ra, rb, a, b, "after the window")
}
