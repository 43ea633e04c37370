package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// maxProblems caps the problems reported for one document.
const maxProblems = 100

// decoder overlays a generic tree onto a Config, collecting every problem.
type decoder struct {
	errs    []error
	dropped int
}

func (d *decoder) add(err error) {
	if len(d.errs) >= maxProblems {
		d.dropped++
		return
	}
	d.errs = append(d.errs, err)
}

func (d *decoder) fail(path, format string, args ...any) {
	d.add(fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (d *decoder) err() error {
	if d.dropped > 0 {
		return errors.Join(append(d.errs, fmt.Errorf("... and %d more problems", d.dropped))...)
	}
	return errors.Join(d.errs...)
}

// object decodes m into the struct dst. path is the concrete key path
// ("channel.namespaces[1]"), gpath the generic one ("channel.namespaces[]").
func (d *decoder) object(path, gpath string, m map[string]any, dst reflect.Value) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t := dst.Type()
	for _, k := range keys {
		v := m[k]
		kp, kg := joinPath(path, k), joinPath(gpath, k)
		if f, ok := fieldByName(t, k); ok {
			d.value(kp, kg, v, dst.FieldByIndex(f.index), f.opt)
			continue
		}
		if want, ok := fixed[kg]; ok {
			if s, isStr := v.(string); v != nil && (!isStr || s != want) {
				d.fail(kp, "Switchboard fixes this to %q; got %s (remove the key or set it to %q)", want, describe(v), want)
			}
			continue
		}
		if hint, ok := unsupportedKey(gpath, k); ok {
			msg := fmt.Sprintf("key %q is a Centrifugo feature not supported by Switchboard", kp)
			if hint != "" {
				msg += " (" + hint + ")"
			}
			d.add(errors.New(msg))
			continue
		}
		msg := fmt.Sprintf("unknown key %q", kp)
		if strings.Contains(k, ".") {
			msg += " (dotted keys are not expanded; nest the objects instead)"
		} else if s := suggest(t, path, k); len(s) > 0 {
			q := make([]string, len(s))
			for i, x := range s {
				q[i] = strconv.Quote(x)
			}
			msg += " (did you mean " + strings.Join(q, " or ") + "?)"
		}
		d.add(errors.New(msg))
	}
}

// value decodes v into dst. A null value leaves dst unchanged.
func (d *decoder) value(path, gpath string, v any, dst reflect.Value, opt string) {
	if v == nil {
		return
	}
	t := dst.Type()
	switch {
	case t == durationType:
		r, err := durationFrom(v)
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		dst.SetInt(int64(r))
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.fail(path, "expected object, got %s", describe(v))
			return
		}
		d.object(path, gpath, m, dst)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		l, ok := v.([]any)
		if !ok {
			d.fail(path, "expected list of objects, got %s", describe(v))
			return
		}
		out := reflect.MakeSlice(t, len(l), len(l))
		for i, e := range l {
			ep := fmt.Sprintf("%s[%d]", path, i)
			m, ok := e.(map[string]any)
			if !ok {
				d.fail(ep, "expected object, got %s", describe(e))
				continue
			}
			d.object(ep, gpath+"[]", m, out.Index(i))
		}
		dst.Set(out)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var out []string
		switch x := v.(type) {
		case []any:
			out = make([]string, 0, len(x))
			for i, e := range x {
				s, ok := scalarString(e)
				if !ok {
					d.fail(fmt.Sprintf("%s[%d]", path, i), "expected string, got %s", describe(e))
					continue
				}
				out = append(out, s)
			}
		case string:
			if opt == "argv" {
				args, err := SplitCommand(x)
				if err != nil {
					d.fail(path, "%v", err)
					return
				}
				out = args
			} else {
				out = []string{x}
			}
		default:
			d.fail(path, "expected list of strings, got %s", describe(v))
			return
		}
		dst.Set(reflect.ValueOf(out).Convert(t))
	case t.Kind() == reflect.String:
		s, ok := scalarString(v)
		if !ok {
			d.fail(path, "expected string, got %s", describe(v))
			return
		}
		dst.SetString(s)
	case t.Kind() == reflect.Bool:
		switch x := v.(type) {
		case bool:
			dst.SetBool(x)
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				d.fail(path, "expected boolean, got %s", describe(v))
				return
			}
			dst.SetBool(b)
		default:
			d.fail(path, "expected boolean, got %s", describe(v))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, err := intFrom(v, opt, t.Bits())
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		dst.SetInt(n)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		n, err := uintFrom(v, t.Bits())
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		dst.SetUint(n)
	default:
		d.fail(path, "internal error: unsupported field type %s", t)
	}
}

// scalarString accepts strings, and numbers as their literal text.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	}
	return "", false
}

func intFrom(v any, opt string, bits int) (int64, error) {
	var (
		n   int64
		err error
	)
	switch x := v.(type) {
	case json.Number:
		n, err = strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			if isInteger(string(x)) {
				return 0, fmt.Errorf("integer %s out of range", x)
			}
			return 0, fmt.Errorf("expected integer, got %s", describe(v))
		}
	case string:
		if opt == "bytesize" {
			n, err = ParseByteSize(x)
			if err != nil {
				return 0, err
			}
			break
		}
		n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("expected integer, got %s", describe(v))
		}
	default:
		if opt == "bytesize" {
			return 0, fmt.Errorf("expected integer or size string (\"512MB\"), got %s", describe(v))
		}
		return 0, fmt.Errorf("expected integer, got %s", describe(v))
	}
	if bits < 64 {
		lim := int64(1) << (bits - 1)
		if n >= lim || n < -lim {
			return 0, fmt.Errorf("integer %d out of range", n)
		}
	}
	return n, nil
}

func uintFrom(v any, bits int) (uint64, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, fmt.Errorf("expected non-negative integer, got %s", describe(v))
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		if strings.HasPrefix(s, "-") && isInteger(s) {
			return 0, fmt.Errorf("must not be negative, got %s", s)
		}
		if isInteger(s) {
			return 0, fmt.Errorf("integer %s out of range", s)
		}
		return 0, fmt.Errorf("expected non-negative integer, got %s", describe(v))
	}
	return n, nil
}

// overlay applies the tree m onto c. It reports every key and type problem.
func overlay(c *Config, m map[string]any) error {
	d := &decoder{}
	d.object("", "", m, reflect.ValueOf(c).Elem())
	return d.err()
}
