package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
)

// The test binary is also the sandbox: started with EnvConfig set, it
// serves plays instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv(EnvConfig) != "" {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

const testMemory = 64 << 20

type pubs struct {
	mu   sync.Mutex
	seen []string
}

func (p *pubs) Publish(_ context.Context, circle, channel string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, circle+"/"+channel+"="+string(data))
	return nil
}

func newRunner(t testing.TB, mod func(*Config)) (*Runner, *sqlite.Store, *pubs) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: ":memory:"})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	p := &pubs{}
	cfg := Config{
		Workers: 2, MaxMemory: testMemory, MaxCPU: 2 * time.Second,
		Engine: script.Config{Timeout: 10 * time.Second},
		Quota:  script.Quota{MaxKeys: 100, MaxBytes: 64 << 10},
		Store:  st, Publisher: p,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, r.Shutdown(ctx))
	})
	return r, st, p
}

func runPlay(r *Runner, src string) (string, error) {
	return r.Run(context.Background(), script.Request{Circle: "c1", Caller: "me", Script: src})
}

func requireLimit(t *testing.T, err error, kind script.ErrorKind, msg string) {
	t.Helper()
	var se *script.Error
	require.True(t, errors.As(err, &se), "want a %s error, got %v", kind, err)
	require.Equal(t, kind, se.Kind, se.Msg)
	require.Contains(t, se.ClientMessage(), msg)
}

func TestPlayBasics(t *testing.T) {
	r, st, p := newRunner(t, nil)
	out, err := runPlay(r, `print("hi", CONTEXT_ID, CALLER_ID)
store.set("a", "1")
store.set("b", "2")
store.delete("a")
publish("room", {"n": store.get("b")})
[store.get("a", "none"), store.keys(), store.delete("zz")]`)
	require.NoError(t, err)
	require.Equal(t, "hi c1 me\n[\"none\", [\"b\"], False]", out)
	v, ok, err := st.Get(context.Background(), "c1", "b")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "2", v)
	require.Equal(t, []string{`c1/room={"n":"2"}`}, p.seen)

	// A failing play writes nothing.
	_, err = runPlay(r, `store.set("c", "3")
fail("boom")`)
	requireLimit(t, err, script.KindRuntime, "boom")
	_, ok, err = st.Get(context.Background(), "c1", "c")
	require.NoError(t, err)
	require.False(t, ok)

	_, err = runPlay(r, "x = (")
	requireLimit(t, err, script.KindSyntax, "syntax")
}

// The allocation bomb of issue 8: doubling a string; the watchdog cancels
// the play before the OS limit is reached.
func TestAllocationBomb(t *testing.T) {
	r, _, _ := newRunner(t, nil)
	_, err := runPlay(r, `s = "z" * 1000000
for i in range(13):
    s = s + s
len(s)`)
	requireLimit(t, err, script.KindMemory, "memory limit exceeded (64 MiB)")
	out, err := runPlay(r, `1 + 1`)
	require.NoError(t, err)
	require.Equal(t, "2", out)
}

// One allocation far past the cap: the OS limit ends the sandbox, the
// parent names the memory limit and the pool replaces the process.
func TestSingleHugeAllocationHitsTheOSLimit(t *testing.T) {
	r, _, _ := newRunner(t, func(c *Config) { c.Workers = 1 })
	_, err := runPlay(r, `len("z" * 1000000000)`)
	requireLimit(t, err, script.KindMemory, "memory limit exceeded (64 MiB)")
	require.Eventually(t, func() bool {
		out, err := runPlay(r, `"alive"`)
		return err == nil && out == "alive"
	}, 10*time.Second, 10*time.Millisecond)
}

func TestFormattingBomb(t *testing.T) {
	r, _, _ := newRunner(t, nil)
	_, err := runPlay(r, `["z"*1000000]*2000`)
	requireLimit(t, err, script.KindOutput, "output exceeds 1048576 bytes")
	_, err = runPlay(r, `print(["z"*1000000]*2000)`)
	requireLimit(t, err, script.KindOutput, "output exceeds")
}

func TestCPULoop(t *testing.T) {
	// A long wall time: on a busy machine the niced sandbox gets little
	// CPU, and the CPU cap must be what stops it.
	r, _, _ := newRunner(t, func(c *Config) {
		c.MaxCPU, c.Engine.MaxSteps, c.Engine.Timeout = time.Second, 1<<50, time.Minute
	})
	_, err := runPlay(r, "while True:\n    pass")
	requireLimit(t, err, script.KindCPU, "cpu limit exceeded (1s)")
	out, err := runPlay(r, `"next"`)
	require.NoError(t, err)
	require.Equal(t, "next", out)
}

func TestWallTime(t *testing.T) {
	r, _, _ := newRunner(t, func(c *Config) { c.Engine.Timeout = 300 * time.Millisecond })
	_, err := runPlay(r, "while True:\n    pass")
	requireLimit(t, err, script.KindTimeout, "300ms")
}

func TestStoreFlood(t *testing.T) {
	r, st, _ := newRunner(t, nil)
	_, err := runPlay(r, `for i in range(100000):
    store.set("k%d" % i, "x" * 100)`)
	requireLimit(t, err, script.KindQuota, "limit 100")
	keys, bytes, err := st.Usage(context.Background(), "c1")
	require.NoError(t, err)
	require.Zero(t, keys, "a flood that hit the quota wrote keys")
	require.Zero(t, bytes)

	// Bytes quota: few keys, big values.
	_, err = runPlay(r, `for i in range(10):
    store.set("big%d" % i, "x" * 10000)`)
	requireLimit(t, err, script.KindQuota, "bytes, limit 65536")

	// The script cannot swallow the quota error and go on writing.
	_, err = runPlay(r, `for i in range(200):
    store.set("k%d" % i, "v")
"done"`)
	requireLimit(t, err, script.KindQuota, "keys, limit 100")
	keys, _, err = st.Usage(context.Background(), "c1")
	require.NoError(t, err)
	require.Zero(t, keys)

	// Within the quota, writes land.
	_, err = runPlay(r, `for i in range(100):
    store.set("k%d" % i, "v")`)
	require.NoError(t, err)
	keys, _, err = st.Usage(context.Background(), "c1")
	require.NoError(t, err)
	require.Equal(t, 100, keys)
}

// Several attacks at once: each fails with its limit, the parent's memory
// stays bounded, and an honest play still runs afterwards.
func TestSeveralAttacksAtOnce(t *testing.T) {
	r, _, _ := newRunner(t, func(c *Config) { c.MaxCPU = time.Second; c.Engine.MaxSteps = 1 << 50 })
	before := rssOf(t, "self")
	attacks := []struct {
		src  string
		kind script.ErrorKind
	}{
		{"s = \"z\" * 1000000\nfor i in range(13):\n    s = s + s", script.KindMemory},
		{`["z"*1000000]*2000`, script.KindOutput},
		{"while True:\n    pass", script.KindCPU},
		{"for i in range(100000):\n    store.set(\"k%d\" % i, \"x\")", script.KindQuota},
		{`len("z" * 1000000000)`, script.KindMemory},
		{"s = \"z\" * 1000000\nfor i in range(13):\n    s = s + s", script.KindMemory},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(attacks))
	for i, a := range attacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out string
			out, errs[i] = runPlay(r, a.src)
			t.Logf("attack %d: %.40q %v", i, out, errs[i])
		}()
	}
	wg.Wait()
	for i, a := range attacks {
		var se *script.Error
		if a.kind == script.KindCPU && errors.As(errs[i], &se) && se.Kind == script.KindTimeout {
			continue // a starved sandbox may reach the wall time first
		}
		requireLimit(t, errs[i], a.kind, string(a.kind))
	}
	after := rssOf(t, "self")
	require.Less(t, after-before, int64(64<<20), "the parent grew by %d MiB", (after-before)>>20)
	out, err := runPlay(r, `"ok"`)
	require.NoError(t, err)
	require.Equal(t, "ok", out)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxMemory = 1 << 20 }, "max memory must be at least 16 MiB"},
		{func(c *Config) { c.MaxCPU = time.Millisecond }, "max cpu must be at least 1s"},
		{func(c *Config) { c.Quota.MaxKeys = 0 }, "store quota must be positive"},
		{func(c *Config) { c.Workers = -1 }, "workers must be positive"},
	} {
		cfg := Config{Quota: script.Quota{MaxKeys: 1, MaxBytes: 1}}
		tc.mod(&cfg)
		_, err := New(cfg)
		require.ErrorContains(t, err, tc.want)
	}
}

// rssOf reads VmRSS of /proc/<pid>/status in bytes.
func rssOf(t testing.TB, pid string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return n << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func FuzzDecodeParentLine(f *testing.F) {
	for _, s := range []string{
		`{"type":"task","id":1,"taskId":"play","input":{"circle":"c","caller":"","script":"1"}}`,
		`{"type":"ping","id":2}`, `{"type":"cancel","id":3}`, `{"type":"shutdown","id":4}`,
		`{"type":"callReply","id":1,"call":7,"ok":true,"result":{"value":"v","found":true}}`,
		`{"type":"callReply","id":1,"call":7,"ok":false,"error":{"code":"quota","message":"m"}}`,
		`{"type":"callReply","id":1,"call":7,"ok":false}`, `{}`, `[]`, `garbage`, `{"type":"task","id":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeParentLine(line)
		if err != nil {
			return
		}
		require.NotNil(t, m.ID)
		switch m.Type {
		case "task":
			require.NotEmpty(t, m.TaskID)
		case "callReply":
			require.NotNil(t, m.Call)
			require.NotNil(t, m.OK)
			if !*m.OK {
				require.NotNil(t, m.Error)
			}
		case "ping", "cancel", "shutdown":
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
	})
}
