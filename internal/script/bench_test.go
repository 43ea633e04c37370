package script_test

import (
	"context"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// BenchmarkRun measures parse + compile + run of a small script, the
// in-process cost of one play without transport.
func BenchmarkRun(b *testing.B) {
	e := newEngine(b, script.Config{Store: &memStore{}})
	req := script.Request{Circle: "c", Script: "x = 40\nx + 2"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.Run(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunStore adds a store.set and store.get on SQLite-like fake.
func BenchmarkRunStore(b *testing.B) {
	e := newEngine(b, script.Config{Store: &memStore{}})
	req := script.Request{Circle: "c", Script: "store.set('k', 'v')\nstore.get('k')"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.Run(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
