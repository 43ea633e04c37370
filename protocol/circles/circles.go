// Package circles is the circles wire protocol: JSON-RPC 2.0 over WebSocket
// text frames at ws://host:port/{circle_key}. It holds the method names,
// the error codes, the request and result types, and the codecs of both
// sides (the server's frame decoder and response encoder, the client's
// request encoder and response decoder). The server (internal/circle), the
// Go SDK (package client) and its fake server (client/circletest) all use
// it, so they cannot drift apart. It compiles for GOOS=js GOARCH=wasm.
package circles

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Version is the JSON-RPC version every message carries.
const Version = "2.0"

// Methods.
const (
	// MethodFetchNonce issues a single-use nonce for a public key:
	// FetchNonceParams -> NonceResult.
	MethodFetchNonce = "fetch_nonce"
	// MethodAuthenticate proves the key by signing the nonce (package
	// eip191 for secp256k1 keys): AuthenticateParams -> AuthenticateResult.
	MethodAuthenticate = "authenticate"
	// MethodPlay runs a script on the circle: PlayParams -> string.
	MethodPlay = "play"
	// MethodWhoami tells the circle and the authenticated key: no params ->
	// WhoamiResult.
	MethodWhoami = "whoami"
	// MethodPing answers "pong".
	MethodPing = "ping"
)

// Error codes: the JSON-RPC 2.0 ones and the circles ones.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeExecution: a play failed (script error, timeout, full queue,
	// shutdown); the reason is in Data.
	CodeExecution = -32000
	// CodeAuthRequired: play before authenticate on a server with auth on.
	CodeAuthRequired = -32001
	// CodeInvalidCredentials: a bad, expired or reused nonce, or a wrong
	// signature.
	CodeInvalidCredentials = -32002
	// CodeTooManyRequests: a per-connection limit was hit (plays in
	// flight, outstanding nonces).
	CodeTooManyRequests = -32003
)

var messages = map[int]string{
	CodeParseError:         "Parse error",
	CodeInvalidRequest:     "Invalid Request",
	CodeMethodNotFound:     "Method not found",
	CodeInvalidParams:      "Invalid params",
	CodeInternalError:      "Internal error",
	CodeExecution:          "Execution Error",
	CodeAuthRequired:       "Authentication Required",
	CodeInvalidCredentials: "Invalid Credentials",
	CodeTooManyRequests:    "Too Many Requests",
}

// Message returns the standard message of code ("" for unknown codes).
func Message(code int) string { return messages[code] }

// Error is a JSON-RPC error object. Calls of the Go SDK return it as
// *Error; use errors.As to inspect Code.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// NewError returns the error of code with its standard message and data
// (nil: none) encoded as JSON.
func NewError(code int, data any) *Error {
	e := &Error{Code: code, Message: Message(code)}
	if data != nil {
		if b, err := json.Marshal(data); err == nil {
			e.Data = b
		}
	}
	return e
}

// Error formats the error as "rpc error CODE: MESSAGE[: DATA]"; a JSON
// string in Data is shown unquoted.
func (e *Error) Error() string {
	msg := "rpc error " + strconv.Itoa(e.Code) + ": " + e.Message
	if d := e.DataString(); d != "" {
		msg += ": " + d
	}
	return msg
}

// DataString returns Data as text: the string itself when Data is a JSON
// string, the raw JSON otherwise, "" when absent or null.
func (e *Error) DataString() string {
	if len(e.Data) == 0 || bytes.Equal(bytes.TrimSpace(e.Data), []byte("null")) {
		return ""
	}
	var s string
	if err := json.Unmarshal(e.Data, &s); err == nil {
		return s
	}
	return string(e.Data)
}

// FetchNonceParams are the params of fetch_nonce (positional: [pubkey]).
// PubKey is hex, with or without 0x: a secp256k1 key (66 or 130
// characters) or an Ed25519 key (64).
type FetchNonceParams struct {
	PubKey string `json:"pubkey"`
}

// NonceResult is the result of fetch_nonce. ExpiresAt is in Unix seconds.
type NonceResult struct {
	Nonce     string `json:"nonce"`
	ExpiresAt int64  `json:"expires_at"`
}

// AuthenticateParams are the params of authenticate (positional: [pubkey,
// signature]). Signature is hex (optional 0x): r‖s‖v over the nonce for
// secp256k1, a 64-byte Ed25519 signature otherwise.
type AuthenticateParams struct {
	PubKey    string `json:"pubkey"`
	Signature string `json:"signature"`
}

// AuthenticateResult is the result of authenticate.
type AuthenticateResult struct {
	Authenticated bool `json:"authenticated"`
}

// PlayParams are the params of play (positional: [script]).
type PlayParams struct {
	Script string `json:"script"`
}

// WhoamiResult is the result of whoami; PubKey is nil (JSON null) before
// authentication.
type WhoamiResult struct {
	Circle string  `json:"circle"`
	PubKey *string `json:"pubkey"`
}

// Param names of each method, in positional order (for DecodeParams).
var (
	FetchNonceParamNames   = []string{"pubkey"}
	AuthenticateParamNames = []string{"pubkey", "signature"}
	PlayParamNames         = []string{"script"}
)
