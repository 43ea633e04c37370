package circles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformedResponse is wrapped by every DecodeResponses error.
var ErrMalformedResponse = errors.New("circles: malformed json-rpc response")

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// EncodeRequest returns a request with a numeric id.
func EncodeRequest(id uint64, method string, params any) ([]byte, error) {
	b, err := json.Marshal(request{JSONRPC: Version, ID: id, Method: method, Params: params})
	if err != nil {
		return nil, fmt.Errorf("circles: encode %s params: %w", method, err)
	}
	return b, nil
}

// Response is one decoded response. HasID is false when its id is null or
// absent (the server could not read the request's id). Exactly one of
// Result and Error is set.
type Response struct {
	ID     uint64
	HasID  bool
	Result json.RawMessage
	Error  *Error
}

// DecodeResponses decodes one text frame holding a response or a batch of
// them. Server-to-client notifications (a method and no id) are skipped.
// Ids must be non-negative integers, as numbers or decimal strings. It
// never panics; errors wrap ErrMalformedResponse.
func DecodeResponses(data []byte) ([]Response, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformedResponse)
	}
	var raws []json.RawMessage
	if data[0] == '[' {
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%w: empty batch", ErrMalformedResponse)
		}
	} else {
		raws = []json.RawMessage{data}
	}
	out := make([]Response, 0, len(raws))
	for _, raw := range raws {
		r, skip, err := decodeResponse(raw)
		if err != nil {
			return nil, err
		}
		if !skip {
			out = append(out, r)
		}
	}
	return out, nil
}

func decodeResponse(raw json.RawMessage) (Response, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Response{}, false, fmt.Errorf("%w: not an object", ErrMalformedResponse)
	}
	// A map keeps "result": null apart from an absent result.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Response{}, false, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	}
	isNull := func(v json.RawMessage) bool { return len(v) == 0 || bytes.Equal(v, []byte("null")) }
	if v, ok := fields["jsonrpc"]; ok {
		var version string
		if err := json.Unmarshal(v, &version); err != nil || version != Version {
			return Response{}, false, fmt.Errorf("%w: jsonrpc version %s", ErrMalformedResponse, truncate(string(v), 20))
		}
	}
	id := fields["id"]
	if _, isCall := fields["method"]; isCall && isNull(id) {
		return Response{}, true, nil // a notification from the server
	}
	var r Response
	if !isNull(id) {
		n, err := parseID(id)
		if err != nil {
			return Response{}, false, err
		}
		r.ID, r.HasID = n, true
	}
	result, hasResult := fields["result"]
	switch errField := fields["error"]; {
	case !isNull(errField):
		var e Error
		if err := json.Unmarshal(errField, &e); err != nil {
			return Response{}, false, fmt.Errorf("%w: error object: %v", ErrMalformedResponse, err)
		}
		r.Error = &e
	case hasResult:
		r.Result = result
	default:
		return Response{}, false, fmt.Errorf("%w: neither result nor error", ErrMalformedResponse)
	}
	return r, false, nil
}

func parseID(raw json.RawMessage) (uint64, error) {
	s := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%w: id: %v", ErrMalformedResponse, err)
		}
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: id %s is not a request id", ErrMalformedResponse, truncate(string(raw), 40))
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
