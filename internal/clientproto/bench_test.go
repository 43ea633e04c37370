package clientproto

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// countingTransport discards writes, counting the protocol messages in
// them (JSON: newline-separated).
type countingTransport struct{ msgs *atomic.Int64 }

func (c countingTransport) Write(data []byte) error {
	n := int64(1)
	for _, b := range data {
		if b == '\n' {
			n++
		}
	}
	c.msgs.Add(n)
	return nil
}
func (c countingTransport) Close(hub.Disconnect) {}

// BenchmarkSessionFanout publishes into one channel with N subscribed
// sessions: encode once, queue per session, coalescing writers. ns/op is
// per publication delivered to all N sessions.
func BenchmarkSessionFanout(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(),
				Namespaces: hub.Namespaces{Default: hub.ChannelOptions{AllowSubscribeForClient: true}}})
			if err != nil {
				b.Fatal(err)
			}
			srv, err := NewServer(Config{Hub: h, Tokens: auth.NewTokenVerifier(secret, "", ""), QueueMaxSize: 64 << 20, PingInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			var msgs atomic.Int64
			token := tok(b, "bench")
			sessions := make([]*Session, n)
			for i := range sessions {
				s := srv.NewSession(countingTransport{&msgs}, FormatJSON)
				s.HandleMessage([]byte(`{"id":1,"connect":{"token":"` + token + `"}}` + "\n" + `{"id":2,"subscribe":{"channel":"bench"}}`))
				sessions[i] = s
			}
			require.Eventually(b, func() bool { return msgs.Load() >= int64(2*n) }, testenv.Wait, time.Millisecond, "every session subscribed")
			msgs.Store(0)
			data := []byte(`{"text":"hello"}`)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Publish(ctx, "bench", data, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(b.N) * int64(n)
			require.Eventually(b, func() bool { return msgs.Load() >= want }, testenv.Wait, 100*time.Microsecond, "every publication delivered")
			b.StopTimer()
			b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
			for _, s := range sessions {
				s.Closed()
			}
			_ = h.Shutdown(ctx)
			srv.Close()
		})
	}
}
