package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Roles of a console session.
const (
	RoleAdmin = "admin" // everything: every node and job, hub figures
	RoleUser  = "user"  // one user's own nodes and jobs
)

// AdminUser is the user ID of the administrator's hub connection.
const AdminUser = "admin"

// maxCookie bounds the session cookie the console accepts.
const maxCookie = 4096

// session is what the cookie says: who, as what, until when.
type session struct {
	Role string `json:"r"`
	User string `json:"u"`
	Exp  int64  `json:"e"` // unix seconds
}

var errBadSession = errors.New("console: bad session cookie")

// sealer signs and opens session cookies with HMAC-SHA256. The MAC covers
// a fixed context string and the encoded payload, so a value signed with
// the secret for another purpose never passes as a session.
type sealer struct{ key []byte }

const sessionContext = "switchboard console session v1\x00"

func (s sealer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(sessionContext))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// seal encodes ss as "payload.mac", both base64url without padding.
func (s sealer) seal(ss session) string {
	b, _ := json.Marshal(ss) // strings and an integer: cannot fail
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p))
}

// open verifies v and returns its session if it is well formed, signed
// with the key, of a known role and not expired at now.
func (s sealer) open(v string, now time.Time) (session, error) {
	if len(v) > maxCookie {
		return session{}, errBadSession
	}
	p, m, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, errBadSession
	}
	mac, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil || !hmac.Equal(mac, s.mac(p)) {
		return session{}, errBadSession
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return session{}, errBadSession
	}
	var ss session
	if err := json.Unmarshal(b, &ss); err != nil {
		return session{}, errBadSession
	}
	if (ss.Role != RoleAdmin && ss.Role != RoleUser) || ss.User == "" || now.Unix() >= ss.Exp {
		return session{}, errBadSession
	}
	return ss, nil
}
