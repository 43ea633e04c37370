package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"chat:*", []string{"chat:", "chat:a", "chat:a/b:c"}, []string{"chat", "news:a"}},
		{"*", []string{"", "a:b/c"}, nil},
		{"a?c", []string{"abc", "a:c", "a✓c"}, []string{"ac", "abbc"}},
		{"[ab]x", []string{"ax", "bx"}, []string{"cx", "x"}},
		{"[a-c]x", []string{"bx"}, []string{"dx"}},
		{"[!a-c]x", []string{"dx", ":x"}, []string{"ax"}},
		{"{chat,news}:*", []string{"chat:1", "news:2"}, []string{"misc:3"}},
		{"{a{b,c},d}", []string{"ab", "ac", "d"}, []string{"a", "ad"}},
		{`a\*b`, []string{"a*b"}, []string{"axb"}},
		{"a.b+c", []string{"a.b+c"}, []string{"axbbc"}},
		{"x,y", []string{"x,y"}, []string{"x"}},
	} {
		g, err := compileGlob(tc.pattern)
		require.NoError(t, err, tc.pattern)
		for _, s := range tc.match {
			require.True(t, g.match(s), "%q should match %q", tc.pattern, s)
		}
		for _, s := range tc.nomatch {
			require.False(t, g.match(s), "%q should not match %q", tc.pattern, s)
		}
	}
	for _, bad := range []string{"[", "[]", "[!]", "{a,b", "a}", `a\`, "[z-a]", strings.Repeat("{", 20), strings.Repeat("x", maxPatternLen+1)} {
		_, err := compileGlob(bad)
		require.Error(t, err, bad)
	}
}

func FuzzGlob(f *testing.F) {
	for _, s := range []string{"chat:*", "{a,b}[!c-d]?", `\{`, "[", "{{}}"} {
		f.Add(s, "chat:abc")
	}
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		g, err := compileGlob(pattern)
		if err != nil {
			return
		}
		_ = g.match(channel)
		// A pattern without metacharacters matches exactly itself.
		if !strings.ContainsAny(pattern, `*?[]{}\,`) {
			require.True(t, g.match(pattern))
		}
	})
}
