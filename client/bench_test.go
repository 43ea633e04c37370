package client_test

import (
	"context"
	"testing"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/client/circletest"
)

// BenchmarkPlayRoundTrip measures one authenticated play call through the
// SDK against the in-process fake server over loopback, sequential and
// concurrent.
func BenchmarkPlayRoundTrip(b *testing.B) {
	srv := circletest.NewServer(b)
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{URL: srv.URL(), PrivateKey: mustKey(b).Hex()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Play(ctx, "echo:x"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Play(ctx, "echo:x"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
