package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// RPCAppErrorCode is the Centrifugo error code for a handler error reported
// by a worker (codes >= 1000 are reserved for applications).
const RPCAppErrorCode = 1000

// RPCAdapter executes the hub's client rpc commands as worker tasks:
// taskId = method, input = data (must be JSON; empty means null), context
// {"user": …, "client": …}. Only exposed methods are called (see
// Pool.Exposed).
//
// Error mapping (the one place for rpc):
//   - not exposed, or the worker answers NOT_FOUND → hub.ErrMethodNotFound
//   - data not valid JSON → hub.ErrBadRequest
//   - OVERLOADED → hub.ErrTooManyRequests
//   - TIMEOUT → errs.Timeout; WORKER_CRASHED, SHUTTING_DOWN, CANCELED →
//     errs.Unavailable; both temporary with a short message (code 100 on
//     the Centrifugo wire)
//   - a handler error → hub.AppError with code 1000 with the worker's message; if the
//     worker's code is a decimal number from 1000 to 4294967295 that number
//     is used instead, so workers can choose application codes.
type RPCAdapter struct {
	pool *Pool
}

var _ hub.RPCHandler = (*RPCAdapter)(nil)

// NewRPCAdapter returns a hub.RPCHandler backed by p.
func NewRPCAdapter(p *Pool) *RPCAdapter { return &RPCAdapter{pool: p} }

// HandleRPC implements hub.RPCHandler. It is safe for concurrent use and
// returns when ctx ends, the worker replies or the pool's timeout expires.
func (a *RPCAdapter) HandleRPC(ctx context.Context, req hub.RPCRequest) ([]byte, error) {
	if !a.pool.Exposed(KindTask, req.Method) {
		return nil, hub.ErrMethodNotFound
	}
	res, err := a.pool.Do(ctx, Request{
		Kind:    KindTask,
		ID:      req.Method,
		Input:   json.RawMessage(req.Data),
		Context: &RequestContext{User: req.User, Client: req.Client},
		rpc:     true,
	})
	if err != nil {
		return nil, rpcError(err)
	}
	if res == nil {
		return []byte("null"), nil
	}
	return res, nil
}

func rpcError(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err // not coded: internal to every adapter
	}
	switch e.Code {
	case CodeNotFound, CodeNotExposed:
		return hub.ErrMethodNotFound
	case CodeInvalidInput:
		return hub.ErrBadRequest
	case CodeOverloaded:
		return hub.ErrTooManyRequests
	case CodeTimeout:
		return &errs.Error{Code: errs.Timeout, Message: e.Message, Temporary: true}
	case CodeWorkerCrashed, CodeShuttingDown, CodeCanceled:
		return &errs.Error{Code: errs.Unavailable, Message: e.Message, Temporary: true}
	}
	if !e.Remote {
		return err
	}
	code := uint32(RPCAppErrorCode)
	if n, perr := strconv.ParseUint(e.Code, 10, 32); perr == nil && n >= RPCAppErrorCode {
		code = uint32(n)
	}
	return &hub.AppError{Code: code, Message: e.Message}
}
