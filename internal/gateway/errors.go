package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// The one table from errors to the gateway's wire: an HTTP status and the
// body {"ok":false,"error":{"code","message"}} with the codes documented
// in docs/worker-gateway.md. A domain error's Reason is its wire code (the
// pool's codes, package worker, or the gateway's own below).

// Error codes produced by the gateway itself (the pool's codes are in
// package worker).
const (
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	CodePayloadTooLarge  = "PAYLOAD_TOO_LARGE"
	CodeInternal         = "INTERNAL_ERROR"
)

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

// codeStatus overrides domainStatus for wire codes with a status of their
// own.
var codeStatus = map[string]int{
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	worker.CodeWorkerCrashed: http.StatusBadGateway,
}

// gatewayError returns one of the gateway's own errors.
func gatewayError(code errs.Code, wire, msg string) *errs.Error {
	return &errs.Error{Code: code, Reason: wire, Message: msg}
}

var errUnauthorized = gatewayError(errs.Unauthorized, CodeUnauthorized, "missing or invalid token")

func errMethodNotAllowed(msg string) error {
	return gatewayError(errs.Invalid, CodeMethodNotAllowed, msg)
}

func errPayloadTooLarge(msg string) error {
	return gatewayError(errs.LimitExceeded, CodePayloadTooLarge, msg)
}

// wireError returns the body code, message and status for err. Only
// client-safe codes and messages are sent: a handler's error (reported by
// the worker) keeps its code and message, status 500 (404 for NOT_FOUND);
// a domain error with a wire code gets the table's status; anything else
// is INTERNAL_ERROR and goes to the log.
func (h *Handler) wireError(r *http.Request, err error) (code, msg string, status int) {
	var we *worker.Error
	if errors.As(err, &we) {
		switch {
		case we.Code == worker.CodeCanceled:
			return CodeInternal, "request canceled", http.StatusInternalServerError
		case we.Remote && we.Code == worker.CodeNotFound:
			return we.Code, we.Message, http.StatusNotFound
		case we.Remote:
			code = we.Code
			if code == "" {
				code = worker.CodeExecution
			}
			return code, we.Message, http.StatusInternalServerError
		case we.Err != nil:
			h.log.Warn("worker request failed", "path", r.URL.Path, "code", we.Code, "err", we.Err)
		}
	}
	e := errs.Find(err)
	if e == nil || e.Code == errs.Internal || e.Reason == "" {
		h.log.Error("worker gateway internal error", "path", r.URL.Path, "err", err)
		return CodeInternal, "internal error", http.StatusInternalServerError
	}
	status, ok := codeStatus[e.Reason]
	if !ok {
		status = domainStatus[e.Code]
	}
	return e.Reason, e.Message, status
}

// writeError writes {"ok":false,"error":{"code","message"}} with the
// status of wireError; 503 replies carry Retry-After.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, status := h.wireError(r, err)
	body, _ := json.Marshal(struct {
		OK    bool `json:"ok"`
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{Error: struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	if status == http.StatusServiceUnavailable {
		hd.Set("Retry-After", h.retryAfter)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
