//go:build !linux

package sandbox

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// limitSelf applies what is portable: one P and the GC memory target. The
// OS limits (RLIMIT_DATA, RLIMIT_CPU, niceness) are Linux only; elsewhere
// the watchdog and the parent's wall-time kill remain.
func limitSelf(cc childConfig) error {
	runtime.GOMAXPROCS(1)
	debug.SetMemoryLimit(cc.MaxMemory + cc.MaxMemory/4 + 32<<20)
	return nil
}

func setCPULimit(time.Duration) {}

func notifyXCPU() (<-chan os.Signal, func()) { return nil, func() {} }

func exitLimit(*exec.ExitError) script.ErrorKind { return "" }
