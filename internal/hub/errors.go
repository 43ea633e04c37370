package hub

import (
	"errors"
	"fmt"
)

// Error is the one coded error type of the realtime core. Its codes are the
// Centrifugo client-protocol error codes; adapters map them to their wire
// (client protocol error replies, server API error objects, HTTP statuses)
// in one place each.
type Error struct {
	Code      uint32
	Message   string
	Temporary bool
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, hub.ErrPermissionDenied) works on wrapped errors.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// Client-protocol error codes (Centrifugo v2 numbering).
var (
	ErrInternal              = &Error{Code: 100, Message: "internal server error", Temporary: true}
	ErrUnauthorized          = &Error{Code: 101, Message: "unauthorized"}
	ErrUnknownChannel        = &Error{Code: 102, Message: "unknown channel"}
	ErrPermissionDenied      = &Error{Code: 103, Message: "permission denied"}
	ErrMethodNotFound        = &Error{Code: 104, Message: "method not found"}
	ErrAlreadySubscribed     = &Error{Code: 105, Message: "already subscribed"}
	ErrLimitExceeded         = &Error{Code: 106, Message: "limit exceeded"}
	ErrBadRequest            = &Error{Code: 107, Message: "bad request"}
	ErrNotAvailable          = &Error{Code: 108, Message: "not available"}
	ErrTokenExpired          = &Error{Code: 109, Message: "token expired"}
	ErrExpired               = &Error{Code: 110, Message: "expired"}
	ErrTooManyRequests       = &Error{Code: 111, Message: "too many requests", Temporary: true}
	ErrUnrecoverablePosition = &Error{Code: 112, Message: "unrecoverable position"}
)

// AsError converts any error to an *Error: an *Error in the chain is
// returned as is, anything else becomes ErrInternal (details stay in logs).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}

// Disconnect tells a client why the server closes its connection. Codes
// 3000-3499 invite a reconnect, 3500-4999 ask the client not to reconnect.
type Disconnect struct {
	Code   uint32
	Reason string
}

// Reconnect reports whether clients should reconnect after d.
func (d Disconnect) Reconnect() bool { return d.Code < 3500 || d.Code >= 5000 }

// Disconnect reasons (Centrifugo numbering).
var (
	DisconnectConnectionClosed  = Disconnect{3000, "connection closed"}
	DisconnectShutdown          = Disconnect{3001, "shutdown"}
	DisconnectServerError       = Disconnect{3004, "internal server error"}
	DisconnectExpired           = Disconnect{3005, "connection expired"}
	DisconnectSubExpired        = Disconnect{3006, "subscription expired"}
	DisconnectSlow              = Disconnect{3008, "slow"}
	DisconnectWriteError        = Disconnect{3009, "write error"}
	DisconnectInsufficientState = Disconnect{3010, "insufficient state"}
	DisconnectForceReconnect    = Disconnect{3011, "force reconnect"}
	DisconnectNoPong            = Disconnect{3012, "no pong"}
	DisconnectTooManyRequests   = Disconnect{3013, "too many requests"}
	DisconnectInvalidToken      = Disconnect{3500, "invalid token"}
	DisconnectBadRequest        = Disconnect{3501, "bad request"}
	DisconnectStale             = Disconnect{3502, "stale"}
	DisconnectForceNoReconnect  = Disconnect{3503, "force disconnect"}
	DisconnectConnectionLimit   = Disconnect{3504, "connection limit"}
	DisconnectChannelLimit      = Disconnect{3505, "channel limit"}
	// DisconnectInappropriateProtocol closes a client whose wire format
	// cannot carry a message (binary data to a JSON client).
	DisconnectInappropriateProtocol = Disconnect{3506, "inappropriate protocol"}
	DisconnectPermissionDenied      = Disconnect{3507, "permission denied"}
	DisconnectTooManyErrors         = Disconnect{3509, "too many errors"}
)
