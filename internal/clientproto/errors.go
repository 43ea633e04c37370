package clientproto

import (
	"errors"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The one table from domain errors to Centrifugo client-protocol error
// codes (100-112). Disconnect codes are the hub's table (hub.Disconnect*).

// Client-protocol error codes (Centrifugo numbering).
const (
	codeInternal              = 100
	codeUnauthorized          = 101
	codeUnknownChannel        = 102
	codePermissionDenied      = 103
	codeMethodNotFound        = 104
	codeAlreadySubscribed     = 105
	codeLimitExceeded         = 106
	codeBadRequest            = 107
	codeNotAvailable          = 108
	codeTokenExpired          = 109
	codeTooManyRequests       = 111
	codeUnrecoverablePosition = 112
)

// reasonCodes gives the finer codes of the hub's sentinels, matched by
// errors.Is before the domain code.
var reasonCodes = []struct {
	err  *errs.Error
	code uint32
}{
	{hub.ErrUnknownChannel, codeUnknownChannel},
	{hub.ErrMethodNotFound, codeMethodNotFound},
	{hub.ErrAlreadySubscribed, codeAlreadySubscribed},
	{hub.ErrTokenExpired, codeTokenExpired},
	{hub.ErrTooManyRequests, codeTooManyRequests},
	{hub.ErrUnrecoverablePosition, codeUnrecoverablePosition},
	{hub.ErrRetryLater, codeNotAvailable},
}

// domainCodes maps each domain code to a client-protocol code.
var domainCodes = map[errs.Code]uint32{
	errs.Invalid:          codeBadRequest,
	errs.Unauthorized:     codeUnauthorized,
	errs.PermissionDenied: codePermissionDenied,
	errs.NotFound:         codeMethodNotFound,
	errs.Conflict:         codeAlreadySubscribed,
	errs.LimitExceeded:    codeLimitExceeded,
	errs.Unavailable:      codeNotAvailable,
	errs.Timeout:          codeInternal,
	errs.Internal:         codeInternal,
}

// protoError converts err to a client-protocol error: an application
// error (hub.AppError) keeps its code and message, a domain error gets the
// table's code and its message, and anything else (or an Internal error)
// is 100 "internal server error", temporary. Timeouts and temporary
// unavailability are 100 with their message, temporary.
func protoError(err error) *protocol.Error {
	var ae *hub.AppError
	if errors.As(err, &ae) {
		return &protocol.Error{Code: ae.Code, Message: ae.Message}
	}
	e := errs.Public(err)
	code, ok := domainCodes[e.Code]
	if !ok {
		code = codeInternal
	}
	if e.Code == errs.Unavailable && e.Temporary {
		code = codeInternal // 108 means "not available" for good
	}
	for _, r := range reasonCodes {
		if errors.Is(e, r.err) {
			code = r.code
			break
		}
	}
	return &protocol.Error{Code: code, Message: e.Message, Temporary: e.Temporary || e.Code == errs.Timeout}
}

// knownCode reports whether code is one the server sends on its own (a
// bounded metrics label), as opposed to an application code.
func knownCode(code uint32) bool {
	if code >= codeInternal && code <= codeUnrecoverablePosition {
		return true
	}
	_, ok := hub.DisconnectByCode(code)
	return ok
}
