package worker

import (
	"context"
	"encoding/json"
	"testing"
)

// BenchmarkPoolRoundTrip measures one task through the pool to a real Node
// worker and back (serial: latency; parallel: pipelined throughput).
func BenchmarkPoolRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run(bc.name, func(b *testing.B) {
			p := mustPool(b, Config{})
			req := Request{Kind: KindTask, ID: "app.tasks.add", Input: json.RawMessage(`{"a":5,"b":3}`),
				Context: &RequestContext{Method: "POST", Path: "/__runner/task/app.tasks.add",
					Headers: map[string]string{"content-type": "application/json", "user-agent": "bench"}}}
			ctx := context.Background()
			p.pid(b) // warm
			b.ReportAllocs()
			b.ResetTimer()
			if !bc.parallel {
				for b.Loop() {
					if _, err := p.Do(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Do(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
