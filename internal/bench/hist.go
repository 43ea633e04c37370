package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram geometry: values below 2^histSubBits are exact; above, each power of two is split
// into 2^(histSubBits-1) linear sub-buckets, so the relative error is below 1/2^(histSubBits-1)
// (0.8 % with histSubBits = 8). Values are int64 nanoseconds; negative values record as 0.
const (
	histSubBits  = 8
	histSubCount = 1 << histSubBits
	histHalf     = histSubCount / 2
	histBuckets  = histSubCount + (63-histSubBits)*histHalf // int64 values have at most 63 bits
)

// Histogram is an HDR-style log-linear histogram of non-negative int64 values (nanoseconds
// here). Record is safe for concurrent use and lock-free; readers (Quantile, Snapshot) see a
// consistent-enough view for progress display and an exact one once recording has stopped.
// The zero value is ready to use. It takes about 60 KB of memory whatever the range.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Int64
	min    atomic.Int64 // stored as value+1 so that zero means "unset"
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < histSubCount {
		return int(u)
	}
	shift := bits.Len64(u) - histSubBits // >= 1
	return histSubCount + (shift-1)*histHalf + int(u>>uint(shift)) - histHalf
}

// bucketLow returns the smallest value that maps to bucket i.
func bucketLow(i int) int64 {
	if i < histSubCount {
		return int64(i)
	}
	j := i - histSubCount
	shift := j/histHalf + 1
	sub := j%histHalf + histHalf
	return int64(uint64(sub) << uint(shift))
}

// bucketHigh returns the largest value that maps to bucket i.
func bucketHigh(i int) int64 {
	if i+1 >= histBuckets {
		return math.MaxInt64
	}
	return bucketLow(i+1) - 1
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && v+1 >= m) || h.min.CompareAndSwap(m, v+1) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Snapshot copies the bucket counts; Sub of two snapshots gives the values recorded between
// them (used for the "current p99" of the live progress line).
func (h *Histogram) Snapshot() *HistSnapshot {
	s := &HistSnapshot{counts: make([]uint64, histBuckets)}
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.total += c
	}
	s.sum = h.sum.Load()
	s.max = h.max.Load()
	if m := h.min.Load(); m > 0 {
		s.min = m - 1
	}
	return s
}

// Merge adds every count of o into h. o must not be recorded to concurrently.
func (h *Histogram) Merge(o *Histogram) {
	s := o.Snapshot()
	for i, c := range s.counts {
		if c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(s.total)
	h.sum.Add(s.sum)
	if s.total > 0 {
		for {
			m := h.max.Load()
			if s.max <= m || h.max.CompareAndSwap(m, s.max) {
				break
			}
		}
		for {
			m := h.min.Load()
			if (m != 0 && s.min+1 >= m) || h.min.CompareAndSwap(m, s.min+1) {
				break
			}
		}
	}
}

// Quantile returns the value at quantile q (0..1) of everything recorded so far.
func (h *Histogram) Quantile(q float64) int64 { return h.Snapshot().Quantile(q) }

// HistSnapshot is an immutable copy of a Histogram's counts.
type HistSnapshot struct {
	counts   []uint64
	total    uint64
	sum      uint64
	min, max int64
}

// Sub returns the counts recorded after prev was taken (min/max are those of s).
func (s *HistSnapshot) Sub(prev *HistSnapshot) *HistSnapshot {
	d := &HistSnapshot{counts: make([]uint64, len(s.counts)), min: s.min, max: s.max}
	for i := range s.counts {
		var p uint64
		if prev != nil {
			p = prev.counts[i]
		}
		d.counts[i] = s.counts[i] - p
		d.total += d.counts[i]
	}
	d.sum = s.sum
	if prev != nil {
		d.sum -= prev.sum
	}
	return d
}

// Count is the number of values in the snapshot.
func (s *HistSnapshot) Count() uint64 { return s.total }

// Quantile returns the value at quantile q in [0,1]: the upper edge of the bucket holding the
// ceil(q*count)-th smallest value, clamped to the recorded maximum. It returns 0 when empty.
func (s *HistSnapshot) Quantile(q float64) int64 {
	if s.total == 0 {
		return 0
	}
	if q <= 0 {
		return s.min
	}
	if q > 1 {
		q = 1
	}
	rank := uint64(math.Ceil(q * float64(s.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			v := bucketHigh(i)
			if s.max > 0 && v > s.max {
				v = s.max
			}
			return v
		}
	}
	return s.max
}

// Mean returns the arithmetic mean, 0 when empty.
func (s *HistSnapshot) Mean() float64 {
	if s.total == 0 {
		return 0
	}
	return float64(s.sum) / float64(s.total)
}

// Latency is the summary of a latency histogram as printed and written to JSON (milliseconds).
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

// Summary returns the percentiles of the snapshot in milliseconds.
func (s *HistSnapshot) Summary() Latency {
	if s.total == 0 {
		return Latency{}
	}
	return Latency{
		Count: s.total,
		Mean:  s.Mean() / float64(time.Millisecond),
		P50:   ms(s.Quantile(0.50)),
		P90:   ms(s.Quantile(0.90)),
		P99:   ms(s.Quantile(0.99)),
		P999:  ms(s.Quantile(0.999)),
		Max:   ms(s.max),
	}
}
