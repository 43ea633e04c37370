package relay

import (
	"encoding/json"
	"errors"
	"fmt"
)

// A room's bus messages (cluster.go), one per topic message:
//
//	'1' kind transport len(origin) origin body
//
// kind is busEvent or busDatagram (body: the event frame exactly as the
// sending process fanned it out), busJoin or busLeave (body: a busMember
// as JSON); transport is busISSUN or busNative; origin is the sending
// process's id (at most maxOrigin bytes), so a process skips its own.
//
// A process's own topic (processTopic) carries requests between two
// processes (resume.go): busAsk (body: a busRequest as JSON) and busAnswer
// (body: a busReply as JSON); their transport byte is busNative. It also
// carries busTarget (transport busISSUN, body: an ISSUN targeted event
// frame), sent to the process the NodeId directory names (directory.go).
const (
	busVersion  = '1'
	busEvent    = 'e'
	busDatagram = 'u'
	busJoin     = 'j'
	busLeave    = 'l'
	busAsk      = 'a'
	busAnswer   = 'r'
	busTarget   = 't'
	busISSUN    = 'i'
	busNative   = 'n'
	maxOrigin   = 64
)

// busMember is a member joining or leaving, as bus messages carry it.
type busMember struct {
	Node  uint64 `json:"n"`
	SID   string `json:"s"`
	User  string `json:"u,omitempty"`
	Meta  []byte `json:"m,omitempty"`
	Label string `json:"t,omitempty"` // presence transport (quic-native, ...)
}

type busMessage struct {
	kind      byte
	transport string // transportISSUN or transportNative
	origin    string
	frame     []byte     // busEvent, busDatagram, busTarget
	member    *busMember // busJoin, busLeave
	body      []byte     // busAsk, busAnswer: JSON
}

var errBusMessage = errors.New("relay: malformed bus message")

func busTransport(t string) byte {
	if t == transportISSUN {
		return busISSUN
	}
	return busNative
}

// appendBusHeader starts a bus message.
func appendBusHeader(b []byte, kind byte, transport, origin string) []byte {
	b = append(b, busVersion, kind, busTransport(transport), byte(len(origin)))
	return append(b, origin...)
}

// busFrame encodes an event message around frame (copied).
func busFrame(kind byte, transport, origin string, frame []byte) []byte {
	b := make([]byte, 0, 4+len(origin)+len(frame))
	return append(appendBusHeader(b, kind, transport, origin), frame...)
}

// busMemberFrame encodes a join or leave message.
func busMemberFrame(kind byte, transport, origin string, m *busMember) []byte {
	body, _ := json.Marshal(m) // plain fields: never fails
	return append(appendBusHeader(nil, kind, transport, origin), body...)
}

// busJSONFrame encodes a request or answer between processes.
func busJSONFrame(kind byte, origin string, v any) []byte {
	body, _ := json.Marshal(v) // plain fields: never fails
	return append(appendBusHeader(nil, kind, transportNative, origin), body...)
}

// decodeBusMessage parses a bus message; frames are checked by the
// receiver against its own limits. The frame aliases data.
func decodeBusMessage(data []byte) (*busMessage, error) {
	if len(data) < 4 || data[0] != busVersion {
		return nil, fmt.Errorf("%w: no version %q header", errBusMessage, busVersion)
	}
	m := &busMessage{kind: data[1]}
	switch data[2] {
	case busISSUN:
		m.transport = transportISSUN
	case busNative:
		m.transport = transportNative
	default:
		return nil, fmt.Errorf("%w: transport %q", errBusMessage, data[2])
	}
	n := int(data[3])
	if n == 0 || n > maxOrigin || len(data) < 4+n {
		return nil, fmt.Errorf("%w: origin of %d bytes", errBusMessage, n)
	}
	m.origin = string(data[4 : 4+n])
	body := data[4+n:]
	switch m.kind {
	case busEvent, busDatagram, busTarget:
		if len(body) == 0 {
			return nil, fmt.Errorf("%w: event without a frame", errBusMessage)
		}
		m.frame = body
	case busJoin, busLeave:
		var bm busMember
		if err := json.Unmarshal(body, &bm); err != nil {
			return nil, fmt.Errorf("%w: member: %v", errBusMessage, err)
		}
		if bm.SID == "" {
			return nil, fmt.Errorf("%w: member without a session id", errBusMessage)
		}
		m.member = &bm
	case busAsk, busAnswer:
		if len(body) == 0 {
			return nil, fmt.Errorf("%w: request without a body", errBusMessage)
		}
		m.body = body
	default:
		return nil, fmt.Errorf("%w: kind %q", errBusMessage, m.kind)
	}
	return m, nil
}
