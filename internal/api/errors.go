package api

import (
	"errors"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The one table from errors to the server API's wire: Centrifugo server
// API error codes, and the HTTP statuses of request-level errors and of
// the "transport" error mode.

// Server API error codes (Centrifugo numbering).
const (
	codeInternal              = 100
	codeUnauthorized          = 101
	codeUnknownChannel        = 102
	codePermissionDenied      = 103
	codeNotFound              = 104
	codeAlreadySubscribed     = 105
	codeLimitExceeded         = 106
	codeBadRequest            = 107
	codeNotAvailable          = 108
	codeTokenExpired          = 109
	codeTooManyRequests       = 111
	codeUnrecoverablePosition = 112
	codeConflict              = 113
)

// reasonCodes gives the finer codes of the hub's sentinels, matched by
// errors.Is before the domain code.
var reasonCodes = []struct {
	err  *errs.Error
	code uint32
}{
	{hub.ErrUnknownChannel, codeUnknownChannel},
	{hub.ErrMethodNotFound, codeNotFound},
	{hub.ErrAlreadySubscribed, codeAlreadySubscribed},
	{hub.ErrTokenExpired, codeTokenExpired},
	{hub.ErrTooManyRequests, codeTooManyRequests},
	{hub.ErrUnrecoverablePosition, codeUnrecoverablePosition},
}

// domainCodes maps each domain code to a server API code.
var domainCodes = map[errs.Code]uint32{
	errs.Invalid:          codeBadRequest,
	errs.Unauthorized:     codeUnauthorized,
	errs.PermissionDenied: codePermissionDenied,
	errs.NotFound:         codeNotFound,
	errs.Conflict:         codeConflict,
	errs.LimitExceeded:    codeLimitExceeded,
	errs.Unavailable:      codeNotAvailable,
	errs.Timeout:          codeInternal,
	errs.Internal:         codeInternal,
}

// toAPIError converts a method error to the wire: an application error
// keeps its code, a domain error gets the table's code (104 reads "not
// found", as in Centrifugo's server API), anything else is 100 "internal
// server error".
func toAPIError(err error) *Error {
	var be *badBody
	if errors.As(err, &be) {
		return &Error{Code: codeBadRequest, Message: be.msg}
	}
	var ae *hub.AppError
	if errors.As(err, &ae) {
		return &Error{Code: ae.Code, Message: ae.Message}
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
	if code == codeNotFound {
		return &Error{Code: code, Message: "not found"}
	}
	return &Error{Code: code, Message: e.Message}
}

// transportStatus maps a server API code to the HTTP status of
// Centrifugo's "transport" error mode (header X-Centrifugo-Error-Mode:
// transport); codes not listed, application codes among them, are 500.
func transportStatus(code uint32) int {
	switch code {
	case codeUnknownChannel, codeNotFound:
		return http.StatusNotFound
	case codeBadRequest, codeNotAvailable:
		return http.StatusBadRequest
	case codeUnrecoverablePosition:
		return http.StatusRequestedRangeNotSatisfiable
	case codeConflict:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Request-level errors, answered before any method runs, with their own
// HTTP status and the code of their domain error.
var (
	errMethodNotAllowed = &requestError{http.StatusMethodNotAllowed, errs.New(errs.Invalid, "method not allowed, use POST")}
	errUnauthorized     = &requestError{http.StatusUnauthorized, hub.ErrUnauthorized}
	errBodyUnreadable   = &requestError{http.StatusBadRequest, errs.New(errs.Invalid, "cannot read body")}
	errBodyNotObject    = &requestError{http.StatusBadRequest, errs.New(errs.Invalid, "body must be a JSON object")}
)

type requestError struct {
	status int
	err    *errs.Error
}

func errUnknownMethod(msg string) *requestError {
	return &requestError{http.StatusNotFound, errs.New(errs.NotFound, msg)}
}

func errBodyTooLarge(msg string) *requestError {
	return &requestError{http.StatusRequestEntityTooLarge, errs.New(errs.Invalid, msg)}
}

func errBadBody(msg string) *requestError {
	return &requestError{http.StatusBadRequest, errs.New(errs.Invalid, msg)}
}

// writeHTTPError answers a request rejected before any method ran (or
// whose body does not match the method): the request error's status, and
// the table's code with the error's own message.
func writeHTTPError(w http.ResponseWriter, re *requestError) {
	writeJSON(w, re.status, response{Error: &Error{Code: domainCodes[re.err.Code], Message: re.err.Message}})
}
