package worker

import (
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Error codes produced by the pool itself. Handler errors reported by a
// worker keep the worker's own code (for example "EXECUTION_ERROR"); the
// worker's "NOT_FOUND" means it has no handler for the id.
const (
	CodeNotFound      = "NOT_FOUND"      // the worker has no such handler
	CodeNotExposed    = "NOT_EXPOSED"    // the id is not in the allow-list
	CodeInvalidInput  = "INVALID_JSON"   // the input is not valid JSON
	CodeOverloaded    = "OVERLOADED"     // queue full or queue timeout
	CodeTimeout       = "TIMEOUT"        // no reply within Config.Timeout
	CodeWorkerCrashed = "WORKER_CRASHED" // worker exited, broke the protocol, or cannot start
	CodeShuttingDown  = "SHUTTING_DOWN"  // the pool is shutting down
	CodeCanceled      = "CANCELED"       // the caller's context ended first
	// CodeExecution is used for a worker error reply without a code.
	CodeExecution = "EXECUTION_ERROR"
)

// Error is the one coded error type of the pool. Code is stable and safe to
// send to clients, Message is client-safe text, and Err (never sent to
// clients) holds internal details for logs.
type Error struct {
	Code    string
	Message string
	// Remote is true when the error was reported by the worker's handler.
	Remote bool
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause (Err) and, for the pool's own codes, the
// domain error (*errs.Error) they stand for, so errs.CodeOf works on pool
// errors. A handler's error (Remote) has no domain code.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Err != nil {
		out = append(out, e.Err)
	}
	if d, ok := domainCodes[e.Code]; ok && !e.Remote {
		out = append(out, &errs.Error{Code: d, Message: e.Message, Reason: e.Code, Temporary: d == errs.Unavailable || d == errs.Timeout})
	}
	return out
}

// domainCodes maps the pool's codes to domain codes.
var domainCodes = map[string]errs.Code{
	CodeNotFound:      errs.NotFound,
	CodeNotExposed:    errs.NotFound,
	CodeInvalidInput:  errs.Invalid,
	CodeOverloaded:    errs.Unavailable,
	CodeTimeout:       errs.Timeout,
	CodeWorkerCrashed: errs.Unavailable,
	CodeShuttingDown:  errs.Unavailable,
	CodeCanceled:      errs.Unavailable,
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, worker.ErrTimeout) works.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// Sentinels for errors.Is; the pool returns fresh *Error values with the
// same codes and possibly more detail in Err.
var (
	ErrNotFound      = &Error{Code: CodeNotFound, Message: "handler not found"}
	ErrNotExposed    = &Error{Code: CodeNotExposed, Message: "not exposed"}
	ErrInvalidInput  = &Error{Code: CodeInvalidInput, Message: "input is not valid JSON"}
	ErrOverloaded    = &Error{Code: CodeOverloaded, Message: "all workers are busy"}
	ErrTimeout       = &Error{Code: CodeTimeout, Message: "worker did not answer in time"}
	ErrWorkerCrashed = &Error{Code: CodeWorkerCrashed, Message: "worker unavailable"}
	ErrShuttingDown  = &Error{Code: CodeShuttingDown, Message: "shutting down"}
	ErrCanceled      = &Error{Code: CodeCanceled, Message: "request canceled"}
)

// ErrorCode returns the Code of the *Error in err's chain, or "" if none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newErr(sentinel *Error, cause error) *Error {
	return &Error{Code: sentinel.Code, Message: sentinel.Message, Err: cause}
}
