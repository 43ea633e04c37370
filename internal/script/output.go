package script

import (
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// limitWriter collects at most max bytes. A write that would pass the
// cap is dropped and every later write fails: output is capped while it
// is produced, so an oversize value is never formatted in full.
type limitWriter struct {
	b    strings.Builder
	max  int
	full bool
}

// writeString appends s and reports false when the cap is reached.
func (w *limitWriter) writeString(s string) bool {
	if w.full || w.b.Len()+len(s) > w.max {
		w.full = true
		return false
	}
	w.b.WriteString(s)
	return true
}

// room is the number of bytes still accepted.
func (w *limitWriter) room() int { return w.max - w.b.Len() }

// printFn is the script's print(*args, sep=" "): str() of each argument
// written straight into the capped output.
func printFn(st *runState) builtinFn {
	return func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		sep := " "
		if err := starlark.UnpackArgs("print", nil, kwargs, "sep?", &sep); err != nil {
			return nil, err
		}
		st.mu.Lock()
		ok := true
		for i, v := range args {
			if i > 0 && !st.out.writeString(sep) {
				ok = false
				break
			}
			if ok = writeResult(&st.out, v); !ok {
				break
			}
		}
		ok = ok && st.out.writeString("\n")
		if !ok {
			st.overflow = true
		}
		st.mu.Unlock()
		if !ok {
			th.Cancel("output limit exceeded")
			return nil, errOutputLimit
		}
		return starlark.None, nil
	}
}

type outputLimitError struct{}

func (outputLimitError) Error() string { return "output limit exceeded" }

var errOutputLimit error = outputLimitError{}

// writeResult writes str(v): a string as is, anything else as its repr.
// It reports false when the cap was reached.
func writeResult(w *limitWriter, v starlark.Value) bool {
	if s, ok := v.(starlark.String); ok {
		return w.writeString(string(s))
	}
	return writeRepr(w, v, nil)
}

// writeRepr writes the Starlark repr of v like v.String() does, stopping
// at the cap. path holds the containers being written, so a list that
// contains itself prints "[...]" as in Starlark.
func writeRepr(w *limitWriter, v starlark.Value, path []starlark.Value) bool {
	if w.full {
		return false
	}
	switch x := v.(type) {
	case starlark.String:
		return writeQuoted(w, string(x), false)
	case starlark.Bytes:
		return writeQuoted(w, string(x), true)
	case *starlark.List:
		if inPath(path, v) {
			return w.writeString("[...]")
		}
		return writeSeq(w, "[", "]", false, x.Len(), x.Index, append(path, v))
	case starlark.Tuple:
		return writeSeq(w, "(", ")", len(x) == 1, len(x), x.Index, path)
	case *starlark.Set:
		if inPath(path, v) {
			return w.writeString("set([...])")
		}
		if !w.writeString("set([") {
			return false
		}
		it := x.Iterate()
		defer it.Done()
		var e starlark.Value
		for i := 0; it.Next(&e); i++ {
			if (i > 0 && !w.writeString(", ")) || !writeRepr(w, e, append(path, v)) {
				return false
			}
		}
		return w.writeString("])")
	case *starlark.Dict:
		if inPath(path, v) {
			return w.writeString("{...}")
		}
		if !w.writeString("{") {
			return false
		}
		p := append(path, v)
		for i, kv := range x.Items() {
			if (i > 0 && !w.writeString(", ")) || !writeRepr(w, kv[0], p) ||
				!w.writeString(": ") || !writeRepr(w, kv[1], p) {
				return false
			}
		}
		return w.writeString("}")
	case *starlarkstruct.Struct:
		if inPath(path, v) {
			return w.writeString("struct(...)")
		}
		if !w.writeString("struct(") {
			return false
		}
		for i, name := range x.AttrNames() {
			a, err := x.Attr(name)
			if err != nil {
				continue
			}
			if (i > 0 && !w.writeString(", ")) || !w.writeString(name+" = ") || !writeRepr(w, a, append(path, v)) {
				return false
			}
		}
		return w.writeString(")")
	}
	// Scalars (int, float, bool, None) and opaque values (functions,
	// modules) have short or script-bounded representations.
	return w.writeString(v.String())
}

func writeSeq(w *limitWriter, open, closing string, trailingComma bool, n int, at func(int) starlark.Value, path []starlark.Value) bool {
	if !w.writeString(open) {
		return false
	}
	for i := 0; i < n; i++ {
		if (i > 0 && !w.writeString(", ")) || !writeRepr(w, at(i), path) {
			return false
		}
	}
	if trailingComma && !w.writeString(",") {
		return false
	}
	return w.writeString(closing)
}

// writeQuoted writes s quoted; a string longer than the room left is
// rejected before quoting (its quoted form is longer still).
func writeQuoted(w *limitWriter, s string, bytes bool) bool {
	if len(s)+2 > w.room() {
		w.full = true
		return false
	}
	return w.writeString(syntax.Quote(s, bytes))
}

func inPath(path []starlark.Value, v starlark.Value) bool {
	for _, p := range path {
		if p == v {
			return true
		}
	}
	return false
}
