package schedapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/errs"
)

// The one table from errors to the scheduler API's wire: an HTTP status and
// the body {"error": "…"} (SCHED.md). A domain error's Message is the text;
// its Code picks the status unless its Reason has a status of its own.

// domainStatus is the HTTP status of each domain code.
var domainStatus = map[errs.Code]int{
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

// Reasons of the adapter's own errors.
const (
	reasonMethodNotAllowed = "method not allowed"
	reasonRouteNotFound    = "no such endpoint"
	reasonBodyTooLarge     = "body too large"
)

// reasonStatus overrides domainStatus for reasons with a status of their
// own.
var reasonStatus = map[string]int{
	auth.ReasonBodyTooLarge: http.StatusRequestEntityTooLarge,
	reasonBodyTooLarge:      http.StatusRequestEntityTooLarge,
	reasonMethodNotAllowed:  http.StatusMethodNotAllowed,
}

// Internal errors show this text; the details go to the log.
const internalMessage = "internal server error"

// Adapter errors.
var (
	errRouteNotFound = errs.Sentinel(errs.NotFound, reasonRouteNotFound)
	errUnauthorized  = errs.New(errs.Unauthorized, "missing credentials: send Authorization: Bearer <token> or the API key (X-API-Key)")
	errBadAPIKey     = errs.New(errs.Unauthorized, "invalid API key")
)

func errMethodNotAllowed(allow string) *errs.Error {
	return &errs.Error{Code: errs.Invalid, Reason: reasonMethodNotAllowed, Message: "method not allowed, use " + allow}
}

func errRegisterLimited(retrySecs int) *errs.Error {
	return errs.New(errs.LimitExceeded, fmt.Sprintf("too many registrations from this address: retry in %d s", retrySecs))
}

func errBodyTooLarge(msg string) *errs.Error {
	return &errs.Error{Code: errs.LimitExceeded, Reason: reasonBodyTooLarge, Message: msg}
}

// wireError returns the status and client-safe message of err; internal
// errors (and errors that are no *errs.Error) report internal true.
func wireError(err error) (status int, msg string, internal bool) {
	e := errs.Public(err)
	if e.Code == errs.Internal {
		return http.StatusInternalServerError, internalMessage, true
	}
	status, ok := reasonStatus[e.Reason]
	if !ok {
		status = domainStatus[e.Code]
	}
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return status, e.Message, false
}

// writeError answers err as {"error": msg} with the table's status; 503
// answers carry Retry-After.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, internal := wireError(err)
	if internal {
		h.log.Error("scheduler api internal error", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// writeJSON writes v as the JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // messages such as "Bearer <token>" stay readable
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"error":"` + internalMessage + `"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// statusCreated and statusOK are the success statuses the handlers use.
const (
	statusOK      = http.StatusOK
	statusCreated = http.StatusCreated
)
