package hub

import "context"

// RPCRequest is a client rpc command routed to an RPCHandler.
type RPCRequest struct {
	Client string // client id
	User   string // authenticated user id, "" for anonymous
	Method string
	Data   []byte // raw JSON (JSON protocol) or bytes (Protobuf protocol)
}

// RPCHandler executes client rpc commands. It must be safe for concurrent
// use and must honour ctx cancellation. Returned errors that are (or wrap)
// *Error keep their code; any other error becomes ErrInternal on the wire.
// With no handler configured the server answers ErrMethodNotFound.
type RPCHandler interface {
	HandleRPC(ctx context.Context, req RPCRequest) ([]byte, error)
}
