package clientproto

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/centrifugal/protocol"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Wire formats of the protocol, as NewSession takes them. NewServer
// registers both with the hub (hub format names FormatNames).
const (
	FormatJSON     = 0
	FormatProtobuf = 1
)

// FormatNames are the hub format names of FormatJSON and FormatProtobuf.
var FormatNames = [...]string{FormatJSON: "centrifuge-json", FormatProtobuf: "centrifuge-protobuf"}

// format is what differs between the JSON and Protobuf variants of the
// protocol: message framing and reply encoding.
type format interface {
	hub.Encoder
	encodeReply(r *protocol.Reply) ([]byte, error)
	newDecoder(data []byte) protocol.CommandDecoder
	// appendBatch appends msgs as one transport message.
	appendBatch(dst []byte, msgs [][]byte) []byte
	ping() []byte
}

func pubToProto(p *hub.Publication) *protocol.Publication {
	return &protocol.Publication{Data: p.Data, Info: infoToProto(p.Info), Offset: p.Offset, Tags: p.Tags, Time: p.Time}
}

func infoToProto(i *hub.ClientInfo) *protocol.ClientInfo {
	if i == nil {
		return nil
	}
	return &protocol.ClientInfo{User: i.UserID, Client: i.ClientID, ConnInfo: i.ConnInfo, ChanInfo: i.ChanInfo}
}

type jsonCodec struct{}

var jsonPing = []byte("{}")

// errNotText is a JSON message that would not be valid UTF-8: it must
// never go out in a text frame.
var errNotText = errors.New("clientproto: JSON message is not valid UTF-8")

// encodeReply encodes every JSON reply and push. The encoder checks JSON
// syntax but not UTF-8 (raw payloads are copied as they are), so that is
// checked here: no JSON text frame that is not valid UTF-8 is ever built.
func (jsonCodec) encodeReply(r *protocol.Reply) ([]byte, error) {
	b, err := protocol.NewJSONReplyEncoder().Encode(r)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, errNotText
	}
	return b, nil
}

func (jsonCodec) newDecoder(data []byte) protocol.CommandDecoder {
	return protocol.NewJSONCommandDecoder(data)
}

func (jsonCodec) appendBatch(dst []byte, msgs [][]byte) []byte {
	for i, m := range msgs {
		if i > 0 {
			dst = append(dst, '\n')
		}
		dst = append(dst, m...)
	}
	return dst
}

func (jsonCodec) ping() []byte { return jsonPing }

func (c jsonCodec) push(p *protocol.Push) ([]byte, error) {
	return c.encodeReply(&protocol.Reply{Push: p})
}

func (c jsonCodec) EncodePublication(ch string, pub *hub.Publication) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Pub: pubToProto(pub)})
}

func (c jsonCodec) EncodeJoin(ch string, info *hub.ClientInfo) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Join: &protocol.Join{Info: infoToProto(info)}})
}

func (c jsonCodec) EncodeLeave(ch string, info *hub.ClientInfo) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Leave: &protocol.Leave{Info: infoToProto(info)}})
}

func (c jsonCodec) EncodeMessage(data []byte) ([]byte, error) {
	return c.push(&protocol.Push{Message: &protocol.Message{Data: data}})
}

type protobufCodec struct{}

var protobufPing = []byte{0}

func (protobufCodec) encodeReply(r *protocol.Reply) ([]byte, error) {
	size := r.SizeVT()
	buf := make([]byte, binary.MaxVarintLen64+size)
	n := binary.PutUvarint(buf, uint64(size))
	m, err := r.MarshalToSizedBufferVT(buf[n : n+size])
	if err != nil {
		return nil, err
	}
	return buf[:n+m], nil
}

func (protobufCodec) newDecoder(data []byte) protocol.CommandDecoder {
	return protocol.NewProtobufCommandDecoder(data)
}

func (protobufCodec) appendBatch(dst []byte, msgs [][]byte) []byte {
	for _, m := range msgs {
		dst = append(dst, m...)
	}
	return dst
}

func (protobufCodec) ping() []byte { return protobufPing }

func (c protobufCodec) push(p *protocol.Push) ([]byte, error) {
	return c.encodeReply(&protocol.Reply{Push: p})
}

func (c protobufCodec) EncodePublication(ch string, pub *hub.Publication) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Pub: pubToProto(pub)})
}

func (c protobufCodec) EncodeJoin(ch string, info *hub.ClientInfo) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Join: &protocol.Join{Info: infoToProto(info)}})
}

func (c protobufCodec) EncodeLeave(ch string, info *hub.ClientInfo) ([]byte, error) {
	return c.push(&protocol.Push{Channel: ch, Leave: &protocol.Leave{Info: infoToProto(info)}})
}

func (c protobufCodec) EncodeMessage(data []byte) ([]byte, error) {
	return c.push(&protocol.Push{Message: &protocol.Message{Data: data}})
}

var formats = [...]format{FormatJSON: jsonCodec{}, FormatProtobuf: protobufCodec{}}
