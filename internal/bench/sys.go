package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 28232
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 28232
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 28232
	}
	return hi - lo + 1
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

// parseMetric finds an unlabelled sample of name in Prometheus text exposition format.
func parseMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' || !bytes.HasPrefix(line, []byte(name)) {
			continue
		}
		rest := line[len(name):]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			continue // a longer name or a labelled series
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// procRSS reads VmRSS of pid from /proc/PID/status.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("server rss: %w", err)
	}
	return parseVmRSS(b)
}

func parseVmRSS(b []byte) (uint64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(line[len("VmRSS:"):])
		if len(f) < 1 {
			break
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("server rss: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("server rss: no VmRSS line")
}

// procCPU reads utime+stime of pid from /proc/PID/stat (clock ticks of 1/100 s on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("server cpu: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after its closing paren are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("server cpu: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' : state(3) ... utime is field 14, stime 15 => indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, errors.New("server cpu: short stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("server cpu: bad stat numbers")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

func selfPID() int { return os.Getpid() }
