package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Duration is a time.Duration that decodes from a Go duration string ("25s",
// "1m30s", "300ms") or from an integer number of seconds (300, or the string
// "300"), and encodes as a duration string. It implements the JSON, YAML,
// TOML and text (un)marshalers so it round-trips in every format.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.String ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration parses s as a Go duration string or, when s is a (signed)
// integer, as whole seconds.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty duration")
	}
	if isInteger(t) {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return secondsDuration(n)
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. \"25s\", \"1m30s\" or an integer number of seconds)", s)
	}
	return Duration(v), nil
}

func secondsDuration(n int64) (Duration, error) {
	if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
		return 0, fmt.Errorf("duration of %d seconds out of range", n)
	}
	return Duration(time.Duration(n) * time.Second), nil
}

func isInteger(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// MarshalText encodes d as a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a duration string or integer seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON encodes d as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON decodes a JSON string (duration or integer seconds) or a
// JSON integer (seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	r, err := durationFrom(v)
	if err != nil {
		return err
	}
	*d = r
	return nil
}

// MarshalYAML encodes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML decodes a duration string or integer seconds.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	r, err := durationFrom(v)
	if err != nil {
		return err
	}
	*d = r
	return nil
}

// UnmarshalTOML decodes a TOML string (duration or integer seconds) or
// integer (seconds).
func (d *Duration) UnmarshalTOML(v any) error {
	r, err := durationFrom(v)
	if err != nil {
		return err
	}
	*d = r
	return nil
}

// ParseByteSize parses a byte count: a plain integer, or a number with a
// unit: B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024),
// case-insensitive, optional space ("512MB", "1GiB", "1.5 GiB").
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || (i == 0 && (t[i] == '-' || t[i] == '+'))) {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("invalid size %q (use bytes or e.g. \"512MB\", \"1GiB\")", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		if n != 0 && (n > math.MaxInt64/int64(m) || n < math.MinInt64/int64(m)) {
			return 0, fmt.Errorf("size %q out of range", s)
		}
		return n * int64(m), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	r := f * m
	if math.IsNaN(r) || r >= math.MaxInt64 || r <= math.MinInt64 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(r), nil
}

// SplitCommand splits a command line into argv like a POSIX shell would for
// words: whitespace separates words, single quotes take everything literally,
// double quotes allow \" \\ \$ \` escapes, a backslash outside quotes escapes
// the next character. No expansion of any kind is done.
func SplitCommand(s string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && !strings.ContainsRune("\"\\$`\n", r) {
				cur.WriteRune('\\')
			}
			if r != '\n' {
				cur.WriteRune(r)
			}
			escaped = false
			inWord = true
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped = true
			inWord = true
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case unicode.IsSpace(r):
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if escaped {
		return nil, fmt.Errorf("trailing backslash in %q", s)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
