package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
)

// maxProblems caps the problems reported for one document.
const maxProblems = 100

// problems collects every error found while loading, capped at maxProblems,
// and the key paths whose value was refused (they keep their previous
// value, so Validate's findings about them are left out: see dropRefused).
type problems struct {
	errs    []error
	dropped int
	refused map[string]bool
}

// refuse adds err, the problem of the value at the key path.
func (p *problems) refuse(path string, err error) {
	p.add(err)
	if path == "" {
		return
	}
	if p.refused == nil {
		p.refused = map[string]bool{}
	}
	p.refused[path] = true
}

func (p *problems) add(err error) {
	if len(p.errs) >= maxProblems {
		p.dropped++
		return
	}
	p.errs = append(p.errs, err)
}

func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, fmt.Errorf("... and %d more problems", p.dropped))...)
	}
	return errors.Join(p.errs...)
}

// unmarshal decodes k onto c (keys absent from k keep c's values). Every
// failing key is added to p as "name: message", where name is the key path
// passed through rename (for environment variables).
func unmarshal(k *koanf.Koanf, c *Config, p *problems, rename func(path string) string) {
	err := k.UnmarshalWithConf("", c, koanf.UnmarshalConf{Tag: "json", DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.DecodeHookFuncType(convert),
		TagName:    "json",
		Squash:     true,
	}})
	for _, e := range leafErrors(err) {
		p.refuse(e.path, e.format(rename))
	}
}

type keyError struct {
	path string
	err  error
}

func (e keyError) format(rename func(string) string) error {
	name := e.path
	if rename != nil {
		name = rename(name)
	}
	var ie indexError
	if errors.As(e.err, &ie) {
		name = fmt.Sprintf("%s[%d]", name, ie.i)
	}
	if name == "" {
		return e.err
	}
	return fmt.Errorf("%s: %w", name, e.err)
}

// indexError is a problem with one element of a list.
type indexError struct {
	i   int
	err error
}

func (e indexError) Error() string { return e.err.Error() }

// leafErrors flattens mapstructure's joined errors into the innermost
// DecodeError of each failing key.
func leafErrors(err error) []keyError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []keyError
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	if de, ok := err.(*mapstructure.DecodeError); ok {
		inner := de.Unwrap()
		if hasDecodeError(inner) {
			return leafErrors(inner)
		}
		return []keyError{{path: de.Name(), err: plainError(inner)}}
	}
	if hasDecodeError(err) {
		if u := errors.Unwrap(err); u != nil {
			return leafErrors(u) // mapstructure's "decoding failed" wrapper
		}
	}
	return []keyError{{err: err}}
}

func hasDecodeError(err error) bool {
	var de *mapstructure.DecodeError
	return errors.As(err, &de)
}

// plainError replaces mapstructure's Go-typed messages with the wording of
// convert, which runs first for every value and catches almost everything.
func plainError(err error) error {
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ue) {
		return fmt.Errorf("expected %s, got %s", kindName(ue.Expected.Type()), describe(ue.Value))
	}
	return err
}

var (
	durationType  = reflect.TypeOf(Duration(0))
	stringsType   = reflect.TypeOf([]string(nil))
	anySliceType  = reflect.TypeOf([]any(nil))
	anyMapType    = reflect.TypeOf(map[string]any(nil))
	jsonNumberTyp = reflect.TypeOf(json.Number(""))
)

// convert is the decode hook: it turns each parsed value into the type of
// the field it lands in, accepting what Centrifugo accepts (numbers and
// booleans written as strings, a number where a string is expected, a
// single string for a list) and rejecting the rest with a message that
// names the expected and the given value.
func convert(_ reflect.Type, to reflect.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch {
	case to == durationType:
		return durationFrom(v)
	case to.Kind() == reflect.Struct:
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("expected object, got %s", describe(v))
		}
		return v, nil
	case to.Kind() == reflect.Slice && to.Elem().Kind() == reflect.Struct:
		if _, ok := v.([]any); !ok {
			return nil, fmt.Errorf("expected list of objects, got %s", describe(v))
		}
		return v, nil
	case to == stringsType:
		switch x := v.(type) {
		case []string:
			return x, nil
		case string:
			return []string{x}, nil
		case []any:
			out := make([]string, 0, len(x))
			for i, e := range x {
				s, ok := scalarString(e)
				if !ok {
					return nil, indexError{i, fmt.Errorf("expected string, got %s", describe(e))}
				}
				out = append(out, s)
			}
			return out, nil
		}
		return nil, fmt.Errorf("expected list of strings, got %s", describe(v))
	case to.Kind() == reflect.String:
		if s, ok := scalarString(v); ok {
			return s, nil
		}
		return nil, fmt.Errorf("expected string, got %s", describe(v))
	case to.Kind() == reflect.Bool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("expected boolean, got %s", describe(v))
	case to.Kind() >= reflect.Int && to.Kind() <= reflect.Int64:
		n, err := intFrom(v, to.Bits())
		if err != nil {
			return nil, err
		}
		return reflect.ValueOf(n).Convert(to).Interface(), nil
	case to.Kind() >= reflect.Uint && to.Kind() <= reflect.Uint64:
		n, err := uintFrom(v, to.Bits())
		if err != nil {
			return nil, err
		}
		return reflect.ValueOf(n).Convert(to).Interface(), nil
	case to.Kind() == reflect.Float64:
		return floatFrom(v)
	}
	return v, nil
}

// floatFrom converts a parsed number, or a number written as a string, to
// a finite float64.
func floatFrom(v any) (float64, error) {
	s, isNum := number(v)
	if !isNum {
		str, ok := v.(string)
		if !ok {
			return 0, fmt.Errorf("expected number, got %s", describe(v))
		}
		s = strings.TrimSpace(str)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("expected number, got %s", describe(v))
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is not a finite number", s)
	}
	return f, nil
}

// number returns the literal text of a parsed number, and whether v is one.
func number(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0" // 8080.0 is not an integer, as in JSON
		}
		return s, true
	}
	return "", false
}

// scalarString accepts strings, and numbers as their literal text.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case time.Time: // a YAML or TOML date where a string is expected
		return x.Format(time.RFC3339Nano), true
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return "", false
	}
	return number(v)
}

func intFrom(v any, bits int) (int64, error) {
	s, isNum := number(v)
	if !isNum {
		str, ok := v.(string)
		if !ok {
			return 0, fmt.Errorf("expected integer, got %s", describe(v))
		}
		s = strings.TrimSpace(str)
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("%v is not a finite number", f)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if isInteger(s) {
			return 0, fmt.Errorf("integer %s out of range", s)
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
	s, isNum := number(v)
	if !isNum {
		str, ok := v.(string)
		if !ok {
			return 0, fmt.Errorf("expected non-negative integer, got %s", describe(v))
		}
		s = strings.TrimSpace(str)
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		switch {
		case strings.HasPrefix(s, "-") && isInteger(s):
			return 0, fmt.Errorf("must not be negative, got %s", s)
		case isInteger(s):
			return 0, fmt.Errorf("integer %s out of range", s)
		}
		return 0, fmt.Errorf("expected non-negative integer, got %s", describe(v))
	}
	return n, nil
}

// durationFrom converts a parsed value: a duration string, or integer
// seconds (as a number or a string).
func durationFrom(v any) (Duration, error) {
	if d, ok := v.(Duration); ok {
		return d, nil
	}
	if s, ok := v.(string); ok {
		return ParseDuration(s)
	}
	if s, ok := number(v); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("expected duration (string like \"25s\" or integer seconds), got number %s", s)
		}
		return secondsDuration(n)
	}
	return 0, fmt.Errorf("expected duration (string like \"25s\" or integer seconds), got %s", describe(v))
}

func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Struct:
		return "object"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return "integer"
}

// describe renders a parsed value for error messages: `string "abc"`,
// `integer 5`, `number 1.5`, `boolean true`, `list`, `object`, `null`.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 60 {
			x = x[:57] + "..."
		}
		return "string " + strconv.Quote(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any, []string:
		return "list"
	case map[string]any:
		return "object"
	}
	if s, ok := number(v); ok {
		if isInteger(s) {
			return "integer " + s
		}
		return "number " + s
	}
	return fmt.Sprintf("%T", v)
}
