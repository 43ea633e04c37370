package api

import (
	"errors"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/centrifugo"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The server API's wire for errors: Centrifugo's codes (internal/centrifugo,
// shared with the client protocol) with the server API's differences, and
// the HTTP statuses of request-level errors and of the "transport" error
// mode.

// toAPIError converts a method error to the wire: an application error
// keeps its code, a domain error gets Centrifugo's code (the shared table
// in internal/centrifugo; a plain conflict is 113 here and 104 reads "not
// found", as in Centrifugo's server API), anything else is 100 "internal
// server error".
func toAPIError(err error) *Error {
	var be *badBody
	if errors.As(err, &be) {
		return &Error{Code: centrifugo.CodeBadRequest, Message: be.msg}
	}
	var ae *hub.AppError
	if errors.As(err, &ae) {
		return &Error{Code: ae.Code, Message: ae.Message}
	}
	e := errs.Public(err)
	code := apiCode(e)
	if code == centrifugo.CodeMethodNotFound {
		return &Error{Code: code, Message: "not found"}
	}
	return &Error{Code: code, Message: e.Message}
}

// apiCode is Centrifugo's code of e, with the server API's own code for a
// plain conflict.
func apiCode(e *errs.Error) uint32 {
	if e.Code == errs.Conflict && e.Reason == "" {
		return centrifugo.CodeConflict
	}
	return centrifugo.Code(e)
}

// transportStatus maps a server API code to the HTTP status of
// Centrifugo's "transport" error mode (header X-Centrifugo-Error-Mode:
// transport); codes not listed, application codes among them, are 500.
func transportStatus(code uint32) int {
	switch code {
	case centrifugo.CodeUnknownChannel, centrifugo.CodeMethodNotFound:
		return http.StatusNotFound
	case centrifugo.CodeBadRequest, centrifugo.CodeNotAvailable:
		return http.StatusBadRequest
	case centrifugo.CodeUnrecoverablePosition:
		return http.StatusRequestedRangeNotSatisfiable
	case centrifugo.CodeConflict:
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
	writeJSON(w, re.status, response{Error: &Error{Code: apiCode(re.err), Message: re.err.Message}})
}
