package client

import (
	"math"
	"math/rand/v2"
	"time"
)

// Default reconnection backoff parameters.
const (
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.2
)

// Backoff describes the delay between reconnection attempts: attempt n (from
// 0) waits base(n) = min(Max, Initial·Multiplier^n) minus a random fraction of
// up to Jitter of it, so every delay lies in [base(n)·(1-Jitter), base(n)] and
// never exceeds Max. Zero fields take the defaults above.
type Backoff struct {
	// Initial is the base delay before the first retry. Zero means 500ms.
	Initial time.Duration
	// Max caps every delay. Zero means 30s; values below Initial are raised to Initial.
	Max time.Duration
	// Multiplier grows the base delay per attempt. Zero means 2; values below 1 mean 1.
	Multiplier float64
	// Jitter is the fraction of the delay that is randomised, in [0, 1].
	// Zero means 0.2; a negative value disables jitter; values above 1 mean 1.
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	switch {
	case b.Multiplier == 0:
		b.Multiplier = DefaultBackoffMultiplier
	case b.Multiplier < 1 || math.IsNaN(b.Multiplier):
		b.Multiplier = 1
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter < 0 || math.IsNaN(b.Jitter):
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Base returns the un-jittered delay for attempt n (negative n counts as 0).
func (b Backoff) Base(n int) time.Duration {
	b = b.withDefaults()
	if n < 0 {
		n = 0
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(n))
	if math.IsInf(d, 0) || math.IsNaN(d) || d >= float64(b.Max) {
		return b.Max
	}
	return time.Duration(d)
}

// Delay returns the jittered delay for attempt n. It is safe for concurrent use.
func (b Backoff) Delay(n int) time.Duration {
	return b.delay(n, rand.Float64())
}

// delay applies jitter with r in [0, 1).
func (b Backoff) delay(n int, r float64) time.Duration {
	b = b.withDefaults()
	base := b.Base(n)
	return base - time.Duration(float64(base)*b.Jitter*r)
}
