package scheduler

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxCanonicalDepth bounds the nesting of a canonicalised document.
const maxCanonicalDepth = 64

// Canonicalize returns the RFC 8785 (JSON Canonicalization Scheme) form of
// the JSON document raw: no whitespace, object members sorted by the
// UTF-16 code units of their names, strings with minimal escapes, numbers
// as ECMAScript writes doubles. Duplicate member names, invalid UTF-8,
// numbers outside the double range, trailing data and nesting deeper than
// 64 are errors (RFC 8785 requires I-JSON input).
func Canonicalize(raw []byte) ([]byte, error) {
	if !utf8.Valid(raw) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonValue(dec, &out, 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return out.Bytes(), nil
}

// ConfigHash is the hex sha256 of the canonical JSON of config.
func ConfigHash(config []byte) (string, error) {
	c, err := Canonicalize(config)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

func canonValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return canonToken(dec, tok, out, depth)
}

func canonToken(dec *json.Decoder, tok json.Token, out *bytes.Buffer, depth int) error {
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxCanonicalDepth {
			return fmt.Errorf("nested deeper than %d", maxCanonicalDepth)
		}
		if t == '[' {
			return canonArray(dec, out, depth+1)
		}
		if t == '{' {
			return canonObject(dec, out, depth+1)
		}
		return fmt.Errorf("invalid JSON: unexpected %v", t)
	case string:
		writeCanonString(out, t)
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("number %s is outside the double range", t)
		}
		out.WriteString(FormatNumber(f))
	case bool:
		if t {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("invalid JSON token %v", tok)
	}
	return nil
}

func canonArray(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	out.WriteByte('[')
	for i := 0; ; i++ {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if tok == json.Delim(']') {
			out.WriteByte(']')
			return nil
		}
		if i > 0 {
			out.WriteByte(',')
		}
		if err := canonToken(dec, tok, out, depth); err != nil {
			return err
		}
	}
}

type member struct {
	key   string
	units []uint16
	value []byte
}

func canonObject(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	var members []member
	seen := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if tok == json.Delim('}') {
			break
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("invalid JSON: object key is not a string")
		}
		if seen[key] {
			return fmt.Errorf("duplicate member name %q", key)
		}
		seen[key] = true
		var v bytes.Buffer
		if err := canonValue(dec, &v, depth); err != nil {
			return err
		}
		members = append(members, member{key: key, units: utf16.Encode([]rune(key)), value: v.Bytes()})
	}
	sort.Slice(members, func(i, j int) bool { return lessUnits(members[i].units, members[j].units) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeCanonString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

func lessUnits(a, b []uint16) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// writeCanonString writes s as RFC 8785 requires: '"', '\\' and the
// control characters escaped (\b \t \n \f \r, others as \u00xx lower-case
// hex), everything else as UTF-8.
func writeCanonString(out *bytes.Buffer, s string) {
	const hexd = "0123456789abcdef"
	out.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			out.WriteByte('\\')
			out.WriteByte(c)
		case c == '\b':
			out.WriteString(`\b`)
		case c == '\t':
			out.WriteString(`\t`)
		case c == '\n':
			out.WriteString(`\n`)
		case c == '\f':
			out.WriteString(`\f`)
		case c == '\r':
			out.WriteString(`\r`)
		case c < 0x20:
			out.WriteString(`\u00`)
			out.WriteByte(hexd[c>>4])
			out.WriteByte(hexd[c&15])
		default:
			out.WriteByte(c)
		}
	}
	out.WriteByte('"')
}

// FormatNumber writes f as ECMAScript's Number.prototype.toString does
// (RFC 8785 section 3.2.2.3): the shortest digits that round-trip, plain
// notation for decimal exponents in [-6, 21), exponent notation ("1e+21",
// "5e-324") outside; -0 is "0". f must be finite.
func FormatNumber(f float64) string {
	if f == 0 {
		return "0"
	}
	var sign string
	if f < 0 {
		sign, f = "-", -f
	}
	// Shortest round-trip digits d1d2…dk and exponent: f = 0.d1…dk × 10^n.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±xx
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1
	var b strings.Builder
	b.WriteString(sign)
	switch {
	case k <= n && n <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		b.WriteString(digits[:n])
		b.WriteByte('.')
		b.WriteString(digits[n:])
	case -6 < n && n <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -n))
		b.WriteString(digits)
	default:
		b.WriteByte(digits[0])
		if k > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(n - 1))
	}
	return b.String()
}
