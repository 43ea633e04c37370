package relay

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NodeID identifies a relay participant (ISSUN's NodeId, a u64).
type NodeID uint64

// ScopeKind is the tag of ISSUN's NetworkScope (a u32 on the wire).
type ScopeKind uint32

// The NetworkScope variants, in ISSUN's declaration order.
const (
	ScopeBroadcast ScopeKind = 0
	ScopeToServer  ScopeKind = 1
	ScopeTargeted  ScopeKind = 2
)

func (k ScopeKind) String() string {
	switch k {
	case ScopeBroadcast:
		return "broadcast"
	case ScopeToServer:
		return "to-server"
	case ScopeTargeted:
		return "targeted"
	}
	return fmt.Sprintf("scope(%d)", uint32(k))
}

// Scope is ISSUN's NetworkScope; Target is set for ScopeTargeted only.
type Scope struct {
	Kind   ScopeKind
	Target NodeID
}

// Metadata is ISSUN's NetworkMetadata.
type Metadata struct {
	Sender    NodeID
	Timestamp uint64 // unix milliseconds
	Sequence  uint64
}

// Event is ISSUN's RawNetworkEvent: the body of a version 1 FrameEvent.
// TypeName is Rust's std::any::type_name of the event; Payload its
// bincode encoding, opaque to the relay.
type Event struct {
	Metadata Metadata
	Scope    Scope
	TypeName string
	Payload  []byte
}

// Fixed offsets of a RawNetworkEvent body.
const (
	offSender    = 0
	offTimestamp = 8
	offSequence  = 16
	offScope     = 24
	offTarget    = 28
	// MinEventSize is the smallest valid event body (Broadcast, empty
	// type name and payload).
	MinEventSize = offTarget + 8 + 8
)

// DefaultMaxTypeName is the type name cap decoders apply unless told
// otherwise.
const DefaultMaxTypeName = 256

// AppendEvent appends ev's bincode body.
func AppendEvent(dst []byte, ev *Event) []byte {
	dst = putU64(dst, uint64(ev.Metadata.Sender))
	dst = putU64(dst, ev.Metadata.Timestamp)
	dst = putU64(dst, ev.Metadata.Sequence)
	dst = putU32(dst, uint32(ev.Scope.Kind))
	if ev.Scope.Kind == ScopeTargeted {
		dst = putU64(dst, uint64(ev.Scope.Target))
	}
	dst = putString(dst, ev.TypeName)
	return putBytes(dst, ev.Payload)
}

// EventSize is the body length of ev.
func EventSize(ev *Event) int {
	n := offScope + 4 + 8 + len(ev.TypeName) + 8 + len(ev.Payload)
	if ev.Scope.Kind == ScopeTargeted {
		n += 8
	}
	return n
}

// AppendEventFrame appends ev as a complete version 1 event frame.
func AppendEventFrame(dst []byte, ev *Event) []byte {
	return AppendEvent(AppendHeader(dst, VersionISSUN, FrameEvent, EventSize(ev)), ev)
}

// EventView is a parsed event body whose TypeName and Payload alias the
// input: what the relay needs to route an event without copying it.
type EventView struct {
	Metadata Metadata
	Scope    Scope
	TypeName []byte
	Payload  []byte
	// Size is the length of the event within the body; bincode allows
	// trailing bytes, which ISSUN clients ignore.
	Size int
}

// ParseEvent parses a version 1 event body. The type name must be UTF-8
// and at most maxTypeName bytes (<= 0: DefaultMaxTypeName); the payload
// must fit the body. Trailing bytes are allowed, as in bincode 1.
func ParseEvent(body []byte, maxTypeName int) (EventView, error) {
	if maxTypeName <= 0 {
		maxTypeName = DefaultMaxTypeName
	}
	d := decoder{b: body}
	var v EventView
	v.Metadata.Sender = NodeID(d.u64("metadata.sender"))
	v.Metadata.Timestamp = d.u64("metadata.timestamp")
	v.Metadata.Sequence = d.u64("metadata.sequence")
	v.Scope.Kind = ScopeKind(d.u32("scope"))
	switch v.Scope.Kind {
	case ScopeBroadcast, ScopeToServer:
	case ScopeTargeted:
		v.Scope.Target = NodeID(d.u64("scope.target"))
	default:
		if d.err == nil {
			d.fail("scope", ErrMalformed, "unknown variant %d", uint32(v.Scope.Kind))
		}
	}
	v.TypeName = d.bytes("type_name", maxTypeName)
	if d.err == nil && !utf8.Valid(v.TypeName) {
		d.fail("type_name", ErrMalformed, "not UTF-8")
	}
	v.Payload = d.bytes("payload", -1)
	if d.err != nil {
		return EventView{}, fmt.Errorf("event: %w", d.err)
	}
	v.Size = d.off
	return v, nil
}

// DecodeEvent parses body (see ParseEvent) into an Event that owns its
// bytes.
func DecodeEvent(body []byte, maxTypeName int) (Event, error) {
	v, err := ParseEvent(body, maxTypeName)
	if err != nil {
		return Event{}, err
	}
	return Event{Metadata: v.Metadata, Scope: v.Scope, TypeName: string(v.TypeName),
		Payload: append([]byte(nil), v.Payload...)}, nil
}

// SetSender overwrites metadata.sender in a valid event body in place.
func SetSender(body []byte, id NodeID) {
	binary.LittleEndian.PutUint64(body[offSender:offSender+8], uint64(id))
}

// TypePrefix returns the module path of a Rust type name: everything
// before its last "::" ("" when there is none).
func TypePrefix(typeName string) string {
	if i := strings.LastIndex(typeName, "::"); i >= 0 {
		return typeName[:i]
	}
	return ""
}

// TypeBase returns the last segment of a Rust type name.
func TypeBase(typeName string) string {
	if i := strings.LastIndex(typeName, "::"); i >= 0 {
		return typeName[i+2:]
	}
	return typeName
}
