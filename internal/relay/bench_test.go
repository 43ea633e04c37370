package relay

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/relay/relaytest"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Loopback fan-out through a whole relay: one sender, seven receivers in
// a room of eight, 64-byte payloads; the timer stops when every receiver
// has every event. deliveries/s counts receptions.

const benchRoom = 8

var benchPayload = []byte(strings.Repeat("p", 64))

// readAll reads n events on every client at once: reading them one
// after another would leave the others' flow-control windows full for
// long runs (-benchtime 3s) and stall the relay's writes to them.
func readAll[C any, E any](clients []C, n int, next func(C) E) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				next(c)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkNativeRoomFanout(b *testing.B) {
	s := newTestServer(b, func(c *Config) { c.EventRate = -1; c.QueueLimit = 16 << 20 })
	clients := make([]*relaytest.Native, benchRoom)
	var h uint32
	for i := range clients {
		clients[i] = relaytest.DialNative(b, s.Addr().String(), &wire.Hello{NodeID: wire.NodeID(i + 1)})
		h = clients[i].Join("bench").Handle
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := range b.N {
			clients[0].Send(&wire.NativeEvent{Handle: h, Sequence: uint64(i), Payload: benchPayload})
		}
	}()
	readAll(clients[1:], b.N, (*relaytest.Native).NextEvent)
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64((benchRoom-1)*b.N)/el.Seconds(), "deliveries/s")
}

func BenchmarkISSUNRoomFanout(b *testing.B) {
	s := newTestServer(b, func(c *Config) { c.EventRate = -1; c.QueueLimit = 16 << 20 })
	clients := make([]*relaytest.ISSUN, benchRoom)
	for i := range clients {
		clients[i] = relaytest.DialISSUN(b, s.Addr().String(), wire.NodeID(i+1))
		clients[i].Send(&wire.Event{Scope: wire.Scope{Kind: wire.ScopeToServer}, TypeName: "bench::SwitchboardJoin",
			Payload: wire.RoomRequest{Room: "bench"}.Append(nil)})
		clients[i].Next() // Joined: one join at a time, so the presence counts below hold
	}
	for i, c := range clients { // the later members' presence
		for range benchRoom - 1 - i {
			c.Next()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := range b.N {
			ev := &wire.Event{Scope: wire.Scope{Kind: wire.ScopeBroadcast}, Metadata: wire.Metadata{Sequence: uint64(i)},
				TypeName: "bench::Move", Payload: benchPayload}
			if clients[0].SendRaw(wire.AppendEventFrame(nil, ev)) != nil {
				return
			}
		}
	}()
	readAll(clients[1:], b.N, (*relaytest.ISSUN).Next)
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64((benchRoom-1)*b.N)/el.Seconds(), "deliveries/s")
}
