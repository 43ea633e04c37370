package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// JSON-RPC error codes used by circles, plus the standard JSON-RPC 2.0 codes.
const (
	CodeExecutionError     = -32000 // script failed or timed out; reason in Data
	CodeAuthRequired       = -32001 // play before authenticate on an auth-enabled server
	CodeInvalidCredentials = -32002 // bad, expired or reused nonce, or wrong signature
	CodeTooManyRequests    = -32003 // Switchboard: a per-connection limit was hit
	CodeParseError         = -32700
	CodeInvalidRequest     = -32600
	CodeMethodNotFound     = -32601
	CodeInvalidParams      = -32602
	CodeInternalError      = -32603
)

// RPCError is a JSON-RPC error object returned by the server. Calls return it
// as *RPCError; use errors.As to inspect Code.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error formats the error as "rpc error CODE: MESSAGE[: DATA]"; a JSON string
// in Data is shown unquoted.
func (e *RPCError) Error() string {
	msg := "rpc error " + strconv.Itoa(e.Code) + ": " + e.Message
	if d := e.DataString(); d != "" {
		msg += ": " + d
	}
	return msg
}

// DataString returns Data as text: the string itself when Data is a JSON
// string, the raw JSON otherwise, "" when absent or null.
func (e *RPCError) DataString() string {
	if len(e.Data) == 0 || bytes.Equal(bytes.TrimSpace(e.Data), []byte("null")) {
		return ""
	}
	var s string
	if err := json.Unmarshal(e.Data, &s); err == nil {
		return s
	}
	return string(e.Data)
}

// request is an outgoing JSON-RPC 2.0 request. The client only ever sends
// numeric ids.
type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// response is one decoded JSON-RPC response. HasID is false for responses
// whose id is null or absent (the server could not read the request id).
type response struct {
	ID     uint64
	HasID  bool
	Result json.RawMessage
	Error  *RPCError
}

var errBadResponse = errors.New("client: malformed json-rpc response")

// decodeResponses decodes one text frame holding a JSON-RPC response object or
// a batch array of them. Server-to-client notifications (objects with a method
// and no id) are skipped. It never panics on any input.
func decodeResponses(data []byte) ([]response, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty frame", errBadResponse)
	}
	var raws []json.RawMessage
	if data[0] == '[' {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadResponse, err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%w: empty batch", errBadResponse)
		}
	} else {
		raws = []json.RawMessage{data}
	}
	out := make([]response, 0, len(raws))
	for _, raw := range raws {
		r, skip, err := decodeOne(raw)
		if err != nil {
			return nil, err
		}
		if !skip {
			out = append(out, r)
		}
	}
	return out, nil
}

func decodeOne(raw json.RawMessage) (response, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return response{}, false, fmt.Errorf("%w: not an object", errBadResponse)
	}
	// A map keeps "result": null apart from an absent result.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return response{}, false, fmt.Errorf("%w: %v", errBadResponse, err)
	}
	isNull := func(v json.RawMessage) bool { return len(v) == 0 || bytes.Equal(v, []byte("null")) }
	if v, ok := fields["jsonrpc"]; ok {
		var version string
		if err := json.Unmarshal(v, &version); err != nil || version != "2.0" {
			return response{}, false, fmt.Errorf("%w: jsonrpc version %s", errBadResponse, truncate(string(v), 20))
		}
	}
	id := fields["id"]
	if _, isCall := fields["method"]; isCall && isNull(id) {
		return response{}, true, nil // notification from the server: not for a pending call
	}
	var r response
	if !isNull(id) {
		n, err := parseID(id)
		if err != nil {
			return response{}, false, err
		}
		r.ID, r.HasID = n, true
	}
	result, hasResult := fields["result"]
	switch errField := fields["error"]; {
	case !isNull(errField):
		var e RPCError
		if err := json.Unmarshal(errField, &e); err != nil {
			return response{}, false, fmt.Errorf("%w: error object: %v", errBadResponse, err)
		}
		r.Error = &e
	case hasResult:
		r.Result = result
	default:
		return response{}, false, fmt.Errorf("%w: neither result nor error", errBadResponse)
	}
	return r, false, nil
}

// parseID accepts a non-negative integer id, as a JSON number or a decimal
// string (some servers stringify ids).
func parseID(raw json.RawMessage) (uint64, error) {
	s := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%w: id: %v", errBadResponse, err)
		}
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: id %s is not a request id", errBadResponse, truncate(string(raw), 40))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
