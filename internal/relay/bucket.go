package relay

import "time"

// bucket is a token bucket for one connection's events. It also tracks
// debt: events refused, paid back at the same rate; debt past a further
// burst means the client keeps sending beyond its rate (sustained abuse).
// It is not safe for concurrent use (one reader goroutine owns it).
type bucket struct {
	rate   float64 // tokens per second; <= 0: unlimited
	burst  float64
	tokens float64
	debt   float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends a token. It reports whether the event may pass and whether
// the connection has abused its rate long enough to be disconnected.
func (b *bucket) take(now time.Time) (ok, abuse bool) {
	if b.rate <= 0 {
		return true, false
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		gain := el * b.rate
		pay := min(gain, b.debt)
		b.debt -= pay
		b.tokens = min(b.burst, b.tokens+gain-pay)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	b.debt++
	return false, b.debt > b.burst
}
