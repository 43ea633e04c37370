package relay

import (
	"errors"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// This file is the relay's one error table: domain errors to the wire's
// error codes, and the relay's reasons to close a connection to the hub's
// disconnect codes (which are also the QUIC application error codes and
// GOAWAY codes).

// Domain errors of the relay.
var (
	ErrRoomFull     = errs.Sentinel(errs.LimitExceeded, "room full")
	ErrTooManyRooms = errs.Sentinel(errs.LimitExceeded, "too many rooms")
	ErrNotInRoom    = errs.Sentinel(errs.NotFound, "not in room")
	ErrNotAuthed    = errs.Sentinel(errs.Unauthorized, "authentication required")
	ErrNoVerifier   = errs.Sentinel(errs.Unavailable, "tokens are not configured")
	ErrNodeInUse    = errs.Sentinel(errs.Conflict, "node id already connected")
)

// finer codes come first: errors.Is on sentinels.
var finerCodes = []struct {
	err  error
	code wire.ErrorCode
}{
	{ErrRoomFull, wire.ErrCodeRoomFull},
	{ErrTooManyRooms, wire.ErrCodeTooManyRooms},
	{ErrNotInRoom, wire.ErrCodeNotInRoom},
	{auth.ErrTokenExpired, wire.ErrCodeTokenExpired},
	{hub.ErrTokenExpired, wire.ErrCodeTokenExpired},
}

var domainCodes = map[errs.Code]wire.ErrorCode{
	errs.Invalid:          wire.ErrCodeInvalid,
	errs.Unauthorized:     wire.ErrCodeUnauthorized,
	errs.PermissionDenied: wire.ErrCodePermissionDenied,
	errs.NotFound:         wire.ErrCodeNotFound,
	errs.Conflict:         wire.ErrCodeConflict,
	errs.LimitExceeded:    wire.ErrCodeLimitExceeded,
	errs.Unavailable:      wire.ErrCodeUnavailable,
	errs.Timeout:          wire.ErrCodeTimeout,
	errs.Internal:         wire.ErrCodeInternal,
}

// wireError returns the code and client-safe message of err.
func wireError(err error) (wire.ErrorCode, string) {
	pub := errs.Public(err)
	for _, f := range finerCodes {
		if errors.Is(err, f.err) {
			return f.code, pub.Error()
		}
	}
	if c, ok := domainCodes[pub.Code]; ok {
		return c, pub.Message
	}
	return wire.ErrCodeInternal, "internal server error"
}

// Why the relay closes a connection, by the hub's disconnect table.
var (
	closeNormal       = hub.DisconnectConnectionClosed
	closeShutdown     = hub.DisconnectShutdown
	closeServerError  = hub.DisconnectServerError
	closeSlow         = hub.DisconnectSlow
	closeWriteError   = hub.DisconnectWriteError
	closeNoPong       = hub.DisconnectNoPong
	closeExpired      = hub.DisconnectExpired
	closeRateLimited  = hub.DisconnectTooManyRequests
	closeInvalidToken = hub.DisconnectInvalidToken
	closeBadRequest   = hub.DisconnectBadRequest
	closeServerFull   = hub.DisconnectConnectionLimit
	closeIPLimit      = hub.Disconnect{Code: hub.DisconnectConnectionLimit.Code, Reason: "too many connections from this address"}
	closeNodeInUse    = hub.Disconnect{Code: hub.DisconnectBadRequest.Code, Reason: "node id already connected"}
	closeUnauthorized = hub.DisconnectPermissionDenied
	closeResume       = hub.Disconnect{Code: hub.DisconnectInsufficientState.Code, Reason: "cannot resume"}
)

// disconnectReason is the metrics label of a close.
func disconnectReason(d hub.Disconnect) string {
	switch d {
	case closeShutdown:
		return "shutdown"
	case closeSlow:
		return "slow_consumer"
	case closeWriteError:
		return "write_error"
	case closeNoPong:
		return "no_heartbeat"
	case closeExpired:
		return "expired"
	case closeRateLimited:
		return "rate_limited"
	case closeInvalidToken, closeUnauthorized:
		return "unauthorized"
	case closeServerFull, closeIPLimit:
		return "server_full"
	case closeNodeInUse:
		return "duplicate_node"
	case closeResume:
		return "resume_refused"
	case closeNormal:
		return "normal"
	}
	if d.Code == closeBadRequest.Code {
		return "protocol_error"
	}
	return "other"
}

// HTTP statuses refusing a WebTransport request (h3, path /relay), by
// the error's domain code.
var httpStatuses = map[errs.Code]int{
	errs.Invalid:          http.StatusBadRequest,
	errs.PermissionDenied: http.StatusForbidden,
	errs.NotFound:         http.StatusNotFound,
	errs.Unavailable:      http.StatusServiceUnavailable,
}

// httpStatus is the status and client-safe message refusing a
// WebTransport request for err.
func httpStatus(err error) (int, string) {
	pub := errs.Public(err)
	if st, ok := httpStatuses[pub.Code]; ok {
		return st, pub.Error()
	}
	return http.StatusInternalServerError, "internal server error"
}
