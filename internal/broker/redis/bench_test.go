package redis

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

type countHandler struct{ n atomic.Int64 }

func (h *countHandler) HandlePublication(string, *hub.Publication, hub.StreamPosition) { h.n.Add(1) }
func (h *countHandler) HandleJoin(string, *hub.ClientInfo)                             {}
func (h *countHandler) HandleLeave(string, *hub.ClientInfo)                            {}

// BenchmarkPublishHistory publishes 128-byte publications with history
// (size 100, TTL 5m) into 16 channels, one goroutine (serial) or
// GOMAXPROCS×8 goroutines (parallel).
func BenchmarkPublishHistory(b *testing.B) {
	opts := hub.PublishOptions{HistorySize: 100, HistoryTTL: 5 * time.Minute}
	data := make([]byte, 128)
	run := func(b *testing.B, br hub.Broker) {
		b.Run("serial", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := br.Publish(ctx, fmt.Sprint("bench", i%16), &hub.Publication{Data: data}, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
		b.Run("parallel", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(8)
			var ch atomic.Int64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				name := fmt.Sprint("bench", ch.Add(1)%16)
				for pb.Next() {
					if _, err := br.Publish(ctx, name, &hub.Publication{Data: data}, opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
	b.Run("memory", func(b *testing.B) {
		br := memory.New(nil)
		if err := br.Run(&countHandler{}); err != nil {
			b.Fatal(err)
		}
		defer br.Close(context.Background())
		run(b, br)
	})
	b.Run("redis", func(b *testing.B) {
		br, err := New(Config{Address: testenv.RedisURL(b), Prefix: testPrefix(b)})
		if err != nil {
			b.Fatal(err)
		}
		if err := br.Run(&countHandler{}); err != nil {
			b.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cleanKeys(ctx, br)
			_ = br.Close(ctx)
		}()
		for i := 0; i < 16; i++ {
			for try := 0; br.Subscribe(fmt.Sprint("bench", i)) != nil; try++ {
				if try == 500 {
					b.Fatal("PUB/SUB shard did not connect")
				}
				time.Sleep(10 * time.Millisecond) // the shard is still connecting
			}
		}
		run(b, br)
	})
}

// BenchmarkPublishIdempotent is the serial case of BenchmarkPublishHistory
// with a fresh idempotency key per publication (every call records a
// result), against a plain publish.
func BenchmarkPublishIdempotent(b *testing.B) {
	data := make([]byte, 128)
	run := func(b *testing.B, br hub.Broker) {
		for _, idem := range []bool{false, true} {
			b.Run(map[bool]string{false: "plain", true: "idempotent"}[idem], func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					opts := hub.PublishOptions{HistorySize: 100, HistoryTTL: 5 * time.Minute}
					if idem {
						opts.IdempotencyKey, opts.IdempotentResultTTL = fmt.Sprint("k", i), 5*time.Minute
					}
					if _, err := br.Publish(ctx, fmt.Sprint("bench", i%16), &hub.Publication{Data: data}, opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("memory", func(b *testing.B) {
		br := memory.New(nil)
		if err := br.Run(&countHandler{}); err != nil {
			b.Fatal(err)
		}
		defer br.Close(context.Background())
		run(b, br)
	})
	b.Run("redis", func(b *testing.B) {
		br, err := New(Config{Address: testenv.RedisURL(b), Prefix: testPrefix(b)})
		if err != nil {
			b.Fatal(err)
		}
		if err := br.Run(&countHandler{}); err != nil {
			b.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cleanKeys(ctx, br)
			_ = br.Close(ctx)
		}()
		run(b, br)
	})
}

// BenchmarkJoinPresence is a relay JOIN's presence write and its leave's
// removal in a room of 32 members: a plain AddPresence (before claims)
// or a ClaimPresence with the room's cap and the NodeId as key.
func BenchmarkJoinPresence(b *testing.B) {
	br, err := New(Config{Address: testenv.RedisURL(b), Prefix: testPrefix(b), PresenceRefresh: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cleanKeys(ctx, br)
		_ = br.Close(ctx)
	}()
	ctx := context.Background()
	chanInfo := []byte(`{"node_id":"123456789","transport":"native","process":"0123456789abcdef"}`)
	for i := range 32 {
		id := fmt.Sprint("member", i)
		if _, err := br.ClaimPresence(ctx, "room", id, &hub.ClientInfo{ClientID: id, ChanInfo: chanInfo}, hub.PresenceClaim{Key: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
	info := &hub.ClientInfo{ClientID: "joiner", UserID: "u", ChanInfo: chanInfo}
	for _, c := range []struct {
		name string
		add  func() error
	}{
		{"add", func() error { return br.AddPresence(ctx, "room", "joiner", info) }},
		{"claim", func() error {
			res, err := br.ClaimPresence(ctx, "room", "joiner", info, hub.PresenceClaim{Max: 64, Key: "1000"})
			if err == nil && !res.Added {
				err = fmt.Errorf("refused: %+v", res)
			}
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.add(); err != nil {
					b.Fatal(err)
				}
				if err := br.RemovePresence(ctx, "room", "joiner", "u"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
