package bench

import (
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
	decode(frame []byte, fn func(*protocol.Reply)) error
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

func (jsonCodec) decode(frame []byte, fn func(*protocol.Reply)) error {
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

func (protobufCodec) decode(frame []byte, fn func(*protocol.Reply)) error {
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
