package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/centrifugal/protocol"
	"github.com/lxzan/gws"
	"github.com/mailru/easyjson/jlexer"
)

// codec encodes client commands and decodes server replies of one Centrifugo protocol format.
type codec interface {
	// appendCommand appends one command, framed for batching in a single WebSocket message.
	appendCommand(dst []byte, cmd *protocol.Command) ([]byte, error)
	// decode calls fn for every reply in a WebSocket message; a nil reply is a server ping.
	// Publication pushes may instead go to pub (when not nil) without building a Reply; channel
	// and data alias frame and are valid during the call only.
	decode(frame []byte, fn func(*protocol.Reply), pub func(channel, data []byte)) error
	// pong returns the empty command that answers a server ping.
	pong() []byte
	opcode() gws.Opcode
	subprotocol() string
}

func newCodec(name string) (codec, error) {
	switch name {
	case "", "json":
		return jsonCodec{}, nil
	case "protobuf":
		return protobufCodec{}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (want json or protobuf)", name)
}

type jsonCodec struct{}

func (jsonCodec) appendCommand(dst []byte, cmd *protocol.Command) ([]byte, error) {
	b, err := protocol.NewJSONCommandEncoder().Encode(cmd)
	if err != nil {
		return dst, fmt.Errorf("encode command: %w", err)
	}
	if len(dst) > 0 {
		dst = append(dst, '\n')
	}
	return append(dst, b...), nil
}

func (jsonCodec) decode(frame []byte, fn func(*protocol.Reply), pub func(channel, data []byte)) error {
	for len(frame) > 0 {
		var line []byte
		if i := indexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			line, frame = frame, nil
		}
		line = trimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) == 2 && line[0] == '{' && line[1] == '}' {
			fn(nil)
			continue
		}
		if pub != nil {
			if ch, data, ok := fastJSONPub(line); ok {
				pub(ch, data)
				continue
			}
		}
		r := new(protocol.Reply)
		l := jlexer.Lexer{Data: line}
		r.UnmarshalEasyJSON(&l)
		if err := l.Error(); err != nil {
			return fmt.Errorf("decode json reply: %w", err)
		}
		if isEmptyReply(r) {
			fn(nil)
			continue
		}
		fn(r)
	}
	return nil
}

func (jsonCodec) pong() []byte            { return []byte("{}") }
func (jsonCodec) opcode() gws.Opcode      { return gws.OpcodeText }
func (jsonCodec) subprotocol() string     { return "" }
func (protobufCodec) opcode() gws.Opcode  { return gws.OpcodeBinary }
func (protobufCodec) subprotocol() string { return "centrifuge-protobuf" }
func (protobufCodec) pong() []byte        { return []byte{0} }

type protobufCodec struct{}

func (protobufCodec) appendCommand(dst []byte, cmd *protocol.Command) ([]byte, error) {
	b, err := cmd.MarshalVT()
	if err != nil {
		return dst, fmt.Errorf("encode command: %w", err)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...), nil
}

var errShortFrame = errors.New("decode protobuf reply: truncated length-delimited message")

func (protobufCodec) decode(frame []byte, fn func(*protocol.Reply), _ func(channel, data []byte)) error {
	for len(frame) > 0 {
		l, n := binary.Uvarint(frame)
		if n <= 0 || l > uint64(len(frame)-n) {
			return errShortFrame
		}
		msg := frame[n : n+int(l)]
		frame = frame[n+int(l):]
		if len(msg) == 0 {
			fn(nil)
			continue
		}
		r := new(protocol.Reply)
		if err := r.UnmarshalVT(msg); err != nil {
			return fmt.Errorf("decode protobuf reply: %w", err)
		}
		if isEmptyReply(r) {
			fn(nil)
			continue
		}
		fn(r)
	}
	return nil
}

func isEmptyReply(r *protocol.Reply) bool {
	return r.Id == 0 && r.Error == nil && r.Push == nil && r.Connect == nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var (
	jsonPubPrefix = []byte(`{"push":{"channel":"`)
	jsonPubMiddle = []byte(`","pub":{"data":`)
)

// fastJSONPub recognises the canonical encoding of a publication push,
// {"push":{"channel":"C","pub":{"data":D,...}}}, as both Centrifugo and Switchboard write it,
// and returns C and D without allocating. Anything else (other field order, escapes in the
// channel, non-object data) returns ok=false and goes through the full decoder.
func fastJSONPub(line []byte) (channel, data []byte, ok bool) {
	if !bytes.HasPrefix(line, jsonPubPrefix) {
		return nil, nil, false
	}
	rest := line[len(jsonPubPrefix):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 || bytes.IndexByte(rest[:q], '\\') >= 0 || !bytes.HasPrefix(rest[q:], jsonPubMiddle) {
		return nil, nil, false
	}
	channel = rest[:q]
	rest = rest[q+len(jsonPubMiddle):]
	if len(rest) == 0 || rest[0] != '{' {
		return nil, nil, false
	}
	// Find the end of the data object: count braces outside strings.
	depth, inStr, esc := 0, false, false
	for i, b := range rest {
		switch {
		case esc:
			esc = false
		case inStr:
			if b == '\\' {
				esc = true
			} else if b == '"' {
				inStr = false
			}
		case b == '"':
			inStr = true
		case b == '{':
			depth++
		case b == '}':
			depth--
			if depth == 0 {
				return channel, rest[:i+1], true
			}
		}
	}
	return nil, nil, false
}
