package errs

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestIsMatchesCodeAndReason(t *testing.T) {
	unknown := Sentinel(NotFound, "unknown channel")
	noClient := Sentinel(NotFound, "no such client")
	err := fmt.Errorf("subscribe: %w", unknown.With("unknown channel: news"))
	if !errors.Is(err, unknown) {
		t.Fatal("a copy of a sentinel must match it")
	}
	if errors.Is(err, noClient) {
		t.Fatal("another reason must not match")
	}
	if errors.Is(New(NotFound, "x"), unknown) {
		t.Fatal("no reason must not match a reason")
	}
}

func TestCodeOfAndPublic(t *testing.T) {
	if CodeOf(nil) != 0 {
		t.Fatal("nil has no code")
	}
	if CodeOf(io.EOF) != Internal {
		t.Fatal("a foreign error is internal")
	}
	w := Wrap(Unavailable, io.EOF, "broker down")
	if CodeOf(fmt.Errorf("x: %w", w)) != Unavailable || !errors.Is(w, io.EOF) {
		t.Fatal("Wrap keeps code and cause")
	}
	if p := Public(errors.New("secret dsn")); p.Code != Internal || p.Message != "internal server error" {
		t.Fatalf("foreign errors are hidden: %+v", p)
	}
	if p := Public(New(Internal, "secret")); p.Message != "internal server error" {
		t.Fatal("internal messages are hidden")
	}
	if p := Public(w); p.Message != "broker down" {
		t.Fatal("domain messages are shown")
	}
}

func TestCodesHaveNames(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Codes {
		n := c.String()
		if n == "" || seen[n] || n == fmt.Sprintf("code(%d)", uint8(c)) {
			t.Fatalf("code %d has no unique name", c)
		}
		seen[n] = true
	}
	if len(Codes) != 9 {
		t.Fatalf("%d codes, want 9", len(Codes))
	}
}
