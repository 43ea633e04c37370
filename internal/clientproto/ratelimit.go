package clientproto

import "time"

// rateLimiter is a token bucket refilled at limit tokens per second with a
// burst of limit. The zero value with limit 0 allows everything.
type rateLimiter struct {
	tokens float64
	last   time.Time
}

func (r *rateLimiter) allow(limit int, now time.Time) bool {
	if limit <= 0 {
		return true
	}
	if r.last.IsZero() {
		r.tokens = float64(limit)
	} else {
		r.tokens += now.Sub(r.last).Seconds() * float64(limit)
		if r.tokens > float64(limit) {
			r.tokens = float64(limit)
		}
	}
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}
