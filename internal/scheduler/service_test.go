package scheduler

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigDefaultsAndErrors(t *testing.T) {
	var c Config
	require.NoError(t, c.fill())
	require.Equal(t, DefaultLease, c.Lease)
	require.Equal(t, DefaultMaxAttempts, c.MaxAttempts)
	require.Equal(t, DefaultChunkSize, c.ChunkSize)
	for _, bad := range []Config{
		{Lease: time.Millisecond}, {MaxAttempts: -1}, {BackoffBase: 2 * time.Minute, BackoffMax: time.Minute},
		{ChunkSize: -1}, {MaxConfigBytes: 1}, {MaxIterations: -1}, {AssignBatch: -1},
	} {
		require.Error(t, bad.fill(), "%+v", bad)
	}
	_, err := New(Config{})
	require.ErrorContains(t, err, "required")
}

func TestBackoffExponentialCappedWithJitter(t *testing.T) {
	s := &Service{cfg: Config{BackoffBase: time.Second, BackoffMax: 10 * time.Second}}
	for attempt, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		for range 100 {
			d := s.backoff(attempt)
			require.GreaterOrEqual(t, d, full/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, full, "attempt %d", attempt)
		}
	}
	s.cfg.BackoffBase, s.cfg.BackoffMax = 0, 0
	require.Zero(t, s.backoff(3))
}

func TestSplitJob(t *testing.T) {
	now := time.Unix(1, 0)
	cs := SplitJob("j", 2500, 1000, now)
	require.Len(t, cs, 3)
	for i, want := range []int64{1000, 1000, 500} {
		require.Equal(t, want, cs[i].Iterations)
		require.Equal(t, int64(i)*1000, cs[i].SeedOffset)
		require.Equal(t, i, cs[i].Index)
		require.Equal(t, ChunkPending, cs[i].Status)
	}
	require.Len(t, SplitJob("j", 1000, 1000, now), 1)
	require.Len(t, SplitJob("j", 1, 1000, now), 1)
	require.Len(t, SplitJob("j", 1001, 1000, now), 2)
}

func TestNodeCapacity(t *testing.T) {
	for _, tc := range []struct{ par, cores, want int }{{4, 8, 4}, {16, 8, 8}, {0, 8, 8}, {3, 0, 3}, {0, 0, 1}} {
		n := Node{MaxParallel: tc.par, TotalCores: tc.cores, Running: 1}
		require.Equal(t, tc.want, n.Capacity(), "%+v", tc)
		require.Equal(t, tc.want-1, n.Free())
	}
	require.Equal(t, 0, Node{MaxParallel: 1, TotalCores: 1, Running: 5}.Free())
}

// The pooled standard deviation equals the standard deviation of all
// samples together.
func TestAggregatePooledStd(t *testing.T) {
	groups := [][]float64{{1, 2, 3, 4}, {10, 11}, {5, 5, 6, 7, 9}}
	var all []float64
	var rs []ChunkResult
	for _, g := range groups {
		all = append(all, g...)
		m, sd := meanStd(g)
		rs = append(rs, ChunkResult{Iterations: int64(len(g)), MeanDps: m, StdDps: sd, MinDps: minOf(g), MaxDps: maxOf(g)})
	}
	a := AggregateResults(rs)
	m, sd := meanStd(all)
	require.InDelta(t, m, a.MeanDps, 1e-12)
	require.InDelta(t, sd, a.StdDps, 1e-12)
	require.Equal(t, 1.0, a.MinDps)
	require.Equal(t, 11.0, a.MaxDps)
	require.Equal(t, int64(11), a.TotalIterations)
	require.Equal(t, 3, a.ChunksCompleted)
	require.Nil(t, AggregateResults(nil))
	one := AggregateResults([]ChunkResult{{Iterations: 1, MeanDps: 5, MinDps: 5, MaxDps: 5}})
	require.Equal(t, 0.0, one.StdDps)
}

func meanStd(xs []float64) (float64, float64) {
	var s float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(xs)-1))
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

func TestDecodeResult(t *testing.T) {
	r, ok, err := DecodeResult([]byte(`{"iterations":1000,"meanDps":5.5,"stdDps":1,"minDps":2,"maxDps":9,"extra":true}`))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, ChunkResult{Iterations: 1000, MeanDps: 5.5, StdDps: 1, MinDps: 2, MaxDps: 9}, r)
	for _, other := range []string{`"x"`, `[1]`, `{"iterations":1}`, `{"iterations":1.5,"meanDps":1,"stdDps":0,"minDps":1,"maxDps":1}`,
		`{"iterations":0,"meanDps":1,"stdDps":0,"minDps":1,"maxDps":1}`, `{"iterations":1,"meanDps":1,"stdDps":-1,"minDps":1,"maxDps":1}`,
		`{"iterations":1,"meanDps":9,"stdDps":0,"minDps":1,"maxDps":2}`, `{"iterations":"1","meanDps":1,"stdDps":0,"minDps":1,"maxDps":1}`, `null`} {
		_, ok, err := DecodeResult([]byte(other))
		require.NoError(t, err, other)
		require.False(t, ok, other)
	}
	for _, bad := range []string{``, `{`, `{"a":1}x`, " "} {
		_, _, err := DecodeResult([]byte(bad))
		require.Error(t, err, bad)
	}
	_, _, err = DecodeResult(make([]byte, MaxResultBytes+1))
	require.Error(t, err)
}

func FuzzDecodeResult(f *testing.F) {
	for _, s := range []string{
		`{"iterations":1000,"meanDps":5.5,"stdDps":1,"minDps":2,"maxDps":9}`, `{"iterations":1e3,"meanDps":0,"stdDps":0,"minDps":0,"maxDps":0}`,
		`{"answer":42}`, `[]`, `"s"`, `{`, ``, `{"iterations":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Also fed split in two, as a reader would see partial input.
		for _, in := range [][]byte{raw, raw[:len(raw)/2]} {
			r, ok, err := DecodeResult(in)
			if err != nil {
				require.False(t, ok)
				continue
			}
			require.True(t, json.Valid(in))
			if ok {
				require.Positive(t, r.Iterations)
				require.LessOrEqual(t, r.MinDps, r.MeanDps)
				require.LessOrEqual(t, r.MeanDps, r.MaxDps)
				require.GreaterOrEqual(t, r.StdDps, 0.0)
				a := AggregateResults([]ChunkResult{r, r})
				require.False(t, math.IsNaN(a.MeanDps) || math.IsNaN(a.StdDps))
			}
		}
	})
}

func TestJobAndNodeJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := Job{ID: "j", OwnerID: "u", Status: JobRunning, AccessType: AccessPublic, Iterations: 2000, IterationsDone: 500,
		ConfigHash: "h", Config: json.RawMessage(`{"a":1}`), Chunks: ChunkCounts{Total: 2, Running: 1, Pending: 1}, CreatedAt: at, UpdatedAt: at.Add(1234567 * time.Microsecond), RowVersion: 7}
	b, err := json.Marshal(j)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"j","ownerId":"u","status":"running","accessType":"public","priority":0,"iterations":2000,"configHash":"h",
		"config":{"a":1},"chunks":{"total":2,"pending":1,"running":1,"completed":0,"failed":0,"cancelled":0},"progress":0.25,
		"result":null,"error":null,"createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:06.234Z","finishedAt":null,"rowVersion":7}`, string(b))
	n := Node{ID: "n", Name: "rig", TotalCores: 8, MaxParallel: 4, Running: 1, CreatedAt: at, UpdatedAt: at, RowVersion: 3}
	b, err = json.Marshal(n)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"n","name":"rig","hostname":"","platform":"","version":"","totalCores":8,"enabledCores":0,"maxParallel":4,
		"claimed":false,"ownerId":null,"online":false,"running":1,"capacity":4,"status":"","draining":false,"lastSeenAt":null,"createdAt":"2026-01-02T03:04:05Z",
		"updatedAt":"2026-01-02T03:04:05.000Z","rowVersion":3}`, string(b))
}
