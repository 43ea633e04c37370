//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// dataOverhead is what the Go runtime maps besides the heap (stacks, GC
// metadata, arena rounding); RLIMIT_DATA is 2×MaxMemory plus it, since a
// growing value briefly holds its old and new copies.
const dataOverhead = 512 << 20

// limitSelf applies the sandbox's OS limits to the calling process: one P,
// a GC memory target near the cap, RLIMIT_DATA as the hard stop and a
// lower scheduling priority for every thread (Linux niceness is per
// thread; threads started later inherit it).
func limitSelf(cc childConfig) error {
	runtime.GOMAXPROCS(1)
	debug.SetMemoryLimit(cc.MaxMemory + cc.MaxMemory/4 + 32<<20)
	lim := uint64(2*cc.MaxMemory+dataOverhead) * raceFactor
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: lim, Max: lim}); err != nil {
		return fmt.Errorf("set RLIMIT_DATA: %w", err)
	}
	if cc.Nice > 0 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, cc.Nice); err != nil {
				return fmt.Errorf("set priority: %w", err)
			}
		}
	}
	return nil
}

// setCPULimit sets the soft RLIMIT_CPU to the CPU time used so far plus d,
// so that each play gets d of CPU before SIGXCPU.
func setCPULimit(d time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CPU, &cur); err != nil {
		return
	}
	soft := uint64((used+d)/time.Second) + 1
	if soft > cur.Max {
		soft = cur.Max
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: soft, Max: cur.Max})
}

func notifyXCPU() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGXCPU)
	return ch, func() { signal.Stop(ch) }
}

// exitLimit names the limit behind a sandbox's exit: the Go runtime exits
// with status 2 when an allocation fails (RLIMIT_DATA), the kernel's OOM
// killer sends SIGKILL, the child exits with exitCPU on a repeated
// SIGXCPU. It returns "" for anything else.
func exitLimit(ee *exec.ExitError) script.ErrorKind {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return ""
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 2, ws.Signaled() && ws.Signal() == syscall.SIGKILL,
		raceFactor > 1 && ws.Exited() && ws.ExitStatus() == 66: // ThreadSanitizer out of memory
		return script.KindMemory
	case ws.Exited() && ws.ExitStatus() == exitCPU, ws.Signaled() && ws.Signal() == syscall.SIGXCPU:
		return script.KindCPU
	}
	return ""
}
