// Package centrifugo holds Centrifugo's error numbering, the one table
// from the core's errors to the codes that both Centrifugo adapters send:
// the client protocol (internal/clientproto) and the server API
// (internal/api). Each adapter keeps only its own differences.
package centrifugo

import (
	"errors"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Centrifugo error codes.
const (
	CodeInternal              = 100
	CodeUnauthorized          = 101
	CodeUnknownChannel        = 102
	CodePermissionDenied      = 103
	CodeMethodNotFound        = 104
	CodeAlreadySubscribed     = 105
	CodeLimitExceeded         = 106
	CodeBadRequest            = 107
	CodeNotAvailable          = 108
	CodeTokenExpired          = 109
	CodeTooManyRequests       = 111
	CodeUnrecoverablePosition = 112
	// CodeConflict is the server API's code for a plain conflict (the
	// client protocol has none and uses CodeAlreadySubscribed).
	CodeConflict = 113
)

// reasonCodes gives the finer codes of the hub's sentinels, matched by
// errors.Is before the domain code.
var reasonCodes = []struct {
	err  *errs.Error
	code uint32
}{
	{hub.ErrUnknownChannel, CodeUnknownChannel},
	{hub.ErrMethodNotFound, CodeMethodNotFound},
	{hub.ErrAlreadySubscribed, CodeAlreadySubscribed},
	{hub.ErrTokenExpired, CodeTokenExpired},
	{hub.ErrTooManyRequests, CodeTooManyRequests},
	{hub.ErrUnrecoverablePosition, CodeUnrecoverablePosition},
	{hub.ErrRetryLater, CodeNotAvailable},
}

// domainCodes maps each domain code to a Centrifugo code.
var domainCodes = map[errs.Code]uint32{
	errs.Invalid:          CodeBadRequest,
	errs.Unauthorized:     CodeUnauthorized,
	errs.PermissionDenied: CodePermissionDenied,
	errs.NotFound:         CodeMethodNotFound,
	errs.Conflict:         CodeAlreadySubscribed,
	errs.LimitExceeded:    CodeLimitExceeded,
	errs.Unavailable:      CodeNotAvailable,
	errs.Timeout:          CodeInternal,
	errs.Internal:         CodeInternal,
}

// Code returns the Centrifugo code of e, a public domain error (see
// errs.Public): a hub sentinel's finer code, else its domain code's.
// Temporary unavailability is 100 (108 means "not available" for good),
// unless it is hub.ErrRetryLater.
func Code(e *errs.Error) uint32 {
	for _, r := range reasonCodes {
		if errors.Is(e, r.err) {
			return r.code
		}
	}
	if e.Code == errs.Unavailable && e.Temporary {
		return CodeInternal
	}
	if code, ok := domainCodes[e.Code]; ok {
		return code
	}
	return CodeInternal
}
