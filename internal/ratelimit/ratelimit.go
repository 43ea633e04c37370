// Package ratelimit has the token buckets the adapters share: Bucket for
// one owner (a connection's commands) and Keyed for many keys (requests
// per client address) with bounded memory.
package ratelimit

import (
	"math"
	"net"
	"sync"
	"time"
)

// Bucket is a token bucket refilled at rate tokens per second up to
// burst; it starts full. The zero value is ready. It is not safe for
// concurrent use (its owner serialises calls; Keyed locks).
type Bucket struct {
	tokens float64
	last   time.Time
}

// Allow spends a token at now and reports whether one was there. rate <= 0
// allows everything; burst < 1 counts as 1.
func (b *Bucket) Allow(rate float64, burst int, now time.Time) bool {
	ok, _ := b.take(rate, burst, now)
	return ok
}

// take is Allow that also reports, when refused, how long until a token.
func (b *Bucket) take(rate float64, burst int, now time.Time) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	capacity := float64(max(burst, 1))
	if b.last.IsZero() {
		b.tokens = capacity
	} else if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(capacity, b.tokens+el*rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// full reports whether the bucket has refilled completely by now (its
// entry carries no state worth keeping).
func (b *Bucket) full(rate float64, burst int, now time.Time) bool {
	return b.tokens+now.Sub(b.last).Seconds()*rate >= float64(max(burst, 1))
}

// Keyed is a Bucket per key (a client address, say), each refilled at
// Rate up to Burst. It tracks at most MaxKeys keys: full buckets are
// dropped to make room, and beyond that new keys share one bucket, so a
// flood of keys can neither grow memory nor escape the limit. Safe for
// concurrent use.
type Keyed struct {
	rate    float64
	burst   int
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*Bucket
	shared  Bucket
}

// NewKeyed returns a Keyed limiter; rate <= 0 allows everything, maxKeys
// <= 0 means 10,000.
func NewKeyed(rate float64, burst, maxKeys int) *Keyed {
	if maxKeys <= 0 {
		maxKeys = 10000
	}
	return &Keyed{rate: rate, burst: burst, maxKeys: maxKeys, buckets: map[string]*Bucket{}}
}

// Allow spends one of key's tokens at now. When refused, retryAfter is
// how long until the next token (at least 1 ms).
func (k *Keyed) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if k.rate <= 0 {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[key]
	if b == nil {
		if len(k.buckets) >= k.maxKeys {
			for key, b := range k.buckets {
				if b.full(k.rate, k.burst, now) {
					delete(k.buckets, key)
				}
			}
		}
		if len(k.buckets) < k.maxKeys {
			b = &Bucket{}
			k.buckets[key] = b
		} else {
			b = &k.shared
		}
	}
	ok, retryAfter = b.take(k.rate, k.burst, now)
	if !ok && retryAfter < time.Millisecond {
		retryAfter = time.Millisecond
	}
	return ok, retryAfter
}

// Host is the limiter key of a peer address ("host:port", as
// http.Request.RemoteAddr): its host, or the whole string when it has no
// port. Forwarding headers are not trusted here; a proxy in front should
// limit itself.
func Host(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
