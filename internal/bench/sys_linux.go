package bench

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// cpuModelName returns the model name of the first CPU in /proc/cpuinfo, or "".
func cpuModelName(fs procfs.FS) string {
	cpus, err := fs.CPUInfo()
	if err != nil || len(cpus) == 0 {
		return ""
	}
	return cpus[0].ModelName
}

// udpPortDrops sums the kernel's receive drops (/proc/net/udp{,6}) of the
// local UDP sockets bound to port: datagrams lost because the socket's
// buffer was full, which a QUIC server sees as loss.
func udpPortDrops(port int) (uint64, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, err
	}
	var sum uint64
	var found bool
	for _, read := range []func() (procfs.NetUDP, error){fs.NetUDP, fs.NetUDP6} {
		lines, err := read()
		if err != nil {
			continue
		}
		for _, l := range lines {
			if int(l.LocalPort) == port && l.Drops != nil {
				sum += *l.Drops
				found = true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no local UDP socket on port %d", port)
	}
	return sum, nil
}
