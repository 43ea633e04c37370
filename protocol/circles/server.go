package circles

import (
	"bytes"
	"encoding/json"
)

// Request is one decoded request. ID is nil for a notification, otherwise
// the raw JSON id (a string, a number or null).
type Request struct {
	Method string
	Params json.RawMessage
	ID     json.RawMessage
}

// IsNotification reports whether r expects no response.
func (r *Request) IsNotification() bool { return r.ID == nil }

var nullID = json.RawMessage("null")

// Frame is a decoded text frame: one request or a batch.
type Frame struct {
	Batch bool
	// Requests holds the entries in order; Invalid[i] is set for entries
	// that were invalid and must be answered with that error (addressed to
	// Requests[i].ID, null when unreadable).
	Requests []Request
	Invalid  []*Error
	// Fatal is set when the frame as a whole is answered by one error with
	// a null id (parse error, empty or oversized batch).
	Fatal *Error
}

// DecodeFrame parses a frame holding at most maxBatch requests. It never
// panics; malformed input yields the error JSON-RPC 2.0 prescribes.
func DecodeFrame(data []byte, maxBatch int) Frame {
	if !json.Valid(data) {
		return Frame{Fatal: NewError(CodeParseError, nil)}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return Frame{Fatal: NewError(CodeParseError, nil)}
		}
		if len(raws) == 0 {
			return Frame{Fatal: NewError(CodeInvalidRequest, "empty batch")}
		}
		if len(raws) > maxBatch {
			return Frame{Fatal: NewError(CodeInvalidRequest, "batch too large")}
		}
		f := Frame{Batch: true, Requests: make([]Request, len(raws)), Invalid: make([]*Error, len(raws))}
		for i, raw := range raws {
			f.Requests[i], f.Invalid[i] = decodeRequest(raw)
		}
		return f
	}
	r, bad := decodeRequest(trimmed)
	return Frame{Requests: []Request{r}, Invalid: []*Error{bad}}
}

// decodeRequest validates one request object. On failure the request still
// carries the id when it could be read, so the error can be addressed.
func decodeRequest(raw json.RawMessage) (Request, *Error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return Request{ID: nullID}, NewError(CodeInvalidRequest, "request must be an object")
	}
	var r Request
	if id, ok := obj["id"]; ok {
		switch firstByte(id) {
		case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			r.ID = id
		default:
			return Request{ID: nullID}, NewError(CodeInvalidRequest, "id must be a string, a number or null")
		}
	}
	fail := func(msg string) (Request, *Error) {
		id := r.ID
		if id == nil {
			id = nullID
		}
		return Request{ID: id}, NewError(CodeInvalidRequest, msg)
	}
	var version string
	if err := json.Unmarshal(obj["jsonrpc"], &version); err != nil || version != Version {
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

// DecodeParams decodes params into dst (a pointer to a struct) from an
// object, or from an array mapped positionally onto names. Absent params
// decode as an empty object. Errors are CodeInvalidParams.
func DecodeParams(params json.RawMessage, dst any, names ...string) *Error {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if firstByte(params) == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(params, &arr); err != nil {
			return NewError(CodeInvalidParams, "malformed params")
		}
		if len(arr) > len(names) {
			return NewError(CodeInvalidParams, "too many positional params")
		}
		obj := make(map[string]json.RawMessage, len(arr))
		for i, v := range arr {
			obj[names[i]] = v
		}
		params, _ = json.Marshal(obj)
	}
	if err := json.Unmarshal(params, dst); err != nil {
		return NewError(CodeInvalidParams, "params have the wrong types")
	}
	return nil
}

type okResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
}

type errResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *Error          `json:"error"`
}

// EncodeResponse returns one response: the error when rerr is not nil,
// else result. A nil id is encoded as null. A result that cannot be
// encoded yields an internal error, never invalid JSON.
func EncodeResponse(id json.RawMessage, result any, rerr *Error) json.RawMessage {
	if id == nil {
		id = nullID
	}
	var b []byte
	var err error
	if rerr != nil {
		b, err = json.Marshal(errResponse{JSONRPC: Version, ID: id, Error: rerr})
	} else {
		var res []byte
		res, err = json.Marshal(result)
		if err == nil {
			b, err = json.Marshal(okResponse{JSONRPC: Version, ID: id, Result: res})
		}
	}
	if err != nil {
		b, _ = json.Marshal(errResponse{JSONRPC: Version, ID: id, Error: NewError(CodeInternalError, nil)})
	}
	return b
}

// EncodeBatch returns the batch response holding resps, in order.
func EncodeBatch(resps []json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(resps) // RawMessages from EncodeResponse are valid
	return b
}
