package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"github.com/stretchr/testify/require"
)

func TestParseMetric(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes{a="b"} 5
process_resident_memory_bytes 1.2345e+07
# TYPE process_resident_memory_bytes_extra gauge
process_resident_memory_bytes_extra 1
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 3.5
untyped_thing 7
`
	for name, want := range map[string]float64{
		"process_resident_memory_bytes":       1.2345e7,
		"process_resident_memory_bytes_extra": 1,
		"process_cpu_seconds_total":           3.5,
		"untyped_thing":                       7,
	} {
		v, err := parseMetric(strings.NewReader(text), name)
		require.NoError(t, err, name)
		require.Equal(t, want, v, name)
	}

	_, err := parseMetric(strings.NewReader("foo 1\n"), "process_resident_memory_bytes")
	require.ErrorContains(t, err, "not found")
	_, err = parseMetric(strings.NewReader(`only{a="b"} 1`+"\n"), "only")
	require.ErrorContains(t, err, "not found", "a labelled series is not the process figure")
	_, err = parseMetric(strings.NewReader("process_resident_memory_bytes one\n"), "process_resident_memory_bytes")
	require.ErrorContains(t, err, "metrics:")
}

func TestServerProbeMetrics(t *testing.T) {
	var accept atomic.Value
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept.Store(r.Header.Get("Accept"))
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte("# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 2.5e+07\n" +
			"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n"))
	}))
	defer srv.Close()
	p := &serverProbe{metricsURL: srv.URL}
	ctx := context.Background()

	rss, err := p.rss(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(25_000_000), rss)
	require.Contains(t, accept.Load(), "text/plain")
	cpu, err := p.cpu(ctx)
	require.NoError(t, err)
	require.Equal(t, 1250*time.Millisecond, cpu)

	status.Store(http.StatusServiceUnavailable)
	_, err = p.rss(ctx)
	require.ErrorContains(t, err, "status 503")
}

// fakeProc lays out files under a temporary directory shaped like /proc.
func fakeProc(t *testing.T, files map[string]string) procfs.FS {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		path := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	fs, err := procfs.NewFS(root)
	require.NoError(t, err)
	return fs
}

func TestProcReaders(t *testing.T) {
	fs := fakeProc(t, map[string]string{
		"1234/status": "Name:\tx\nState:\tS (sleeping)\nVmRSS:\t    1234 kB\nThreads:\t4\n",
		// The command name may hold spaces and parentheses; utime 250 and stime 30 ticks.
		"1234/stat": "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 4 0 100 " +
			"12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		"77/status":                        "Name:\tzombie\nState:\tZ (zombie)\n",
		"sys/net/ipv4/ip_local_port_range": "32768\t60999\n",
		"loadavg":                          "0.52 0.58 0.59 1/123 4567\n",
	})
	p, err := fs.Proc(1234)
	require.NoError(t, err)
	rss, err := statusRSS(p)
	require.NoError(t, err)
	require.Equal(t, uint64(1234*1024), rss)
	cpu, err := statCPU(p)
	require.NoError(t, err)
	require.Equal(t, 2800*time.Millisecond, cpu)

	z, err := fs.Proc(77)
	require.NoError(t, err)
	_, err = statusRSS(z)
	require.ErrorContains(t, err, "no VmRSS")
	_, err = statCPU(z)
	require.ErrorContains(t, err, "server cpu")
	_, err = fs.Proc(5)
	require.Error(t, err, "no such pid")

	require.Equal(t, 28232, portRange(fs))
	require.Equal(t, 0.52, loadAvg(fs))

	bad := fakeProc(t, map[string]string{"sys/net/ipv4/ip_local_port_range": "60999 32768\n"})
	require.Equal(t, 28232, portRange(bad), "an inverted range falls back to the default")
	require.Equal(t, 0.0, loadAvg(bad), "no loadavg")
	odd := fakeProc(t, map[string]string{"sys/net/ipv4/ip_local_port_range": "1024 65535\n"})
	require.Equal(t, 64512, portRange(odd))
}

func TestCPUModelName(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "386") {
		t.Skip("the fake cpuinfo below is in the x86 layout")
	}
	fs := fakeProc(t, map[string]string{"cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\n" +
		"model name\t: AMD EPYC Test\nflags\t\t: fpu\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n" +
		"model name\t: AMD EPYC Test\nflags\t\t: fpu\n"})
	require.Equal(t, "AMD EPYC Test", cpuModelName(fs))
	require.Equal(t, "", cpuModelName(fakeProc(t, nil)))
}

func TestProcSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux")
	}
	self, err := procRSS(selfPID())
	require.NoError(t, err)
	require.Greater(t, self, uint64(1<<20))
	_, err = procCPU(selfPID())
	require.NoError(t, err)
	_, err = procRSS(-1)
	require.Error(t, err)
	require.Greater(t, ephemeralPorts(), 0)
	if runtime.GOARCH == "amd64" {
		require.NotEmpty(t, machine().CPUModel)
	}
}
