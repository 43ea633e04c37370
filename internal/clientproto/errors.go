package clientproto

import (
	"errors"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/centrifugo"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// The client protocol's wire for errors: Centrifugo's codes, from the table
// shared with the server API (internal/centrifugo). Disconnect codes are
// the hub's table (hub.Disconnect*).

// protoError converts err to a client-protocol error: an application
// error (hub.AppError) keeps its code and message, a domain error gets
// Centrifugo's code (the shared table in internal/centrifugo) and its
// message, and anything else (or an Internal error) is 100 "internal
// server error", temporary. Timeouts are temporary too.
func protoError(err error) *protocol.Error {
	var ae *hub.AppError
	if errors.As(err, &ae) {
		return &protocol.Error{Code: ae.Code, Message: ae.Message}
	}
	e := errs.Public(err)
	return &protocol.Error{Code: centrifugo.Code(e), Message: e.Message, Temporary: e.Temporary || e.Code == errs.Timeout}
}

// knownCode reports whether code is one the server sends on its own (a
// bounded metrics label), as opposed to an application code.
func knownCode(code uint32) bool {
	if code >= centrifugo.CodeInternal && code <= centrifugo.CodeUnrecoverablePosition {
		return true
	}
	_, ok := hub.DisconnectByCode(code)
	return ok
}
