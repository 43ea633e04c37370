package origin

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAllowed(t *testing.T) {
	const host = "host:8080"
	for _, tc := range []struct {
		allowed []string
		origin  string
		want    bool
	}{
		// No Origin header: not a browser page.
		{nil, "", true},
		{[]string{"https://good.example"}, "", true},
		// Empty list: same origin only.
		{nil, "http://host:8080", true},
		{nil, "https://HOST:8080", true},
		{nil, "http://host", false},
		{nil, "http://other", false},
		{nil, "null", false},
		// "*": anything, opaque origins included.
		{[]string{"*"}, "https://anything.example", true},
		{[]string{"*"}, "null", true},
		{[]string{"http://a.example", "*"}, "http://b.example", true},
		// Exact origins: scheme, host and port all count.
		{[]string{"http://good.example"}, "http://good.example", true},
		{[]string{"http://good.example/"}, "http://GOOD.example", true},
		{[]string{"http://good.example"}, "https://good.example", false},
		{[]string{"http://good.example"}, "http://good.example:8080", false},
		{[]string{"http://localhost:3000"}, "http://localhost:3000", true},
		{[]string{"http://good.example"}, "http://host:8080", false},
		{[]string{"http://good.example"}, "::not a url", false},
		// Wildcard subdomains.
		{[]string{"*.example.com"}, "https://a.example.com", true},
		{[]string{"*.example.com"}, "http://a.example.com", true},
		{[]string{"*.example.com"}, "https://example.com", false},
		{[]string{"*.example.com"}, "https://evilexample.com", false},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "https://A.Example.COM", true},
		{[]string{"https://*.example.com"}, "http://a.example.com", false},
		{[]string{"https://*.example.com"}, "http://attacker-example.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com.evil.net", false},
		{[]string{"https://*.example.com"}, "https://a.example.com:8443", false},
		{[]string{"https://*.example.com:8443"}, "https://a.example.com:8443", true},
	} {
		c, err := New(tc.allowed)
		require.NoError(t, err, tc.allowed)
		require.Equal(t, tc.want, c.Allowed(tc.origin, host), "%v allows %q", tc.allowed, tc.origin)
	}
}

func TestNilChecker(t *testing.T) {
	var c *Checker
	require.False(t, c.Any())
	require.True(t, c.Allowed("", "h"))
	require.True(t, c.Allowed("http://h", "h"))
	require.False(t, c.Allowed("http://other", "h"))
}

func TestAllowedRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "http://host:8080/x", nil)
	r.Header.Set("Origin", "http://host:8080")
	require.True(t, MustNew().AllowedRequest(r))
	require.False(t, MustNew("https://a.example").AllowedRequest(r))
}

func TestNewRejectsNonOrigins(t *testing.T) {
	for _, bad := range []string{"", "example.com", "https://", "https://a.example/path", "https://a.example?x",
		"https://user@a.example", "https://a*.example", "https://*.", "://*.example.com"} {
		_, err := New([]string{"https://ok.example", bad})
		require.Error(t, err, bad)
		require.Contains(t, err.Error(), "[1]")
	}
	require.True(t, MustNew("*").Any())
	require.False(t, MustNew("https://a.example").Any())
}

func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"https://a.example.com", "null", "http://[::1]:80", "*.x", ""} {
		f.Add(s)
	}
	c := MustNew("https://*.example.com", "http://localhost:3000")
	f.Fuzz(func(t *testing.T, origin string) {
		_ = c.Allowed(origin, "localhost:3000")
		if cc, err := New([]string{origin}); err == nil {
			_ = cc.Allowed(origin, "h")
		}
	})
}
