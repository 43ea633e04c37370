package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Kind is the kind of a request: a task (returns a result) or an event.
type Kind uint8

// Request kinds.
const (
	KindTask Kind = iota
	KindEvent
)

func (k Kind) String() string {
	if k == KindEvent {
		return "event"
	}
	return "task"
}

// RequestContext is sent to the worker as "context" with every request.
// Empty fields are omitted.
type RequestContext struct {
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path,omitempty"`
	Query   map[string]string `json:"query,omitempty"`
	Headers map[string]string `json:"headers,omitempty"` // lower-cased names
	User    string            `json:"user,omitempty"`
	Client  string            `json:"client,omitempty"`
}

// Request is one task or event for the pool.
type Request struct {
	Kind Kind
	// ID is the task id or event id.
	ID string
	// Input is the task input or event payload: valid JSON, or empty for
	// null.
	Input json.RawMessage
	// Context is passed to the worker as is (nil: omitted).
	Context *RequestContext

	// Calls, when not nil, serves the "call" lines the worker sends while
	// it handles this request; without it such calls get an error reply.
	Calls CallHandler

	rpc bool // metrics label "rpc"
}

// CallHandler serves a worker's calls back into the server for one
// request: a line {"type":"call","id":REQ,"call":N,"method":M,"params":P}
// is answered with {"type":"callReply","id":REQ,"call":N,"ok":true,
// "result":R} or ..."ok":false,"error":{"code":C,"message":T}}. ctx is the
// request's context. A returned *Error gives the reply its Code and
// Message; any other error is sent as CodeExecution with its text, so a
// handler must only return client-safe errors. The result must be valid
// JSON on one line (nil means null). Calls of one worker may run
// concurrently; a handler must be safe for that.
type CallHandler interface {
	HandleCall(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

// reply is a decoded line from a worker.
type reply struct {
	ready  bool
	tasks  []string
	events []string

	id uint64
	ok bool

	isCall bool // a worker-to-server call for request id
	callID uint64
	method string
	params json.RawMessage

	result json.RawMessage
	code   string
	msg    string
	// recycle: the worker asks to be replaced after this reply.
	recycle bool
}

// wireIn is the JSON shape of a worker line.
type wireIn struct {
	Type   string          `json:"type"`
	ID     *uint64         `json:"id"`
	OK     *bool           `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
	Tasks   []string        `json:"tasks"`
	Events  []string        `json:"events"`
	Recycle bool            `json:"recycle"`
	Call    *uint64         `json:"call"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

var errBlankLine = errors.New("blank line")

// decodeLine parses one line from a worker. It returns errBlankLine for an
// empty or whitespace-only line (ignored by the pool) and another error for
// anything that is not a valid protocol message.
func decodeLine(line []byte) (reply, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return reply{}, errBlankLine
	}
	if line[0] != '{' {
		return reply{}, errors.New("line is not a JSON object")
	}
	if r, ok := decodeFast(line); ok {
		return r, nil
	}
	return decodeSlow(line)
}

// decodeFast handles the canonical success replies the SDKs write,
// {"id":N,"ok":true} and {"id":N,"ok":true,"result":R}, without
// reflection. It reports false for anything else; decodeSlow then decides.
func decodeFast(line []byte) (reply, bool) {
	const pre = `{"id":`
	if !bytes.HasPrefix(line, []byte(pre)) {
		return reply{}, false
	}
	i := len(pre)
	start := i
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	n := i - start
	if n == 0 || n > 20 || (n > 1 && line[start] == '0') {
		return reply{}, false
	}
	id, err := strconv.ParseUint(string(line[start:i]), 10, 64)
	if err != nil {
		return reply{}, false
	}
	rest := line[i:]
	if string(rest) == `,"ok":true}` {
		return reply{id: id, ok: true}, true
	}
	const res = `,"ok":true,"result":`
	if !bytes.HasPrefix(rest, []byte(res)) || rest[len(rest)-1] != '}' {
		return reply{}, false
	}
	v := rest[len(res) : len(rest)-1]
	if !json.Valid(v) {
		return reply{}, false
	}
	r := reply{id: id, ok: true}
	if string(v) != "null" {
		r.result = append(json.RawMessage(nil), v...)
	}
	return r, true
}

func decodeSlow(line []byte) (reply, error) {
	var w wireIn
	if err := json.Unmarshal(line, &w); err != nil {
		return reply{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if w.Type == "ready" {
		return reply{ready: true, tasks: w.Tasks, events: w.Events}, nil
	}
	if w.Type == "call" {
		if w.ID == nil || w.Call == nil {
			return reply{}, errors.New("call without id or call number")
		}
		if w.Method == "" {
			return reply{}, errors.New("call without method")
		}
		r := reply{isCall: true, id: *w.ID, callID: *w.Call, method: w.Method}
		if len(w.Params) > 0 && !bytes.Equal(w.Params, []byte("null")) {
			r.params = w.Params
		}
		return r, nil
	}
	if w.Type != "" && w.Type != "reply" && w.Type != "result" {
		return reply{}, fmt.Errorf("unknown message type %q", w.Type)
	}
	if w.ID == nil {
		return reply{}, errors.New("reply without id")
	}
	if w.OK == nil {
		return reply{}, errors.New("reply without ok")
	}
	r := reply{id: *w.ID, ok: *w.OK, recycle: w.Recycle}
	if r.ok {
		if len(w.Result) > 0 && !bytes.Equal(w.Result, []byte("null")) {
			r.result = w.Result
		}
		return r, nil
	}
	if w.Error != nil {
		r.code, r.msg = w.Error.Code, w.Error.Message
	}
	if r.code == "" {
		r.code = CodeExecution
	}
	if r.msg == "" {
		r.msg = "handler failed"
	}
	return r, nil
}

// appendRequest appends the line for one request, ending in '\n'. input
// must be valid compact JSON (or empty), ctxJSON a JSON object or empty.
func appendRequest(b []byte, kind Kind, id uint64, name string, input, ctxJSON []byte) []byte {
	if kind == KindEvent {
		b = append(b, `{"type":"event","id":`...)
	} else {
		b = append(b, `{"type":"task","id":`...)
	}
	b = strconv.AppendUint(b, id, 10)
	if kind == KindEvent {
		b = append(b, `,"eventId":`...)
	} else {
		b = append(b, `,"taskId":`...)
	}
	b = appendJSONString(b, name)
	if kind == KindEvent {
		b = append(b, `,"payload":`...)
	} else {
		b = append(b, `,"input":`...)
	}
	if len(input) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, input...)
	}
	if len(ctxJSON) > 0 {
		b = append(b, `,"context":`...)
		b = append(b, ctxJSON...)
	}
	return append(b, "}\n"...)
}

// appendControl appends a ping, cancel or shutdown line.
func appendControl(b []byte, typ string, id uint64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = strconv.AppendUint(b, id, 10)
	return append(b, "}\n"...)
}

// appendCallReply appends the answer to a worker's call: result on
// success (code == ""), else the error code and message.
func appendCallReply(b []byte, id, callID uint64, result json.RawMessage, code, msg string) []byte {
	b = append(b, `{"type":"callReply","id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"call":`...)
	b = strconv.AppendUint(b, callID, 10)
	if code == "" {
		b = append(b, `,"ok":true,"result":`...)
		if len(result) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, result...)
		}
		return append(b, "}\n"...)
	}
	b = append(b, `,"ok":false,"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	return append(b, "}}\n"...)
}

// appendJSONString appends s as a JSON string. Plain ASCII takes a fast
// path; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s)
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// normalizeInput checks that in is valid JSON and removes line breaks so
// that it fits on one protocol line.
func normalizeInput(in []byte) ([]byte, error) {
	if len(bytes.TrimSpace(in)) == 0 {
		return nil, nil
	}
	if !json.Valid(in) {
		return nil, ErrInvalidInput
	}
	if bytes.ContainsAny(in, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, in); err != nil {
			return nil, ErrInvalidInput
		}
		return buf.Bytes(), nil
	}
	return in, nil
}

// appendJSON appends c as a JSON object (the same shape encoding/json
// produces for the struct tags, without reflection).
func (c *RequestContext) appendJSON(b []byte) []byte {
	b = append(b, '{')
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	strMap := func(m map[string]string) {
		b = append(b, '{')
		i := 0
		for k, v := range m {
			if i > 0 {
				b = append(b, ',')
			}
			i++
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v)
		}
		b = append(b, '}')
	}
	if c.Method != "" {
		field("method")
		b = appendJSONString(b, c.Method)
	}
	if c.Path != "" {
		field("path")
		b = appendJSONString(b, c.Path)
	}
	if len(c.Query) > 0 {
		field("query")
		strMap(c.Query)
	}
	if len(c.Headers) > 0 {
		field("headers")
		strMap(c.Headers)
	}
	if c.User != "" {
		field("user")
		b = appendJSONString(b, c.User)
	}
	if c.Client != "" {
		field("client")
		b = appendJSONString(b, c.Client)
	}
	return append(b, '}')
}
