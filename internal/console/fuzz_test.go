package console

import (
	"testing"
	"time"
)

// The sign-in decoder never panics and accepts only one of the two
// credentials.
func FuzzDecodeLogin(f *testing.F) {
	for _, s := range []string{`{"password":"p"}`, `{"token":"t"}`, `{}`, `{"password":"a","token":"b"}`, `[]`, `null`, `{"password":1}`, `{"x":1}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeLogin(b)
		if err == nil && (req.Password == "") == (req.Token == "") {
			t.Fatalf("accepted %q as %+v", b, req)
		}
		_, _ = decodeTokenRequest(b)
	})
}

// Only cookies sealed with the key open, and opening never panics.
func FuzzOpenSession(f *testing.F) {
	s := sealer{key: []byte(testSecret)}
	good := s.seal(session{Role: RoleAdmin, User: AdminUser, Exp: t0.Add(time.Hour).Unix()})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add("a.b")
	f.Add("")
	f.Add(".")
	f.Fuzz(func(t *testing.T, v string) {
		ss, err := s.open(v, t0)
		if err == nil && v != good {
			// Another encoding of the same MAC'd payload is impossible
			// with unpadded base64url, except by finding a MAC.
			if ss.User == "" || (ss.Role != RoleAdmin && ss.Role != RoleUser) {
				t.Fatalf("opened %q as %+v", v, ss)
			}
		}
	})
}

func TestSealOpen(t *testing.T) {
	s := sealer{key: []byte(testSecret)}
	v := s.seal(session{Role: RoleUser, User: "alice", Exp: t0.Add(time.Minute).Unix()})
	ss, err := s.open(v, t0)
	if err != nil || ss.User != "alice" || ss.Role != RoleUser {
		t.Fatalf("open: %+v %v", ss, err)
	}
	if _, err := s.open(v, t0.Add(time.Minute)); err == nil {
		t.Fatal("expired session opened")
	}
	if _, err := (sealer{key: []byte("another key of 16+ bytes")}).open(v, t0); err == nil {
		t.Fatal("opened with another key")
	}
	bad := s.seal(session{Role: "root", User: "x", Exp: t0.Add(time.Minute).Unix()})
	if _, err := s.open(bad, t0); err == nil {
		t.Fatal("unknown role opened")
	}
}
