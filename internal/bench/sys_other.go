//go:build !linux

package bench

import "github.com/prometheus/procfs"

// cpuModelName: procfs reads /proc/cpuinfo on Linux only.
func cpuModelName(procfs.FS) string { return "" }
