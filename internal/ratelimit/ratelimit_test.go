package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBucket(t *testing.T) {
	var b Bucket
	for range 3 {
		require.True(t, b.Allow(2, 3, t0)) // starts full
	}
	require.False(t, b.Allow(2, 3, t0))
	require.True(t, b.Allow(2, 3, t0.Add(500*time.Millisecond))) // 2/s: one token per 500 ms
	require.False(t, b.Allow(2, 3, t0.Add(500*time.Millisecond)))
	require.True(t, b.Allow(2, 3, t0.Add(time.Hour))) // capped at the burst
	require.True(t, b.Allow(2, 3, t0.Add(time.Hour)))
	require.True(t, b.Allow(2, 3, t0.Add(time.Hour)))
	require.False(t, b.Allow(2, 3, t0.Add(time.Hour)))
	var open Bucket
	for range 100 {
		require.True(t, open.Allow(0, 0, t0))
	}
}

func TestKeyed(t *testing.T) {
	k := NewKeyed(1, 2, 2)
	for _, key := range []string{"a", "a", "b", "b"} {
		ok, _ := k.Allow(key, t0)
		require.True(t, ok, key)
	}
	ok, wait := k.Allow("a", t0)
	require.False(t, ok)
	require.Equal(t, time.Second, wait)
	// Table full of non-full buckets: new keys share one bucket.
	ok, _ = k.Allow("c", t0)
	require.True(t, ok)
	ok, _ = k.Allow("d", t0)
	require.True(t, ok)
	ok, _ = k.Allow("e", t0)
	require.False(t, ok)
	// Refilled buckets are dropped to make room.
	ok, _ = k.Allow("f", t0.Add(3*time.Second))
	require.True(t, ok)
	require.LessOrEqual(t, len(k.buckets), 2)

	off := NewKeyed(0, 0, 1)
	for i := range 50 {
		ok, _ := off.Allow(fmt.Sprint(i), t0)
		require.True(t, ok)
	}
}
