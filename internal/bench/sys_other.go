//go:build !linux

package bench

import (
	"errors"

	"github.com/prometheus/procfs"
)

// cpuModelName: procfs reads /proc/cpuinfo on Linux only.
func cpuModelName(procfs.FS) string { return "" }

// udpPortDrops: the kernel's socket drop counters are read on Linux only.
func udpPortDrops(int) (uint64, error) { return 0, errUnsupported }

var errUnsupported = errors.New("not available on this system")
