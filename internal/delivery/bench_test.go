package delivery

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// devNullSink writes every batch to /dev/null (one system call per batch,
// like a socket write that never blocks) and counts the frames.
type devNullSink struct {
	f    *os.File
	left *atomic.Int64
	done chan struct{}
}

func (s devNullSink) WriteBatch(frames [][]byte) error {
	for _, fr := range frames {
		if _, err := s.f.Write(fr); err != nil {
			return err
		}
	}
	if s.left.Add(-int64(len(frames))) == 0 {
		s.done <- struct{}{}
	}
	return nil
}

func (devNullSink) Overflow()         {}
func (devNullSink) WriteFailed(error) {}

// BenchmarkFanoutNetworkLatency queues one frame to each of 10,000 queues
// (one fan-out) and, while the writers drain them, times one TCP round
// trip on loopback: the echo goroutine waits for network readiness as the
// API handler and the Redis client do during a fan-out. rtt-µs is that
// round trip; ns/op the whole fan-out. writers=4xGOMAXPROCS was the
// default before perf10.
func BenchmarkFanoutNetworkLatency(b *testing.B) {
	const queues = 10000
	for _, w := range []struct {
		name string
		n    int
	}{{"default", 0}, {"4xGOMAXPROCS", 4 * runtime.GOMAXPROCS(0)}} {
		b.Run("writers="+w.name, func(b *testing.B) {
			p, err := NewPool(Config{Writers: w.n, Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			client, stop := echoPair(b)
			defer stop()
			var left atomic.Int64
			done := make(chan struct{}, 1)
			qs := make([]*Queue, queues)
			for i := range qs {
				qs[i] = p.NewQueue(devNullSink{f: f, left: &left, done: done}, 0)
			}
			frame := []byte(fmt.Sprintf(`{"push":{"channel":"bench:ch0","pub":{"data":%q}}}`, "0123456789abcdef"))
			ping := []byte{1}
			var rtt time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				left.Store(queues)
				start := time.Now()
				if _, err := client.Write(ping); err != nil {
					b.Fatal(err)
				}
				for _, q := range qs {
					if err := q.Enqueue(frame); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := client.Read(ping); err != nil {
					b.Fatal(err)
				}
				rtt += time.Since(start)
				<-done
			}
			b.StopTimer()
			b.ReportMetric(float64(rtt.Microseconds())/float64(b.N), "rtt-µs")
			b.ReportMetric(float64(queues)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// echoPair returns the client end of a loopback TCP connection whose
// server end echoes every byte from its own goroutine; stop ends both.
func echoPair(b *testing.B) (net.Conn, func()) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return client, func() {
		_ = client.Close()
		_ = ln.Close()
		<-served
	}
}
