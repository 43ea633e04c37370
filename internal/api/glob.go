package api

import (
	"errors"
	"regexp"
	"strings"
)

// maxPatternLen bounds a channels pattern.
const maxPatternLen = 1024

// glob is a compiled channels pattern with the syntax of Centrifugo's
// (github.com/gobwas/glob without separators): * any run of characters
// (":" and "/" included), ? one character, [abc] [a-z] [!a-z] classes,
// {a,b} alternatives, \ escapes the next character. It is translated to
// an anchored RE2 expression, so matching is linear in the channel name.
type glob struct{ re *regexp.Regexp }

func compileGlob(pattern string) (*glob, error) {
	if len(pattern) > maxPatternLen {
		return nil, errors.New("pattern too long")
	}
	var b strings.Builder
	b.WriteString(`(?s)^`)
	rest, err := translateGlob(&b, pattern, 0)
	if err != nil {
		return nil, err
	}
	if rest != "" {
		return nil, errors.New("unbalanced }")
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, errors.New("invalid pattern")
	}
	return &glob{re: re}, nil
}

func (g *glob) match(s string) bool { return g.re.MatchString(s) }

// translateGlob writes p as RE2 until its end or, inside {…} (depth > 0),
// until the closing brace or a comma, and returns what is left.
func translateGlob(b *strings.Builder, p string, depth int) (string, error) {
	for p != "" {
		c := p[0]
		switch {
		case c == '*':
			b.WriteString(`.*`)
			p = p[1:]
		case c == '?':
			b.WriteString(`.`)
			p = p[1:]
		case c == '\\':
			if len(p) < 2 {
				return "", errors.New("trailing \\")
			}
			r, n := firstRune(p[1:])
			b.WriteString(regexp.QuoteMeta(r))
			p = p[1+n:]
		case c == '[':
			end := strings.IndexByte(p[1:], ']')
			if end < 1 {
				return "", errors.New("unclosed [")
			}
			class := p[1 : 1+end]
			b.WriteByte('[')
			if class[0] == '!' {
				b.WriteByte('^')
				class = class[1:]
				if class == "" {
					return "", errors.New("empty class")
				}
			}
			for class != "" {
				r, n := firstRune(class)
				if r == "-" {
					b.WriteString("-")
				} else {
					b.WriteString(regexp.QuoteMeta(r))
				}
				class = class[n:]
			}
			b.WriteByte(']')
			p = p[2+end:]
		case c == '{':
			if depth > 8 {
				return "", errors.New("alternatives nested too deep")
			}
			b.WriteString(`(?:`)
			p = p[1:]
			for {
				var err error
				p, err = translateGlob(b, p, depth+1)
				if err != nil {
					return "", err
				}
				if p == "" {
					return "", errors.New("unclosed {")
				}
				if p[0] == '}' {
					p = p[1:]
					break
				}
				b.WriteByte('|') // p[0] == ','
				p = p[1:]
			}
			b.WriteByte(')')
		case depth > 0 && (c == '}' || c == ','):
			return p, nil
		case c == '}':
			return p, nil
		default:
			r, n := firstRune(p)
			b.WriteString(regexp.QuoteMeta(r))
			p = p[n:]
		}
	}
	return "", nil
}

func firstRune(s string) (string, int) {
	for i := range s {
		if i > 0 {
			return s[:i], i
		}
	}
	return s, len(s)
}
