package bench

import "github.com/prometheus/procfs"

// cpuModelName returns the model name of the first CPU in /proc/cpuinfo, or "".
func cpuModelName(fs procfs.FS) string {
	cpus, err := fs.CPUInfo()
	if err != nil || len(cpus) == 0 {
		return ""
	}
	return cpus[0].ModelName
}
