// Package origin decides which browser origins may reach the server: the
// one policy behind WebSocket upgrades (Centrifugo protocol and circles)
// and the worker gateway's CORS.
package origin

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Checker is an origin policy built from a list of allowed origins. It is
// immutable and safe for concurrent use. A nil *Checker behaves like one
// built from an empty list.
//
// List items:
//
//	"*"                        any origin
//	"https://app.example.com"  exactly this origin (scheme, host and port)
//	"https://*.example.com"    any subdomain of example.com (at any depth,
//	                           not example.com itself) with this scheme and port
//	"*.example.com"            the same for any scheme
//
// An empty list allows only same-origin requests: the Origin's host:port
// equals the request's Host. A request without an Origin header does not
// come from a browser page and is always allowed.
type Checker struct {
	any      bool
	exact    map[string]struct{} // normalised scheme://host[:port]
	patterns []pattern
}

type pattern struct {
	scheme string // "" means any
	suffix string // ".example.com"
	port   string // "" means no explicit port
}

// New validates allowed and returns its Checker. An invalid item is an
// error naming its index and value.
func New(allowed []string) (*Checker, error) {
	c := &Checker{exact: make(map[string]struct{})}
	for i, a := range allowed {
		if err := c.add(a); err != nil {
			return nil, fmt.Errorf("[%d] %q: %w", i, a, err)
		}
	}
	return c, nil
}

// MustNew is New for literal lists; it panics on an invalid item.
func MustNew(allowed ...string) *Checker {
	c, err := New(allowed)
	if err != nil {
		panic("origin: " + err.Error())
	}
	return c
}

const usage = `want "*", an origin such as "https://app.example.com" or a wildcard such as "https://*.example.com"`

func (c *Checker) add(a string) error {
	a = strings.TrimRight(strings.TrimSpace(a), "/")
	if a == "*" {
		c.any = true
		return nil
	}
	scheme, rest, hasScheme := strings.Cut(a, "://")
	if !hasScheme {
		scheme, rest = "", a
	}
	if strings.HasPrefix(rest, "*.") {
		host, port := splitPort(rest[1:])
		if host == "." || strings.ContainsAny(host, "*/?#@ ") || (hasScheme && scheme == "") {
			return fmt.Errorf("not an origin pattern: %s", usage)
		}
		c.patterns = append(c.patterns, pattern{scheme: strings.ToLower(scheme), suffix: strings.ToLower(host), port: port})
		return nil
	}
	if !hasScheme {
		return fmt.Errorf("no scheme: %s", usage)
	}
	norm, ok := normalise(a)
	if !ok || strings.Contains(a, "*") {
		return fmt.Errorf("not an origin: %s", usage)
	}
	c.exact[norm] = struct{}{}
	return nil
}

// normalise returns scheme://host[:port] lowercased, or false when s is
// not an origin (no scheme or host, or a path, query or user part).
func normalise(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), true
}

func splitPort(hostport string) (host, port string) {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i], hostport[i+1:]
	}
	return hostport, ""
}

// Any reports whether every origin is allowed (the list holds "*").
func (c *Checker) Any() bool { return c != nil && c.any }

// Allowed reports whether a request with Origin header value origin and
// Host header host may proceed. An empty origin is always allowed.
func (c *Checker) Allowed(origin, host string) bool {
	if origin == "" {
		return true
	}
	if c.Any() {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" and other opaque origins only pass "*"
	}
	if c == nil || (len(c.exact) == 0 && len(c.patterns) == 0) {
		return strings.EqualFold(u.Host, host)
	}
	norm, ok := normalise(origin)
	if !ok {
		return false
	}
	if _, ok := c.exact[norm]; ok {
		return true
	}
	scheme, hostname, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	for _, p := range c.patterns {
		if (p.scheme == "" || p.scheme == scheme) && p.port == port && strings.HasSuffix(hostname, p.suffix) {
			return true
		}
	}
	return false
}

// AllowedRequest is Allowed for r's Origin and Host headers.
func (c *Checker) AllowedRequest(r *http.Request) bool {
	return c.Allowed(r.Header.Get("Origin"), r.Host)
}
