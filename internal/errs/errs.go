// Package errs is the domain error vocabulary of Switchboard: one coded
// error type that the core packages (hub, worker, script, sandbox,
// dispatch, auth) return, and that every adapter maps to its wire in one
// table (Centrifugo client protocol and server API, the worker gateway's
// HTTP+JSON, circles JSON-RPC). It imports nothing of Switchboard.
package errs

import (
	"errors"
	"fmt"
)

// Code is a domain error code. The zero value is not a valid code.
type Code uint8

// The domain codes. Adapters map each one to a wire code; Codes lists them.
const (
	Invalid          Code = iota + 1 // the request is malformed or breaks a rule
	Unauthorized                     // no or bad credentials
	PermissionDenied                 // credentials fine, action not allowed
	NotFound                         // no such thing (channel, method, client)
	Conflict                         // the state does not allow it (already done)
	LimitExceeded                    // a configured limit or rate is reached
	Unavailable                      // not available now or here (shutting down, busy, disabled)
	Timeout                          // no answer in time
	Internal                         // a bug or a failed dependency; details only in logs
)

// Codes is every domain code, for adapter table tests.
var Codes = []Code{Invalid, Unauthorized, PermissionDenied, NotFound, Conflict, LimitExceeded, Unavailable, Timeout, Internal}

var codeNames = [...]string{
	Invalid: "invalid", Unauthorized: "unauthorized", PermissionDenied: "permission denied",
	NotFound: "not found", Conflict: "conflict", LimitExceeded: "limit exceeded",
	Unavailable: "unavailable", Timeout: "timeout", Internal: "internal",
}

func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error is the domain error. Message is safe to show to clients (except
// for Internal, whose adapters send a generic text); Reason optionally
// names a finer condition callers or adapters branch on ("unknown
// channel"); Temporary tells clients a retry may succeed. The cause is
// never sent to clients.
type Error struct {
	Code      Code
	Message   string
	Reason    string
	Temporary bool
	cause     error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	if e.cause != nil {
		return msg + ": " + e.cause.Error()
	}
	return msg
}

// Unwrap returns the cause given to Wrap.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same Code and Reason, so
// that errors.Is(err, sentinel) holds for fresh errors made from a
// sentinel (a different Message or cause does not matter).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Reason == e.Reason
}

// With returns a copy of e with another message; Code, Reason and
// Temporary stay, so errors.Is(copy, e) holds.
func (e *Error) With(msg string) *Error {
	c := *e
	c.Message = msg
	return &c
}

// New returns an error with code and client-safe message msg.
func New(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Sentinel returns an error with a Reason, for conditions callers branch
// on; its Message is the reason.
func Sentinel(code Code, reason string) *Error {
	return &Error{Code: code, Message: reason, Reason: reason}
}

// Wrap returns an error with code and message msg whose cause is err.
func Wrap(code Code, err error, msg string) *Error {
	return &Error{Code: code, Message: msg, cause: err}
}

// Find returns the *Error in err's chain, or nil if there is none.
func Find(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// CodeOf returns the domain code of err: the code of the *Error in its
// chain, Internal for any other non-nil error, 0 for nil.
func CodeOf(err error) Code {
	if err == nil {
		return 0
	}
	if e := Find(err); e != nil {
		return e.Code
	}
	return Internal
}

// Public returns what a client may see of err: the *Error in its chain, or
// for any other error (and for Internal ones) a generic internal error.
// Adapters log err when Public(err).Code is Internal.
func Public(err error) *Error {
	if e := Find(err); e != nil && e.Code != Internal {
		return e
	}
	return internal
}

var internal = &Error{Code: Internal, Message: "internal server error", Temporary: true}
