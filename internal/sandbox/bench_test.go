package sandbox

import (
	"testing"
)

// BenchmarkPlay is one play through the sandbox pool: the task line, the
// engine in the child, the reply line.
func BenchmarkPlay(b *testing.B) {
	r, _, _ := newRunner(b, nil)
	for b.Loop() {
		if _, err := runPlay(r, "x = 40\nx + 2"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlayStore adds a store.set and a store.get: two calls back to
// the parent and one Apply transaction.
func BenchmarkPlayStore(b *testing.B) {
	r, _, _ := newRunner(b, nil)
	for b.Loop() {
		if _, err := runPlay(r, "store.set(\"k\", \"v\")\nstore.get(\"k\")"); err != nil {
			b.Fatal(err)
		}
	}
}
