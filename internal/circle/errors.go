package circle

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// The one table from errors to circles JSON-RPC codes (protocol/circles).
// A domain error's message goes into the error's data; frame-level
// errors (parse error, invalid request, bad params) come from
// protocol/circles itself.

// errAuthRequired: a play before authenticate on a server with auth on.
var errAuthRequired = &errs.Error{Code: errs.Unauthorized, Reason: "authentication required"}

// reasonCodes gives the finer codes of sentinels, matched first.
var reasonCodes = []struct {
	err  *errs.Error
	code int
}{
	{errAuthRequired, circles.CodeAuthRequired},
}

// rpcCodes maps each domain code to a JSON-RPC code.
var rpcCodes = map[errs.Code]int{
	errs.Invalid:          circles.CodeInvalidParams,
	errs.Unauthorized:     circles.CodeInvalidCredentials,
	errs.PermissionDenied: circles.CodeAuthRequired,
	errs.NotFound:         circles.CodeMethodNotFound,
	errs.Conflict:         circles.CodeExecution,
	errs.LimitExceeded:    circles.CodeTooManyRequests,
	errs.Unavailable:      circles.CodeExecution,
	errs.Timeout:          circles.CodeExecution,
	errs.Internal:         circles.CodeInternalError,
}

// rpcError converts a method's error: a domain error gets the table's code
// with its message (if any) as data; anything else is an internal error
// without data (the caller logs it).
func rpcError(err error) *circles.Error {
	e := errs.Public(err)
	code, ok := rpcCodes[e.Code]
	if !ok || e.Code == errs.Internal {
		return circles.NewError(circles.CodeInternalError, nil)
	}
	for _, r := range reasonCodes {
		if errors.Is(e, r.err) {
			code = r.code
			break
		}
	}
	if e.Message == "" {
		return circles.NewError(code, nil)
	}
	return circles.NewError(code, e.Message)
}

// playError converts a play's failure: every failure with a message for
// the client (a `ClientMessage() string` method: script errors, dispatch
// errors) and the end of the play's context are execution errors; any
// other error, coded or not, is internal (ok false: the caller logs it).
func playError(err error, timeout fmt.Stringer) (*circles.Error, bool) {
	var cm interface{ ClientMessage() string }
	switch {
	case errors.As(err, &cm):
		return circles.NewError(circles.CodeExecution, cm.ClientMessage()), true
	case errors.Is(err, context.DeadlineExceeded):
		return circles.NewError(circles.CodeExecution, fmt.Sprintf("timeout: play exceeded %s", timeout)), true
	case errors.Is(err, context.Canceled):
		return circles.NewError(circles.CodeExecution, "cancelled"), true
	}
	return circles.NewError(rpcCodes[errs.Internal], nil), false
}
