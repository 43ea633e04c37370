package circle_test

import (
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// benchPlay measures play round trips over real WebSockets: request frame,
// dispatch, Starlark run, response frame. conns clients play in parallel,
// each sequentially.
func benchPlay(b *testing.B, c key, o stackOpts, conns int) {
	o.keys = []string{c.comp}
	s := newStack(b, o)
	clients := make([]*client, conns)
	const src = "x = 40\nx + 2"
	for i := range clients {
		clients[i] = dial(b, s.url+"/"+c.comp)
		if got := clients[i].play(src); got != "42" {
			b.Fatalf("got %q", got)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / conns
	for i, cl := range clients {
		n := per
		if i == 0 {
			n += b.N % conns
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < n; j++ {
				cl.play(src)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkPlayInProcess(b *testing.B) { benchPlay(b, newKey(b), stackOpts{}, 1) }

func BenchmarkPlayInProcess4Conns(b *testing.B) { benchPlay(b, newKey(b), stackOpts{}, 4) }

func BenchmarkPlayRedis(b *testing.B) {
	url := testenv.RedisURL(b)
	c := newKey(b)
	benchPlay(b, c, stackOpts{player: redisPlayer(b, url, []string{c.comp}, false)}, 1)
}

func BenchmarkPlayRedis4Conns(b *testing.B) {
	url := testenv.RedisURL(b)
	c := newKey(b)
	benchPlay(b, c, stackOpts{player: redisPlayer(b, url, []string{c.comp}, false)}, 4)
}
