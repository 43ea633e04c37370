package hub

import (
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// The hub returns domain errors (*errs.Error); adapters map them to their
// wire in one table each (clientproto, api). Conditions callers and the
// Centrifugo tables branch on are the sentinels below; errors.Is matches a
// sentinel's code and reason, so fresh copies with other messages match.
var (
	ErrInternal         = &errs.Error{Code: errs.Internal, Message: "internal server error", Temporary: true}
	ErrUnauthorized     = errs.New(errs.Unauthorized, "unauthorized")
	ErrPermissionDenied = errs.New(errs.PermissionDenied, "permission denied")
	ErrLimitExceeded    = errs.New(errs.LimitExceeded, "limit exceeded")
	ErrBadRequest       = errs.New(errs.Invalid, "bad request")
	ErrNotAvailable     = errs.New(errs.Unavailable, "not available")
	// ErrRetryLater is 108 "not available" marked temporary: the official
	// clients retry (an engine resubscribing after a reconnect).
	ErrRetryLater = &errs.Error{Code: errs.Unavailable, Message: "not available", Reason: "retry later", Temporary: true}

	ErrUnknownChannel        = errs.Sentinel(errs.NotFound, "unknown channel")
	ErrMethodNotFound        = errs.Sentinel(errs.NotFound, "method not found")
	ErrAlreadySubscribed     = errs.Sentinel(errs.Conflict, "already subscribed")
	ErrTokenExpired          = errs.Sentinel(errs.Unauthorized, "token expired")
	ErrUnrecoverablePosition = errs.Sentinel(errs.NotFound, "unrecoverable position")
	ErrTooManyRequests       = &errs.Error{Code: errs.LimitExceeded, Reason: "too many requests", Message: "too many requests", Temporary: true}
	// ErrNoClient is returned by Deliver for a client id not connected here.
	ErrNoClient = errs.Sentinel(errs.NotFound, "no such client")
)

// Sentinels lists the hub's sentinels, for adapter table tests.
var Sentinels = []*errs.Error{ErrInternal, ErrUnauthorized, ErrPermissionDenied, ErrLimitExceeded,
	ErrBadRequest, ErrNotAvailable, ErrUnknownChannel, ErrMethodNotFound, ErrAlreadySubscribed,
	ErrTokenExpired, ErrUnrecoverablePosition, ErrTooManyRequests, ErrNoClient, ErrRetryLater}

// AppError is an error an application handler (an RPC worker) sends to
// the client as is, with its own code (1000 and above in Centrifugo's
// numbering, which adapters pass through).
type AppError struct {
	Code    uint32
	Message string
}

func (e *AppError) Error() string { return fmt.Sprintf("application error %d: %s", e.Code, e.Message) }

// IsInternal reports whether err is an internal error, which adapters log
// and answer with a generic message: neither an application error nor a
// domain error of another code than errs.Internal.
func IsInternal(err error) bool {
	var ae *AppError
	return !errors.As(err, &ae) && errs.CodeOf(err) == errs.Internal
}

// Disconnect tells a client why the server closes its connection. Codes
// 3000-3499 invite a reconnect, 3500-4999 ask the client not to reconnect.
type Disconnect struct {
	Code   uint32
	Reason string
}

// Codes a caller may choose for a disconnect (server API disconnect).
const (
	MinDisconnectCode = 3000
	MaxDisconnectCode = 4999
)

// Reconnect reports whether clients should reconnect after d.
func (d Disconnect) Reconnect() bool { return d.Code < 3500 || d.Code >= 5000 }

// Disconnect reasons (Centrifugo numbering): the one table of disconnect
// codes; every adapter sends them by name.
var (
	DisconnectConnectionClosed  = Disconnect{3000, "connection closed"}
	DisconnectShutdown          = Disconnect{3001, "shutdown"}
	DisconnectServerError       = Disconnect{3004, "internal server error"}
	DisconnectExpired           = Disconnect{3005, "connection expired"}
	DisconnectSubExpired        = Disconnect{3006, "subscription expired"}
	DisconnectSlow              = Disconnect{3008, "slow"}
	DisconnectWriteError        = Disconnect{3009, "write error"}
	DisconnectInsufficientState = Disconnect{3010, "insufficient state"}
	DisconnectForceReconnect    = Disconnect{3011, "force reconnect"}
	DisconnectNoPong            = Disconnect{3012, "no pong"}
	DisconnectTooManyRequests   = Disconnect{3013, "too many requests"}
	DisconnectInvalidToken      = Disconnect{3500, "invalid token"}
	DisconnectBadRequest        = Disconnect{3501, "bad request"}
	DisconnectStale             = Disconnect{3502, "stale"}
	DisconnectForceNoReconnect  = Disconnect{3503, "force disconnect"}
	DisconnectConnectionLimit   = Disconnect{3504, "connection limit"}
	DisconnectChannelLimit      = Disconnect{3505, "channel limit"}
	// DisconnectInappropriateProtocol closes a client whose wire format
	// cannot carry a message (binary data to a JSON client).
	DisconnectInappropriateProtocol = Disconnect{3506, "inappropriate protocol"}
	DisconnectPermissionDenied      = Disconnect{3507, "permission denied"}
	DisconnectNotAvailable          = Disconnect{3508, "not available"}
	DisconnectTooManyErrors         = Disconnect{3509, "too many errors"}
)

// Disconnects lists the disconnect table.
var Disconnects = []Disconnect{DisconnectConnectionClosed, DisconnectShutdown, DisconnectServerError,
	DisconnectExpired, DisconnectSubExpired, DisconnectSlow, DisconnectWriteError, DisconnectInsufficientState,
	DisconnectForceReconnect, DisconnectNoPong, DisconnectTooManyRequests, DisconnectInvalidToken,
	DisconnectBadRequest, DisconnectStale, DisconnectForceNoReconnect, DisconnectConnectionLimit,
	DisconnectChannelLimit, DisconnectInappropriateProtocol, DisconnectPermissionDenied,
	DisconnectNotAvailable, DisconnectTooManyErrors}

// DisconnectByCode returns the table's entry for code.
func DisconnectByCode(code uint32) (Disconnect, bool) {
	for _, d := range Disconnects {
		if d.Code == code {
			return d, true
		}
	}
	return Disconnect{}, false
}
