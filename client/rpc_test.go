package client

import (
	"testing"
	"time"
)

func TestBackoffJitterExtremes(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 3, Jitter: 1}
	if d := b.delay(1, 0); d != 3*time.Second {
		t.Fatalf("r=0: %v", d)
	}
	if d := b.delay(1, 0.999999); d < 0 || d > 10*time.Microsecond {
		t.Fatalf("r≈1: %v", d)
	}
	if d := b.delay(5, 0); d != 10*time.Second {
		t.Fatalf("capped: %v", d)
	}
	weird := Backoff{Initial: time.Second, Max: time.Millisecond, Multiplier: 0.5, Jitter: 7}
	if d := weird.delay(3, 0); d != time.Second {
		t.Fatalf("max below initial: %v", d)
	}
}
