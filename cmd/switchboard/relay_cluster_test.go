package main

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func relayOn(cfg *config.Config) {
	cfg.Relay.Enabled = true
	cfg.Relay.Address = "127.0.0.1:0"
}

// Two `serve` processes on one Redis: one room, members on both, events
// and presence cross, the server API's presence lists every player.
func TestRelayRoomAcrossServeInstances(t *testing.T) {
	node := redisNodes(t, relayOn)
	a, b := node(), node()
	ca := relaytest.DialNative(t, a.RelayAddr(), &wire.Hello{NodeID: 11})
	cb := relaytest.DialNative(t, b.RelayAddr(), &wire.Hello{NodeID: 12})
	ja := ca.Join("table")
	jb := cb.Join("table")
	require.Len(t, jb.Members, 2)
	ca.AwaitJoin(12)
	for i := range 50 {
		ca.Send(&wire.NativeEvent{Handle: ja.Handle, Sequence: uint64(i)})
	}
	for i := range 50 {
		require.Equal(t, uint64(i), cb.NextEvent().Sequence)
	}
	cb.Send(&wire.NativeEvent{Handle: jb.Handle, Sequence: 99, Targets: []wire.NodeID{11}})
	ev := ca.NextEvent()
	require.Equal(t, uint64(99), ev.Sequence)
	require.Equal(t, wire.NodeID(12), ev.Sender)

	_, body := apiCall(t, a, "presence", map[string]any{"channel": "relay:table"})
	require.Len(t, body["result"].(map[string]any)["presence"], 2)
	// Each relay names its process as the hub's node registry does, which
	// tells the others when it dies.
	pres, err := a.hub.Presence(context.Background(), "relay:table")
	require.NoError(t, err)
	var procs []string
	for _, info := range pres {
		var e struct {
			Process string `json:"process"`
		}
		require.NoError(t, json.Unmarshal(info.ChanInfo, &e))
		procs = append(procs, e.Process)
	}
	require.ElementsMatch(t, []string{a.hub.NodeID(), b.hub.NodeID()}, procs)
	cb.Close()
	for {
		if p, ok := ca.Next().(*wire.Presence); ok && len(p.Leaves) > 0 {
			require.Equal(t, []wire.NodeID{12}, p.Leaves)
			break
		}
	}
}

// With relay.mirror, a centrifuge-go client subscribed to relay:R sees
// the room's events as JSON publications.
func TestRelayMirrorToCentrifugeGo(t *testing.T) {
	cfg := testConfig()
	relayOn(&cfg)
	cfg.Relay.Mirror.Enabled = true
	cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, config.Namespace{Name: "relay",
		NamespaceOptions: config.NamespaceOptions{Presence: true, JoinLeave: true, AllowSubscribeForClient: true}})
	m := startServer(t, cfg)

	gc := newGoClient(t, m, "viewer", false, token(t, "viewer", time.Hour))
	sub, subscribed := gc.sub(t, "relay:final", centrifuge.SubscriptionConfig{})
	require.NoError(t, sub.Subscribe())
	require.NoError(t, gc.Connect())
	receive(t, subscribed, "spectator subscribed")

	p1 := relaytest.DialNative(t, m.RelayAddr(), &wire.Hello{NodeID: 1})
	p2 := relaytest.DialNative(t, m.RelayAddr(), &wire.Hello{NodeID: 2})
	j := p1.Join("final")
	p2.Join("final")
	p1.Send(&wire.NativeEvent{Handle: j.Handle, Sequence: 5, OpCode: 3, Payload: []byte("serve")})
	require.Equal(t, uint64(5), p2.NextEvent().Sequence)
	require.NoError(t, p1.SendDatagram(&wire.NativeEvent{Handle: j.Handle, Sequence: 6, Payload: []byte("ball")}))
	p1.Send(&wire.NativeEvent{Handle: j.Handle, Sequence: 7, Targets: []wire.NodeID{2}, Payload: []byte("secret")})
	require.Equal(t, uint64(7), p2.NextEvent().Sequence)
	p1.Send(&wire.NativeEvent{Handle: j.Handle, Sequence: 8, Payload: []byte("end")})

	var got []relay.MirroredEvent
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, p := range gc.publications() {
			var ev relay.MirroredEvent
			require.NoError(t, json.Unmarshal([]byte(p), &ev))
			got = append(got, ev)
		}
		return slices.ContainsFunc(got, func(ev relay.MirroredEvent) bool { return ev.Sequence == 8 })
	}, testenv.Wait, testenv.Tick)
	// Reliable events in order; the datagram (read apart) may come anywhere.
	var reliable []relay.MirroredEvent
	for _, ev := range got {
		require.NotEqual(t, uint64(7), ev.Sequence, "targeted events are not mirrored")
		if ev.Sequence == 6 {
			require.False(t, ev.Reliable)
		} else {
			reliable = append(reliable, ev)
		}
	}
	require.Len(t, reliable, 2)
	require.Equal(t, relay.MirroredEvent{Sender: "1", OpCode: 3, Sequence: 5, Reliable: true, Payload: []byte("serve")}, reliable[0])
	require.Equal(t, uint64(8), reliable[1].Sequence)
}

// With the Redis engine, a spectator on another process sees the mirror,
// each event once.
func TestRelayMirrorAcrossServeInstances(t *testing.T) {
	node := redisNodes(t, relayOn, func(cfg *config.Config) {
		cfg.Relay.Mirror.Enabled = true
		cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, config.Namespace{Name: "relay",
			NamespaceOptions: config.NamespaceOptions{Presence: true, JoinLeave: true, AllowSubscribeForClient: true}})
	})
	a, b := node(), node()
	gc := newGoClient(t, b, "viewer", false, token(t, "viewer", time.Hour))
	sub, subscribed := gc.sub(t, "relay:cup", centrifuge.SubscriptionConfig{})
	require.NoError(t, sub.Subscribe())
	require.NoError(t, gc.Connect())
	receive(t, subscribed, "spectator subscribed on B")

	p1 := relaytest.DialNative(t, a.RelayAddr(), &wire.Hello{NodeID: 1})
	p2 := relaytest.DialNative(t, b.RelayAddr(), &wire.Hello{NodeID: 2})
	j1 := p1.Join("cup")
	j2 := p2.Join("cup")
	p1.AwaitJoin(2) // A knows p2: p1's events reach it
	p1.Send(&wire.NativeEvent{Handle: j1.Handle, Sequence: 1})
	require.Equal(t, uint64(1), p2.NextEvent().Sequence)
	p2.Send(&wire.NativeEvent{Handle: j2.Handle, Sequence: 2})
	require.Equal(t, uint64(2), p1.NextEvent().Sequence)
	require.Eventually(t, func() bool { return len(gc.publications()) >= 2 }, testenv.Wait, testenv.Tick)
	var senders []string
	for _, p := range gc.publications() {
		var ev relay.MirroredEvent
		require.NoError(t, json.Unmarshal([]byte(p), &ev))
		senders = append(senders, ev.Sender)
	}
	require.ElementsMatch(t, []string{"1", "2"}, senders, "each event mirrored once, by its sender's process")
}

// Two `serve` processes on one Redis: ISSUN clients in no room are one
// lobby; the server API's presence of relay: lists them.
func TestRelayISSUNLobbyAcrossServeInstances(t *testing.T) {
	node := redisNodes(t, relayOn)
	a, b := node(), node()
	ca := relaytest.DialISSUN(t, a.RelayAddr(), 21)
	cb := relaytest.DialISSUN(t, b.RelayAddr(), 22)
	lobby := func(seq uint64, payload string) *wire.Event {
		return &wire.Event{Metadata: wire.Metadata{Sequence: seq}, Scope: wire.Scope{Kind: wire.ScopeBroadcast},
			TypeName: "pong::Move", Payload: []byte(payload)}
	}
	// a's process learns of cb from the bus: until then its broadcasts stay there.
	require.Eventually(t, func() bool {
		ca.Send(lobby(0, "ping"))
		select {
		case ev := <-cb.Events:
			return string(ev.Payload) == "ping"
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}, testenv.Wait, testenv.Tick)
	for i := range 20 {
		ca.Send(lobby(uint64(i+1), string(rune('a'+i))))
	}
	for i := 0; i < 20; {
		ev := cb.Next()
		if string(ev.Payload) == "ping" {
			continue
		}
		require.Equal(t, string(rune('a'+i)), string(ev.Payload), "in order")
		require.Equal(t, wire.NodeID(21), ev.Metadata.Sender)
		i++
	}
	cb.Send(&wire.Event{Scope: wire.Scope{Kind: wire.ScopeTargeted, Target: 21}, TypeName: "pong::Hi", Payload: []byte("hi")})
	for {
		if ev := ca.Next(); string(ev.Payload) == "hi" {
			require.Equal(t, wire.NodeID(22), ev.Metadata.Sender)
			break
		}
	}

	_, body := apiCall(t, b, "presence", map[string]any{"channel": relay.LobbyChannel})
	pres := body["result"].(map[string]any)["presence"].(map[string]any)
	nodes := []string{}
	for _, p := range pres {
		var e struct {
			NodeID string `json:"node_id"`
		}
		ci, err := json.Marshal(p.(map[string]any)["chan_info"])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(ci, &e), "%s", ci)
		nodes = append(nodes, e.NodeID)
	}
	require.ElementsMatch(t, []string{"21", "22"}, nodes)
}
