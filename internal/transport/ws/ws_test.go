package ws

import "testing"

func TestOriginAllowed(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		origin  string
		want    bool
	}{
		{nil, "", true},
		{nil, "http://host:8080", true},
		{nil, "http://other", false},
		{[]string{"*"}, "https://anything.example", true},
		{[]string{"http://good.example"}, "http://good.example", true},
		{[]string{"http://good.example"}, "https://good.example", false},
		{[]string{"*.example.com"}, "https://a.example.com", true},
		{[]string{"*.example.com"}, "https://evilexample.com", false},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "http://a.example.com", false},
		{[]string{"https://*.example.com"}, "http://attacker-example.com", false},
		{[]string{"http://good.example"}, "::not a url", false},
	} {
		if got := OriginAllowed(tc.allowed, tc.origin, "host:8080"); got != tc.want {
			t.Errorf("OriginAllowed(%v, %q) = %v, want %v", tc.allowed, tc.origin, got, tc.want)
		}
	}
}
