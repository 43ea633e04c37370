package console

import (
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// The console's one table from domain codes to HTTP statuses. Replies
// carry {"error": message} with the status.
var statusOf = map[errs.Code]int{
	errs.Invalid:          http.StatusBadRequest,
	errs.Unauthorized:     http.StatusUnauthorized,
	errs.PermissionDenied: http.StatusForbidden,
	errs.NotFound:         http.StatusNotFound,
	errs.Conflict:         http.StatusConflict,
	errs.LimitExceeded:    http.StatusTooManyRequests,
	errs.Unavailable:      http.StatusServiceUnavailable,
	errs.Timeout:          http.StatusGatewayTimeout,
	errs.Internal:         http.StatusInternalServerError,
}

// Request-level conditions that are not domain errors.
var (
	errBodyTooLarge     = &httpError{status: http.StatusRequestEntityTooLarge, msg: "request body too large"}
	errMethodNotAllowed = &httpError{status: http.StatusMethodNotAllowed, msg: "method not allowed"}
	errUnsupportedType  = &httpError{status: http.StatusUnsupportedMediaType, msg: "Content-Type must be application/json"}
)

// httpError is an HTTP-level refusal with its own status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// status returns the HTTP status and the client-safe message of err, and
// whether it is an internal error (to be logged).
func status(err error) (st int, msg string, internal bool) {
	if he, ok := err.(*httpError); ok {
		return he.status, he.msg, false
	}
	e := errs.Public(err)
	if s, ok := statusOf[e.Code]; ok {
		return s, e.Message, e.Code == errs.Internal
	}
	return http.StatusInternalServerError, "internal server error", true
}

// encodingFailed is the answer when a reply cannot be encoded.
const encodingFailed = http.StatusInternalServerError
