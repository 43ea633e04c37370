package delivery

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

type fakeSink struct {
	mu        sync.Mutex
	batches   [][]string
	err       error
	block     chan struct{} // when set, WriteBatch waits for it to close
	blocked   chan struct{} // receives when a WriteBatch starts waiting
	overflows int
	failed    []error
}

func newSink() *fakeSink { return &fakeSink{blocked: make(chan struct{}, 16)} }

func (s *fakeSink) WriteBatch(frames [][]byte) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		s.blocked <- struct{}{}
		<-block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := make([]string, len(frames))
	for i, f := range frames {
		b[i] = string(f)
	}
	s.batches = append(s.batches, b)
	return s.err
}

func (s *fakeSink) Overflow() { s.mu.Lock(); s.overflows++; s.mu.Unlock() }

func (s *fakeSink) WriteFailed(err error) {
	s.mu.Lock()
	s.failed = append(s.failed, err)
	s.mu.Unlock()
}

func (s *fakeSink) frames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

func (s *fakeSink) numBatches() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.batches) }

// newPool returns a pool registering its metrics on its own registry
// unless cfg names one.
func newPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	p, err := NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	registries[p] = cfg.Registerer.(prometheus.Gatherer)
	return p
}

var registries = map[*Pool]prometheus.Gatherer{}

// counter reads switchboard_delivery_<name> of p's registry.
func counter(t *testing.T, p *Pool, name string) float64 {
	t.Helper()
	fams, err := registries[p].Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == "switchboard_delivery_"+name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestFramesArriveInOrderCoalesced(t *testing.T) {
	clk := clocktest.New(time.Unix(1000, 0))
	p := newPool(t, Config{Writers: 1, Clock: clk})
	s := newSink()
	s.block = make(chan struct{})
	q := p.NewQueue(s, 1<<10)
	require.NoError(t, q.Enqueue([]byte("a")))
	<-s.blocked // the writer holds "a"; the rest queues up behind it
	for _, f := range []string{"b", "c", "d"} {
		require.NoError(t, q.Enqueue([]byte(f)))
	}
	s.mu.Lock()
	close(s.block)
	s.block = nil
	s.mu.Unlock()
	require.Eventually(t, func() bool { return len(s.frames()) == 4 }, testenv.Wait, testenv.Tick, "all frames written")
	require.Equal(t, [][]string{{"a"}, {"b", "c", "d"}}, s.batches, "queued frames share one batch")
	require.Equal(t, 4.0, counter(t, p, "frames_total"))
	require.Equal(t, 2.0, counter(t, p, "batches_total"))
	require.Equal(t, 4.0, counter(t, p, "bytes_total"))
	require.Eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.active == 0 }, testenv.Wait, testenv.Tick, "an idle pool holds no writer")
	clk.Advance(DefaultWriteStall)
	require.Zero(t, clk.Pending(), "nor a stall check timer")
	require.NoError(t, q.Enqueue([]byte("e")))
	require.Eventually(t, func() bool { return len(s.frames()) == 5 }, testenv.Wait, testenv.Tick, "written after idling")
}

func TestOverflowClosesAndCallsBack(t *testing.T) {
	p := newPool(t, Config{Writers: 1, Clock: clocktest.New(time.Unix(1000, 0))})
	s := newSink()
	s.block = make(chan struct{})
	defer close(s.block)
	q := p.NewQueue(s, 10)
	require.NoError(t, q.Enqueue([]byte("first"))) // taken by the writer, no longer counted
	<-s.blocked
	require.NoError(t, q.Enqueue([]byte("12345")))
	require.Equal(t, 5, q.Room())
	require.NoError(t, q.Enqueue([]byte("12345")))
	require.ErrorIs(t, q.Enqueue([]byte("x")), ErrOverflow)
	require.ErrorIs(t, q.Enqueue([]byte("x")), ErrClosed)
	q.Overflow()
	require.Equal(t, 1, s.overflows, "called back once")
	require.Zero(t, q.Room())
	require.Equal(t, 1.0, counter(t, p, "slow_disconnects_total"))
}

func TestExplicitOverflow(t *testing.T) {
	p := newPool(t, Config{Clock: clocktest.New(time.Unix(1000, 0))})
	s := newSink()
	q := p.NewQueue(s, 0)
	require.Equal(t, DefaultQueueLimit, q.Room())
	q.Overflow()
	require.Equal(t, 1, s.overflows)
	require.ErrorIs(t, q.Enqueue([]byte("x")), ErrClosed)
}

func TestWriteErrorClosesQueue(t *testing.T) {
	p := newPool(t, Config{Clock: clocktest.New(time.Unix(1000, 0))})
	s := newSink()
	s.err = errors.New("broken pipe")
	q := p.NewQueue(s, 100)
	require.NoError(t, q.Enqueue([]byte("a")))
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.failed) == 1 }, testenv.Wait, testenv.Tick, "write failure reported")
	require.ErrorIs(t, q.Enqueue([]byte("b")), ErrClosed)
	require.Equal(t, 1.0, counter(t, p, "write_errors_total"))
}

func TestCloseDropsQueued(t *testing.T) {
	p := newPool(t, Config{Writers: 1, Clock: clocktest.New(time.Unix(1000, 0))})
	s := newSink()
	s.block = make(chan struct{})
	q := p.NewQueue(s, 100)
	require.NoError(t, q.Enqueue([]byte("a")))
	<-s.blocked
	require.NoError(t, q.Enqueue([]byte("b")))
	q.Close()
	s.mu.Lock()
	close(s.block)
	s.block = nil
	s.mu.Unlock()
	require.Eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.active == 0 }, testenv.Wait, testenv.Tick, "writer done")
	require.Equal(t, []string{"a"}, s.frames(), "the write in progress finishes, the queued frame is dropped")
	require.ErrorIs(t, q.Enqueue([]byte("c")), ErrClosed)
}

func TestStalledWriterIsReplaced(t *testing.T) {
	clk := clocktest.New(time.Unix(1000, 0))
	p := newPool(t, Config{Writers: 1, WriteStall: time.Second, Clock: clk})
	stuck, other := newSink(), newSink()
	stuck.block = make(chan struct{})
	defer close(stuck.block)
	sq, oq := p.NewQueue(stuck, 100), p.NewQueue(other, 100)
	require.NoError(t, sq.Enqueue([]byte("s")))
	<-stuck.blocked // the only writer is stuck
	require.NoError(t, oq.Enqueue([]byte("o")))
	clk.Advance(time.Second - time.Millisecond)
	require.Zero(t, other.numBatches(), "not replaced before the stall limit")
	clk.Advance(time.Millisecond)
	require.Eventually(t, func() bool { return other.numBatches() == 1 }, testenv.Wait, testenv.Tick, "a replacement writer serves the other queue")
	require.Equal(t, 1.0, counter(t, p, "stalled_writers_total"))
}

func TestManyQueuesFewWriters(t *testing.T) {
	p := newPool(t, Config{Writers: 2})
	sinks := make([]*fakeSink, 200)
	var wg sync.WaitGroup
	for i := range sinks {
		sinks[i] = newSink()
		q := p.NewQueue(sinks[i], 1<<10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				_ = q.Enqueue([]byte{byte(j)})
			}
		}()
	}
	wg.Wait()
	for _, s := range sinks {
		require.Eventually(t, func() bool { return len(s.frames()) == 10 }, testenv.Wait, testenv.Tick, "every frame written")
		for j, f := range s.frames() {
			require.Equal(t, string([]byte{byte(j)}), f)
		}
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	newPool(t, Config{Registerer: reg})
	_, err := NewPool(Config{Registerer: reg})
	require.Error(t, err, "a second pool on the same registry is refused")
	fams, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, fams, 6)
}
