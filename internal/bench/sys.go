package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// selfCPU returns the user+system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNoFile lifts the soft open-files limit to the hard limit and returns the new soft limit.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return rl.Cur, nil
}

// ephemeralPorts returns the size of the local port range (net.ipv4.ip_local_port_range),
// or 28232 (the Linux default) when it cannot be read.
func ephemeralPorts() int {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 28232
	}
	return portRange(fs)
}

func portRange(fs procfs.FS) int {
	r, err := fs.SysctlInts("net.ipv4.ip_local_port_range")
	if err != nil || len(r) != 2 || r[1] < r[0] {
		return 28232
	}
	return r[1] - r[0] + 1
}

// hostLoad returns the 1-minute load average and the CPU model name, zero where /proc does not
// tell them.
func hostLoad() (load1 float64, cpuModel string) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, ""
	}
	return loadAvg(fs), cpuModelName(fs)
}

func loadAvg(fs procfs.FS) float64 {
	l, err := fs.LoadAvg()
	if err != nil {
		return 0
	}
	return l.Load1
}

// isTTY reports whether f is a character device (a terminal).
func isTTY(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// serverProbe reads the memory and CPU of the server under test, from /proc (pid) or from a
// Prometheus endpoint (process_resident_memory_bytes, process_cpu_seconds_total). The zero value
// measures nothing.
type serverProbe struct {
	pid        int
	metricsURL string
	client     *http.Client
}

func (p *serverProbe) enabled() bool { return p.pid > 0 || p.metricsURL != "" }

// rss returns the server's resident set size in bytes.
func (p *serverProbe) rss(ctx context.Context) (uint64, error) {
	if p.pid > 0 {
		return procRSS(p.pid)
	}
	if p.metricsURL != "" {
		v, err := p.metric(ctx, "process_resident_memory_bytes")
		return uint64(v), err
	}
	return 0, errors.New("no server probe configured")
}

// cpu returns the server's cumulative user+system CPU time.
func (p *serverProbe) cpu(ctx context.Context) (time.Duration, error) {
	if p.pid > 0 {
		return procCPU(p.pid)
	}
	if p.metricsURL != "" {
		v, err := p.metric(ctx, "process_cpu_seconds_total")
		return time.Duration(v * float64(time.Second)), err
	}
	return 0, errors.New("no server probe configured")
}

func (p *serverProbe) metric(ctx context.Context, name string) (float64, error) {
	c := p.client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain))) // not OpenMetrics or protobuf
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	return parseMetric(io.LimitReader(resp.Body, 16<<20), name)
}

// parseMetric returns the unlabelled sample of the gauge, counter or untyped metric name in
// Prometheus text exposition format.
func parseMetric(r io.Reader, name string) (float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel()) != 0 {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), nil
		case m.Counter != nil:
			return m.GetCounter().GetValue(), nil
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// procRSS returns VmRSS of pid (/proc/PID/status).
func procRSS(pid int) (uint64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("server rss: %w", err)
	}
	return statusRSS(p)
}

func statusRSS(p procfs.Proc) (uint64, error) {
	st, err := p.NewStatus()
	if err != nil {
		return 0, fmt.Errorf("server rss: %w", err)
	}
	if st.VmRSS == 0 { // no VmRSS line: a zombie or a kernel thread
		return 0, fmt.Errorf("server rss: no VmRSS for pid %d", p.PID)
	}
	return st.VmRSS, nil
}

// procCPU returns the user+system CPU time of pid (/proc/PID/stat).
func procCPU(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("server cpu: %w", err)
	}
	return statCPU(p)
}

func statCPU(p procfs.Proc) (time.Duration, error) {
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("server cpu: %w", err)
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}

func selfPID() int { return os.Getpid() }
