package auth

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// TestReplayCacheMemory fills the cache to DefaultMaxReplayCache and
// reports the heap it takes (the bound docs/config.md states).
func TestReplayCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a million entries")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := &replayCache{max: DefaultMaxReplayCache, seen: map[replayKey]struct{}{}}
	sig := make([]byte, 64)
	for i := 0; i < DefaultMaxReplayCache; i++ {
		binary.LittleEndian.PutUint64(sig, uint64(i))
		if err := c.add(sig, int64(1000+i%300), 0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / DefaultMaxReplayCache
	t.Logf("replay cache: %d entries, %.0f bytes each", len(c.seen), per)
	if per > 120 {
		t.Errorf("%.0f bytes per entry, want at most 120", per)
	}
	runtime.KeepAlive(c)
}
