package script_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/switchboard-rt/switchboard/internal/script"
)

// The formatting bomb of issue 8: a 16 KB list whose repr is 2 GB. The
// result is capped while it is written, so the run fails fast and the
// heap never holds more than the cap.
func TestFormattingBombCappedWhileWritten(t *testing.T) {
	eng, err := script.New(script.Config{MaxOutputSize: 1 << 20})
	require.NoError(t, err)
	for _, src := range []string{
		`["z"*1000000]*2000`,
		`print(["z"*1000000]*2000)`,
		`l = ["z"*1000]*100
d = {"a": l, "b": (l, l), "c": set(["x"*100000])}
[d]*100000`,
	} {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := eng.Run(context.Background(), script.Request{Script: src})
		var se *script.Error
		require.True(t, errors.As(err, &se), "%s: %v", src, err)
		require.Equal(t, script.KindOutput, se.Kind, src)
		require.Contains(t, se.Msg, "output exceeds 1048576 bytes")
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "%s allocated too much", src)
	}
}

// The capped writer prints exactly what Starlark's str() prints.
func TestResultMatchesStarlarkStr(t *testing.T) {
	eng, err := script.New(script.Config{})
	require.NoError(t, err)
	for _, expr := range []string{
		`[1, "a\n\"b", b"\xff", (1,), (), None, True, 1.5, {"k": [2]}]`,
		`set([1, 2])`, `set()`, `{}`,
		`l = [1]
l.append(l)
l`,
		`d = {}
d["self"] = d
d`,
		`10000000000 * 10000000000 * 10000000000`,
	} {
		out, err := eng.Run(context.Background(), script.Request{Script: expr})
		require.NoError(t, err, expr)
		// The reference: Starlark's own String() of the same value.
		th := &starlark.Thread{}
		f, perr := (&syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true}).Parse("x.star", "_r = 0\n"+expr, 0)
		require.NoError(t, perr)
		n := len(f.Stmts)
		if es, ok := f.Stmts[n-1].(*syntax.ExprStmt); ok {
			f.Stmts[n-1] = &syntax.AssignStmt{Op: syntax.EQ, LHS: &syntax.Ident{Name: "_r"}, RHS: es.X}
		}
		prog, perr := starlark.FileProgram(f, func(s string) bool { return s == "struct" || s == "json" })
		if perr != nil {
			continue // uses a predeclared name the reference lacks
		}
		g, ierr := prog.Init(th, starlark.StringDict{"struct": starlark.None, "json": starlark.None})
		require.NoError(t, ierr)
		want := g["_r"].String()
		if s, ok := g["_r"].(starlark.String); ok {
			want = string(s)
		}
		require.Equal(t, want, out, expr)
	}
}

// A supervisor names its limit through the context's cause.
func TestCancelCauseNamesTheLimit(t *testing.T) {
	eng, err := script.New(script.Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancelCause(context.Background())
	limit := &script.Error{Kind: script.KindMemory, Msg: "memory limit exceeded (64 MiB)"}
	done := make(chan error, 1)
	go func() {
		_, err := eng.Run(ctx, script.Request{Script: "while True:\n  pass"})
		done <- err
	}()
	cancel(limit)
	require.Equal(t, limit, <-done)
}

func TestPrintSep(t *testing.T) {
	eng, err := script.New(script.Config{})
	require.NoError(t, err)
	out, err := eng.Run(context.Background(), script.Request{Script: `print("a", 1, [2], sep="-")
print()`})
	require.NoError(t, err)
	require.Equal(t, "a-1-[2]\n\n", out)
}
