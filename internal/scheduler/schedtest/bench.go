package schedtest

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// BenchNodes is the number of simulated nodes of the throughput benchmark.
const BenchNodes = 100

// BenchThroughput measures chunks completed per second with BenchNodes
// simulated online nodes of capacity 4 completing trivial chunks as soon
// as they are published: b.N chunks in jobs of up to 10,000 chunks, from
// the first CreateJob to the last completion (wall clock).
func BenchThroughput(b *testing.B, store scheduler.Store) {
	e := NewEnv(b, store, scheduler.Config{Clock: clock.Real, ProgressInterval: scheduler.DefaultProgressInterval})
	var nodes []SimNode
	for range BenchNodes {
		nodes = append(nodes, e.Node(b, "alice", 4, 4, true))
	}
	sim := NewSimulator(e.Hub, nodes, BenchNodes, e.Svc) // one client per node, as 100 nodes would post
	defer sim.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	left := b.N
	for left > 0 {
		n := min(left, 10_000)
		_, err := e.Svc.CreateJob(context.Background(), "alice", scheduler.JobSpec{Config: json.RawMessage(`{"bench":true}`), Iterations: int64(n) * scheduler.DefaultChunkSize})
		require.NoError(b, err)
		left -= n
	}
	for sim.Completed() < b.N {
		time.Sleep(time.Millisecond) // benchmark wait: the timer measures it
	}
	el, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "chunks/s")
	// CPU time of the whole process (scheduler, store, simulated nodes)
	// per chunk: what the machine's load does not change.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/chunk")
	sim.mu.Lock()
	defer sim.mu.Unlock()
	require.Empty(b, sim.fails)
}

// BenchFirstAssignment measures the time from CreateJob returning to the
// chunk's publication to an online node, one single-chunk job at a time;
// it reports the median and p99.
func BenchFirstAssignment(b *testing.B, store scheduler.Store) {
	e := NewEnv(b, store, scheduler.Config{Clock: clock.Real, ProgressInterval: scheduler.DefaultProgressInterval})
	node := e.Node(b, "alice", 4, 4, true)
	got := make(chan scheduler.Assignment, 16)
	e.Hub.OnPublish(func(channel string, data []byte) {
		if strings.HasPrefix(channel, "chunks:") {
			var a scheduler.Assignment
			_ = json.Unmarshal(data, &a)
			got <- a
		}
	})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		_, err := e.Svc.CreateJob(context.Background(), "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: 1})
		require.NoError(b, err)
		a := <-got
		lat = append(lat, time.Since(start))
		_, err = e.Svc.CompleteChunk(context.Background(), node.Key, a.ID, a.LeaseID, Result(a))
		require.NoError(b, err)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchPending measures a Service holding pending chunks: the Go heap in
// use after creating a job of pending chunks (no node online; the chunks
// live in the store, not in the Service), and the time of an assignment
// pass that leases 4 of them once a node comes online.
func BenchPending(b *testing.B, store scheduler.Store, pending int) {
	for range b.N {
		b.StopTimer()
		e := NewEnv(b, store, scheduler.Config{Clock: clock.Real, ProgressInterval: scheduler.DefaultProgressInterval})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rss0 := rssBytes()
		b.StartTimer()
		cr, err := e.Svc.CreateJob(context.Background(), "alice", scheduler.JobSpec{Config: json.RawMessage(`{}`), Iterations: int64(pending) * scheduler.DefaultChunkSize})
		require.NoError(b, err)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-growth-MiB")
		// RSS includes the SQLite page cache (modernc allocates it outside
		// the Go heap).
		b.ReportMetric(float64(rssBytes()-rss0)/(1<<20), "rss-growth-MiB")
		node := e.Node(b, "alice", 4, 4, false)
		start := time.Now()
		e.Hub.Join(node.ID, node.Client)
		for len(e.Hub.Published(scheduler.ChunksChannel(node.ID))) < 4 {
			time.Sleep(100 * time.Microsecond)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "assign-4-ms")
		_, err = e.Svc.CancelJob(context.Background(), scheduler.Viewer{Admin: true}, cr.JobID)
		require.NoError(b, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(b, e.Svc.Shutdown(ctx))
		cancel()
		b.StartTimer()
	}
}

// processCPU is the user+system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is the process's resident set size (Linux; 0 elsewhere).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
