package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress redraws line() once a second on w while enabled; stop ends it and clears the line.
// It owns one goroutine, which stop waits for.
func progress(ctx context.Context, w io.Writer, enabled bool, line func() string) (stop func()) {
	if !enabled {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(w, "\r\033[K"+line())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}

// output is where results and progress go; tests replace it.
var output io.Writer = os.Stdout

// progressEnabled reports whether live progress should be drawn (stdout is a terminal and no
// JSON was requested).
func progressEnabled(jsonOut bool) bool {
	f, ok := output.(*os.File)
	return ok && !jsonOut && isTTY(f)
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
