package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// maxLoginBody bounds a sign-in request (a hub token fits many times).
const maxLoginBody = 16 << 10

// loginRequest is the body of POST /console/api/login: exactly one of
// Password (the administrator) and Token (a user's hub token).
type loginRequest struct {
	Password string `json:"password"`
	Token    string `json:"token"`
}

// decodeLogin parses a sign-in body strictly: one JSON object, known
// fields only, exactly one of password and token non-empty.
func decodeLogin(body []byte) (loginRequest, error) {
	var req loginRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	switch {
	case req.Password == "" && req.Token == "":
		return req, errs.New(errs.Invalid, "give password or token")
	case req.Password != "" && req.Token != "":
		return req, errs.New(errs.Invalid, "give password or token, not both")
	}
	return req, nil
}

// tokenRequest is the body of POST /console/api/token.
type tokenRequest struct {
	User string `json:"user"`
}

// maxUserID bounds user IDs the console signs tokens for.
const maxUserID = 255

func decodeTokenRequest(body []byte) (tokenRequest, error) {
	var req tokenRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	if len(req.User) > maxUserID {
		return req, errs.New(errs.Invalid, fmt.Sprintf("user: longer than %d bytes", maxUserID))
	}
	return req, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields
// and trailing data, with messages that name the field.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return errs.New(errs.Invalid, fmt.Sprintf("%s: expected %s", te.Field, te.Type))
		case errors.Is(err, io.EOF):
			return errs.New(errs.Invalid, "empty body: expected a JSON object")
		}
		return errs.New(errs.Invalid, "bad JSON: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errs.New(errs.Invalid, "bad JSON: data after the object")
	}
	return nil
}

// limiter counts failed sign-ins per client address in fixed windows:
// after max failures an address is refused until its window ends. It
// tracks at most maxKeys addresses; beyond that, new addresses share one
// bucket, so a flood of addresses cannot grow memory or escape the limit.
type limiter struct {
	max     int
	window  time.Duration
	maxKeys int

	mu   sync.Mutex
	hits map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

const sharedBucket = ""

func newLimiter(max int, window time.Duration, maxKeys int) *limiter {
	return &limiter{max: max, window: window, maxKeys: maxKeys, hits: map[string]*failWindow{}}
}

// retryAfter reports how long key must wait before trying again (0 = it
// may try now).
func (l *limiter) retryAfter(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.hits[l.keyLocked(key, now)]
	if w == nil || now.Sub(w.start) >= l.window || w.n < l.max {
		return 0
	}
	return w.start.Add(l.window).Sub(now)
}

// fail records a failed attempt of key.
func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key = l.keyLocked(key, now)
	w := l.hits[key]
	if w == nil || now.Sub(w.start) >= l.window {
		w = &failWindow{start: now}
		l.hits[key] = w
	}
	w.n++
}

// keyLocked returns the bucket of key: its own while there is room
// (expired windows are dropped to make some), else the shared one.
func (l *limiter) keyLocked(key string, now time.Time) string {
	if _, ok := l.hits[key]; ok || len(l.hits) < l.maxKeys {
		return key
	}
	for k, w := range l.hits {
		if now.Sub(w.start) >= l.window {
			delete(l.hits, k)
		}
	}
	if len(l.hits) < l.maxKeys {
		return key
	}
	return sharedBucket
}
