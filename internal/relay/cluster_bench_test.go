package relay

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// countingBus counts what the publisher hands it.
type countingBus struct {
	nopBus
	n atomic.Int64
}

func (b *countingBus) Publish(_ context.Context, msgs []hub.TopicMessage) error {
	b.n.Add(int64(len(msgs)))
	return nil
}

// What the fan-out pays per event for the other processes and the
// spectators (room.extend): nothing remote (the memory engine's case is a
// nil check before it), a remote member (envelope copy and queue), and a
// mirrored room over its cap.
func BenchmarkRoomExtend(b *testing.B) {
	frame := wire.AppendMessage(nil, &wire.NativeEvent{Handle: 1, Sender: 9, Payload: benchPayload})
	for _, c := range []struct {
		name           string
		remote, mirror bool
	}{{"no remote", false, false}, {"remote member", true, false}, {"mirror over cap", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			bus := &countingBus{}
			s := newTestServer(b, func(cfg *Config) {
				cfg.Bus = bus
				if c.mirror {
					cfg.Mirror = MirrorConfig{Enabled: true, Rate: 1, Burst: 1}
					cfg.MirrorTo = &mirrorRecorder{pubs: map[string][]MirroredEvent{}}
				}
			})
			br, err := s.cluster.acquire("bench")
			if err != nil {
				b.Fatal(err)
			}
			defer s.cluster.release(br)
			r := &room{srv: s.Server, name: "bench", channel: "relay:bench", transport: transportNative, bus: br, mirror: s.mirror.forRoom("bench")}
			if c.remote {
				br.mu.Lock()
				br.putRemoteLocked(remoteMember{node: 2, sid: "x"})
				br.mu.Unlock()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.extend(frame, false, nil)
			}
		})
	}
}

// BenchmarkLobbyRemoteJoinLeave is a remote join then leave of the lobby
// with size remote members already in it (O(1): the same cost for any
// size).
func BenchmarkLobbyRemoteJoinLeave(b *testing.B) {
	for _, size := range []int{10, 10000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := newTestServer(b, func(c *Config) { c.Bus = nopBus{} })
			cl := s.cluster
			for !cl.lobbySynced() {
				runtime.Gosched()
			}
			for i := range size {
				cl.handle(LobbyChannel, lobbyMemberFrame(busJoin, i+1))
			}
			join, leave := lobbyMemberFrame(busJoin, size+1), lobbyMemberFrame(busLeave, size+1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				cl.handle(LobbyChannel, slices.Clone(join))
				cl.handle(LobbyChannel, slices.Clone(leave))
			}
		})
	}
}
