package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// countSub models a connection's queue append: it only counts.
type countSub struct{ n atomic.Int64 }

func (c *countSub) Format() hub.FormatID           { return 0 }
func (c *countSub) Deliver(string, uint64, []byte) { c.n.Add(1) }

// BenchmarkFanout measures publishing one message to N local subscribers
// of one channel (encode once, queue to each). ns/op is per publication.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := newHub(b, hub.Namespaces{})
			subs := make([]*countSub, n)
			for i := range subs {
				subs[i] = &countSub{}
				if err := h.AddSubscriber("bench", subs[i], false); err != nil {
					b.Fatal(err)
				}
			}
			data := []byte(`{"text":"hello"}`)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Publish(ctx, "bench", data, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := subs[n-1].n.Load(); got != int64(b.N) {
				b.Fatalf("last subscriber got %d of %d", got, b.N)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
