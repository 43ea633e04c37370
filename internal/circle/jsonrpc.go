package circle

import (
	"bytes"
	"encoding/json"
)

// JSON-RPC 2.0 error codes used by the circles protocol.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	CodeExecution      = -32000 // play failed: script error, timeout, queue full
	CodeAuthRequired   = -32001 // play before authenticate with auth enabled
	CodeInvalidCreds   = -32002 // authenticate failed
	CodeTooMany        = -32003 // a per-connection limit was hit
)

var codeMessages = map[int]string{
	CodeParseError:     "Parse error",
	CodeInvalidRequest: "Invalid Request",
	CodeMethodNotFound: "Method not found",
	CodeInvalidParams:  "Invalid params",
	CodeInternalError:  "Internal error",
	CodeExecution:      "Execution Error",
	CodeAuthRequired:   "Authentication Required",
	CodeInvalidCreds:   "Invalid Credentials",
	CodeTooMany:        "Too Many Requests",
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return e.Message }

func newError(code int, data any) *RPCError {
	return &RPCError{Code: code, Message: codeMessages[code], Data: data}
}

// request is one decoded JSON-RPC request. ID is nil for a notification,
// otherwise the raw JSON id (string, number or null).
type request struct {
	Method string
	Params json.RawMessage
	ID     json.RawMessage
}

func (r *request) notification() bool { return r.ID == nil }

var nullID = json.RawMessage("null")

type okResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
}

type errResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *RPCError       `json:"error"`
}

// encodeResponse returns the JSON of one response; id nil means null.
func encodeResponse(id json.RawMessage, result any, rerr *RPCError) json.RawMessage {
	if id == nil {
		id = nullID
	}
	var b []byte
	var err error
	if rerr != nil {
		b, err = json.Marshal(errResponse{JSONRPC: "2.0", ID: id, Error: rerr})
	} else {
		var res []byte
		res, err = json.Marshal(result)
		if err == nil {
			b, err = json.Marshal(okResponse{JSONRPC: "2.0", ID: id, Result: res})
		}
	}
	if err != nil { // cannot happen with our types; never send garbage
		b, _ = json.Marshal(errResponse{JSONRPC: "2.0", ID: id, Error: newError(CodeInternalError, nil)})
	}
	return b
}

// frame is a decoded WebSocket text frame: one request or a batch.
type frame struct {
	batch bool
	// reqs holds the valid requests, in order; bad[i] is set for entries
	// that were invalid and must be answered with that error.
	reqs []request
	bad  []*RPCError
	// fatal is set when the frame as a whole is answered by one error
	// (parse error, empty or oversized batch).
	fatal *RPCError
}

// decodeFrame parses a frame. It never panics; any malformed input yields
// the error response JSON-RPC 2.0 prescribes.
func decodeFrame(data []byte, maxBatch int) frame {
	if !json.Valid(data) {
		return frame{fatal: newError(CodeParseError, nil)}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return frame{fatal: newError(CodeParseError, nil)}
		}
		if len(raws) == 0 {
			return frame{fatal: newError(CodeInvalidRequest, "empty batch")}
		}
		if len(raws) > maxBatch {
			return frame{fatal: newError(CodeInvalidRequest, "batch too large")}
		}
		f := frame{batch: true, reqs: make([]request, len(raws)), bad: make([]*RPCError, len(raws))}
		for i, raw := range raws {
			f.reqs[i], f.bad[i] = decodeRequest(raw)
		}
		return f
	}
	r, bad := decodeRequest(trimmed)
	return frame{reqs: []request{r}, bad: []*RPCError{bad}}
}

// decodeRequest validates one request object. On failure the returned
// request still carries the id when it could be read, so the error can be
// addressed to it.
func decodeRequest(raw json.RawMessage) (request, *RPCError) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return request{ID: nullID}, newError(CodeInvalidRequest, "request must be an object")
	}
	var r request
	if id, ok := obj["id"]; ok {
		switch firstByte(id) {
		case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			r.ID = id
		default:
			return request{ID: nullID}, newError(CodeInvalidRequest, "id must be a string, a number or null")
		}
	}
	fail := func(msg string) (request, *RPCError) {
		id := r.ID
		if id == nil {
			id = nullID
		}
		return request{ID: id}, newError(CodeInvalidRequest, msg)
	}
	var version string
	if err := json.Unmarshal(obj["jsonrpc"], &version); err != nil || version != "2.0" {
		return fail(`jsonrpc must be "2.0"`)
	}
	m, ok := obj["method"]
	if !ok || json.Unmarshal(m, &r.Method) != nil || firstByte(m) != '"' {
		return fail("method must be a string")
	}
	if p, ok := obj["params"]; ok {
		switch firstByte(p) {
		case '{', '[':
			r.Params = p
		case 'n': // null params: treated as absent
		default:
			return fail("params must be an object or an array")
		}
	}
	return r, nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// decodeParams decodes params into dst (a pointer to a struct) from an
// object, or from an array mapped positionally onto names. Absent params
// decode as an empty object.
func decodeParams(params json.RawMessage, dst any, names ...string) *RPCError {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if firstByte(params) == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(params, &arr); err != nil {
			return newError(CodeInvalidParams, "malformed params")
		}
		if len(arr) > len(names) {
			return newError(CodeInvalidParams, "too many positional params")
		}
		obj := make(map[string]json.RawMessage, len(arr))
		for i, v := range arr {
			obj[names[i]] = v
		}
		params, _ = json.Marshal(obj)
	}
	if err := json.Unmarshal(params, dst); err != nil {
		return newError(CodeInvalidParams, "params have the wrong types")
	}
	return nil
}
