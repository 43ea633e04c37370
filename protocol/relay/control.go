package relay

import (
	"fmt"
	"strings"
)

// The ISSUN profile's control events. An ISSUN client sends them with
// NetworkScope ToServer and a type name ending in one of the suffixes
// below (its own crate's types, so the client library needs no change);
// the relay answers with events of the same type-name prefix and the
// answer suffixes. Their payloads are the bincode bodies of these structs
// (Rust declarations in docs/relay.md).
const (
	SuffixAuth  = "::SwitchboardAuth"  // AuthRequest
	SuffixJoin  = "::SwitchboardJoin"  // RoomRequest
	SuffixLeave = "::SwitchboardLeave" // RoomRequest

	SuffixWelcome  = "::SwitchboardWelcome"  // AuthAnswer
	SuffixJoined   = "::SwitchboardJoined"   // RoomAnswer
	SuffixLeft     = "::SwitchboardLeft"     // RoomAnswer
	SuffixPresence = "::SwitchboardPresence" // PresenceAnswer
	SuffixError    = "::SwitchboardError"    // ErrorAnswer
)

// ControlKind names the control request a type name carries.
type ControlKind int

// Control requests.
const (
	ControlNone ControlKind = iota
	ControlAuth
	ControlJoin
	ControlLeave
)

// ParseControl returns the kind of control request typeName names and the
// prefix answers use (ControlNone when it names none).
func ParseControl(typeName string) (ControlKind, string) {
	for _, c := range []struct {
		suffix string
		kind   ControlKind
	}{{SuffixAuth, ControlAuth}, {SuffixJoin, ControlJoin}, {SuffixLeave, ControlLeave}} {
		if p, ok := strings.CutSuffix(typeName, c.suffix); ok {
			return c.kind, p
		}
	}
	return ControlNone, ""
}

// Caps of control payload fields.
const (
	MaxTokenSize   = 8 << 10
	MaxRoomName    = 128
	MaxMessageSize = 1 << 10
)

// AuthRequest is the payload of SwitchboardAuth: struct { token: String }.
type AuthRequest struct{ Token string }

// RoomRequest is the payload of SwitchboardJoin and SwitchboardLeave:
// struct { room: String }.
type RoomRequest struct{ Room string }

// AuthAnswer is the payload of SwitchboardWelcome:
// struct { node_id: u64, user: String }.
type AuthAnswer struct {
	NodeID NodeID
	User   string
}

// RoomAnswer is the payload of SwitchboardJoined and SwitchboardLeft:
// struct { room: String, members: Vec<u64> } (the members after the join;
// empty for Left).
type RoomAnswer struct {
	Room    string
	Members []NodeID
}

// PresenceAnswer is the payload of SwitchboardPresence, sent to a room's
// members when others join or leave it:
// struct { room: String, joined: Vec<u64>, left: Vec<u64> }.
type PresenceAnswer struct {
	Room   string
	Joined []NodeID
	Left   []NodeID
}

// ErrorAnswer is the payload of SwitchboardError:
// struct { code: u16, message: String } (Code is an ErrorCode).
type ErrorAnswer struct {
	Code    ErrorCode
	Message string
}

func putNodes(b []byte, ids []NodeID) []byte {
	b = putU64(b, uint64(len(ids)))
	for _, id := range ids {
		b = putU64(b, uint64(id))
	}
	return b
}

func (d *decoder) nodes(field string) []NodeID {
	n := d.count(field, noLimit, 8)
	if n == 0 {
		return nil
	}
	out := make([]NodeID, n)
	for i := range out {
		out[i] = NodeID(d.u64(field))
	}
	return out
}

// Append appends the bincode payload.
func (r AuthRequest) Append(b []byte) []byte { return putString(b, r.Token) }

// Append appends the bincode payload.
func (r RoomRequest) Append(b []byte) []byte { return putString(b, r.Room) }

// Append appends the bincode payload.
func (a AuthAnswer) Append(b []byte) []byte { return putString(putU64(b, uint64(a.NodeID)), a.User) }

// Append appends the bincode payload.
func (a RoomAnswer) Append(b []byte) []byte { return putNodes(putString(b, a.Room), a.Members) }

// Append appends the bincode payload.
func (a PresenceAnswer) Append(b []byte) []byte {
	return putNodes(putNodes(putString(b, a.Room), a.Joined), a.Left)
}

// Append appends the bincode payload.
func (a ErrorAnswer) Append(b []byte) []byte { return putString(putU16(b, uint16(a.Code)), a.Message) }

// DecodeAuthRequest decodes a SwitchboardAuth payload (trailing bytes
// allowed, as ISSUN's bincode allows them).
func DecodeAuthRequest(p []byte) (AuthRequest, error) {
	d := decoder{b: p}
	r := AuthRequest{Token: d.str("token", MaxTokenSize)}
	if d.err != nil {
		return AuthRequest{}, fmt.Errorf("auth request: %w", d.err)
	}
	return r, nil
}

// DecodeRoomRequest decodes a SwitchboardJoin/Leave payload; the room
// name must be 1..MaxRoomName bytes.
func DecodeRoomRequest(p []byte) (RoomRequest, error) {
	d := decoder{b: p}
	r := RoomRequest{Room: d.str("room", MaxRoomName)}
	if d.err == nil && r.Room == "" {
		d.fail("room", ErrMalformed, "empty room name")
	}
	if d.err != nil {
		return RoomRequest{}, fmt.Errorf("room request: %w", d.err)
	}
	return r, nil
}

// DecodeAuthAnswer decodes a SwitchboardWelcome payload.
func DecodeAuthAnswer(p []byte) (AuthAnswer, error) {
	d := decoder{b: p}
	a := AuthAnswer{NodeID: NodeID(d.u64("node_id")), User: d.str("user", noLimit)}
	if d.err != nil {
		return AuthAnswer{}, fmt.Errorf("auth answer: %w", d.err)
	}
	return a, nil
}

// DecodeRoomAnswer decodes a SwitchboardJoined/Left payload.
func DecodeRoomAnswer(p []byte) (RoomAnswer, error) {
	d := decoder{b: p}
	a := RoomAnswer{Room: d.str("room", MaxRoomName)}
	a.Members = d.nodes("members")
	if d.err != nil {
		return RoomAnswer{}, fmt.Errorf("room answer: %w", d.err)
	}
	return a, nil
}

// DecodePresenceAnswer decodes a SwitchboardPresence payload.
func DecodePresenceAnswer(p []byte) (PresenceAnswer, error) {
	d := decoder{b: p}
	a := PresenceAnswer{Room: d.str("room", MaxRoomName)}
	a.Joined = d.nodes("joined")
	a.Left = d.nodes("left")
	if d.err != nil {
		return PresenceAnswer{}, fmt.Errorf("presence answer: %w", d.err)
	}
	return a, nil
}

// DecodeErrorAnswer decodes a SwitchboardError payload.
func DecodeErrorAnswer(p []byte) (ErrorAnswer, error) {
	d := decoder{b: p}
	a := ErrorAnswer{Code: ErrorCode(d.u16("code")), Message: d.str("message", MaxMessageSize)}
	if d.err != nil {
		return ErrorAnswer{}, fmt.Errorf("error answer: %w", d.err)
	}
	return a, nil
}
