package script_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is an in-memory script.Store.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) Get(_ context.Context, c, k string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[c+"\x00"+k]
	return v, ok, nil
}
func (s *memStore) Set(_ context.Context, c, k, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[c+"\x00"+k] = v
	return nil
}
func (s *memStore) Delete(_ context.Context, c, k string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[c+"\x00"+k]
	delete(s.m, c+"\x00"+k)
	return ok, nil
}
func (s *memStore) Keys(_ context.Context, c, p string, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, c+"\x00"+p) {
			out = append(out, strings.TrimPrefix(k, c+"\x00"))
		}
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

type pub struct {
	circle, channel, data string
}
type fakePublisher struct {
	mu  sync.Mutex
	got []pub
}

func (p *fakePublisher) Publish(_ context.Context, c, ch string, d []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch == "fail" {
		return errors.New("unknown channel")
	}
	p.got = append(p.got, pub{c, ch, string(d)})
	return nil
}

func newEngine(t testing.TB, cfg script.Config) *script.Engine {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	e, err := script.New(cfg)
	require.NoError(t, err)
	return e
}

func TestOutputSemantics(t *testing.T) {
	e := newEngine(t, script.Config{Store: &memStore{}})
	cases := []struct{ src, want string }{
		{"x = 40\nx + 2", "42"},
		{`print("hi")`, "hi\n"},
		{"print('a')\nprint('b')\n'c'", "a\nb\nc"},
		{"None", ""},
		{"x = 1", ""},
		{"[1, 'a']", `[1, "a"]`},
		{"def f():\n  return 3\nf()", "3"},
		{"CONTEXT_ID + '/' + CALLER_ID", "circ/me"},
		{"for i in range(3):\n  print(i)", "0\n1\n2\n"},
		{"i = 0\nwhile i < 3:\n  i += 1\ni", "3"},
		{"s = set([1])\nlen(s)", "1"},
		{"json.encode({'a': 1})", `{"a":1}`},
		{"", ""},
	}
	for _, c := range cases {
		got, err := e.Run(context.Background(), script.Request{Circle: "circ", Caller: "me", Script: c.src})
		require.NoError(t, err, c.src)
		require.Equal(t, c.want, got, c.src)
	}
}

func TestErrors(t *testing.T) {
	e := newEngine(t, script.Config{MaxScriptSize: 100, MaxOutputSize: 50})
	kind := func(src string) script.ErrorKind {
		_, err := e.Run(context.Background(), script.Request{Script: src})
		var se *script.Error
		require.True(t, errors.As(err, &se), "%s: %v", src, err)
		return se.Kind
	}
	require.Equal(t, script.KindSyntax, kind("x = "))
	require.Equal(t, script.KindSyntax, kind("undefined_name"))
	require.Equal(t, script.KindRuntime, kind("1 // 0"))
	require.Equal(t, script.KindRuntime, kind("fail('boom')"))
	require.Equal(t, script.KindRuntime, kind("load('x', 'y')"))
	require.Equal(t, script.KindTooLarge, kind(strings.Repeat("#", 101)))
	require.Equal(t, script.KindOutput, kind("for i in range(100):\n  print('0123456789')"))
	require.Equal(t, script.KindOutput, kind("'x' * 60"))
	require.Equal(t, script.KindRuntime, kind("store.get('a')"))
	require.Equal(t, script.KindRuntime, kind("publish('c', 1)"))
	_, err := e.Run(context.Background(), script.Request{Script: "fail('boom')"})
	require.Contains(t, err.Error(), "boom")
}

func TestInfiniteLoopStoppedByTimeout(t *testing.T) {
	e := newEngine(t, script.Config{Timeout: 200 * time.Millisecond})
	for _, src := range []string{
		"while True:\n  pass",
		"def f():\n  while True:\n    pass\nf()",
		"for i in range(1000000000):\n  pass",
	} {
		start := time.Now()
		_, err := e.Run(context.Background(), script.Request{Script: src})
		var se *script.Error
		require.True(t, errors.As(err, &se), err)
		require.Equal(t, script.KindTimeout, se.Kind, src)
		require.Less(t, time.Since(start), 5*time.Second)
	}
}

func TestInfiniteLoopStoppedBySteps(t *testing.T) {
	e := newEngine(t, script.Config{MaxSteps: 10_000})
	_, err := e.Run(context.Background(), script.Request{Script: "while True:\n  pass"})
	var se *script.Error
	require.True(t, errors.As(err, &se), err)
	require.Equal(t, script.KindSteps, se.Kind)
}

// cancelOnPublish cancels the run from inside it: the script is running
// when its context ends.
type cancelOnPublish struct{ cancel context.CancelFunc }

func (c cancelOnPublish) Publish(context.Context, string, string, []byte) error {
	c.cancel()
	return nil
}

func TestCancelledByContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEngine(t, script.Config{Publisher: cancelOnPublish{cancel}})
	_, err := e.Run(ctx, script.Request{Script: "publish('x', 1)\nwhile True:\n  pass"})
	var se *script.Error
	require.True(t, errors.As(err, &se), err)
	require.Equal(t, script.KindCancelled, se.Kind)
}

func TestStoreAndPublish(t *testing.T) {
	p := &fakePublisher{}
	e := newEngine(t, script.Config{Store: &memStore{}, Publisher: p, MaxPublishes: 2})
	run := func(circle, src string) (string, error) {
		return e.Run(context.Background(), script.Request{Circle: circle, Script: src})
	}
	out, err := run("a", "store.set('n', '1')\nstore.set('m', json.encode([1]))\nstore.get('n')")
	require.NoError(t, err)
	require.Equal(t, "1", out)
	out, err = run("a", "str(store.keys()) + str(store.keys('m')) + str(store.get('zz', 'def'))")
	require.NoError(t, err)
	require.Equal(t, `["m", "n"]["m"]def`, out)
	out, err = run("b", "store.get('n')")
	require.NoError(t, err)
	require.Equal(t, "", out, "circles are isolated")
	out, err = run("a", "store.delete('n')")
	require.NoError(t, err)
	require.Equal(t, "True", out)
	_, err = run("a", "store.set('k', 1)")
	require.ErrorContains(t, err, "json.encode")
	_, err = run("a", "store.set('', 'v')")
	require.ErrorContains(t, err, "empty")

	_, err = run("a", "publish('chat', {'text': 'hi'})")
	require.NoError(t, err)
	require.Equal(t, []pub{{"a", "chat", `{"text":"hi"}`}}, p.got)
	_, err = run("a", "publish('fail', 1)")
	require.ErrorContains(t, err, "unknown channel")
	_, err = run("a", "publish('x', 1)\npublish('x', 1)\npublish('x', 1)")
	require.ErrorContains(t, err, "more than 2")
}

func TestStorePersistenceAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, sqlite.Config{Dir: dir})
	require.NoError(t, err)
	e := newEngine(t, script.Config{Store: st})
	_, err = e.Run(ctx, script.Request{Circle: "c", Script: "store.set('count', str(int(store.get('count', '0')) + 1))"})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	st, err = sqlite.Open(ctx, sqlite.Config{Dir: dir})
	require.NoError(t, err)
	defer st.Close()
	e = newEngine(t, script.Config{Store: st})
	out, err := e.Run(ctx, script.Request{Circle: "c", Script: "store.set('count', str(int(store.get('count', '0')) + 1))\nstore.get('count')"})
	require.NoError(t, err)
	require.Equal(t, "2", out)
}

var _ script.Store = (*sqlite.Store)(nil)
var _ script.Store = (*memStore)(nil)
