package relay

import "fmt"

// ALPN protocol names on the relay's one UDP port. Clients that offer no
// ALPN get the ISSUN profile.
const (
	ALPNNative       = "switchboard-relay/1"
	ALPNWebTransport = "h3"
)

// Caps of native message fields (beyond them a message is ErrTooLarge).
const (
	MaxMetadataSize = 4 << 10
	MaxTargets      = 256
	MaxListItems    = 1000
	MaxSessionID    = 64
)

// Message is a native protocol (version 2) message. Each type encodes as
// the bincode body of its frame type.
type Message interface {
	// FrameType is the frame type carrying the message.
	FrameType() FrameType
	appendBody(b []byte) []byte
	decode(d *decoder)
}

// AppendMessage appends m as a complete version 2 frame.
func AppendMessage(dst []byte, m Message) []byte {
	start := len(dst)
	dst = AppendHeader(dst, VersionNative, m.FrameType(), 0)
	dst = m.appendBody(dst)
	n := len(dst) - start - HeaderSize
	dst[start+4], dst[start+5], dst[start+6], dst[start+7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return dst
}

// DecodeMessage decodes the body of a version 2 frame of type t. The
// whole body must be one message (no trailing bytes). Byte-vector fields
// (payloads, metadata) alias body; strings are copies.
func DecodeMessage(t FrameType, body []byte) (Message, error) {
	var m Message
	switch t {
	case FrameEvent, FrameDatagram:
		m = &NativeEvent{Unreliable: t == FrameDatagram}
	case FrameHeartbeat:
		m = &Heartbeat{}
	case FrameAck:
		m = &Ack{}
	case FrameHello:
		m = &Hello{}
	case FrameWelcome:
		m = &Welcome{}
	case FrameJoin:
		m = &Join{}
	case FrameJoined:
		m = &Joined{}
	case FrameLeave:
		m = &Leave{}
	case FrameLeft:
		m = &Left{}
	case FramePresence:
		m = &Presence{}
	case FrameList:
		m = &List{}
	case FrameRooms:
		m = &Rooms{}
	case FrameError:
		m = &Error{}
	case FrameGoAway:
		m = &GoAway{}
	default:
		return nil, fmt.Errorf("%w: %s", ErrFrameType, t)
	}
	d := decoder{b: body}
	m.decode(&d)
	if err := d.end("message"); err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return m, nil
}

// DecodeNativeEvent decodes the body of an EVENT or DATAGRAM frame (type
// t) into ev, as DecodeMessage would, reusing ev's Targets storage: the
// hot path decodes every event without allocating. Payload aliases body.
func DecodeNativeEvent(t FrameType, body []byte, ev *NativeEvent) error {
	if t != FrameEvent && t != FrameDatagram {
		return fmt.Errorf("%w: %s is not an event", ErrFrameType, t)
	}
	targets := ev.Targets[:0]
	*ev = NativeEvent{Unreliable: t == FrameDatagram, Targets: targets}
	d := decoder{b: body}
	ev.decode(&d)
	if err := d.end("message"); err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	return nil
}

// Limits are the server's limits, advertised in WELCOME. Zero means no
// limit where a field allows it (see the server's configuration).
type Limits struct {
	MaxFrame        uint32 // body bytes of a frame
	MaxTypeName     uint32 // ISSUN type name bytes
	EventRate       uint32 // events per second sustained
	EventBurst      uint32
	MaxRooms        uint32 // rooms one connection may be in
	MaxMembers      uint32 // members of one room
	HeartbeatMillis uint32 // heartbeat interval
	ResumeMillis    uint32 // resume grace window
	MaxDatagram     uint32 // bytes of one datagram
}

func (l *Limits) append(b []byte) []byte {
	for _, v := range []uint32{l.MaxFrame, l.MaxTypeName, l.EventRate, l.EventBurst, l.MaxRooms,
		l.MaxMembers, l.HeartbeatMillis, l.ResumeMillis, l.MaxDatagram} {
		b = putU32(b, v)
	}
	return b
}

func (l *Limits) decode(d *decoder) {
	for _, p := range []*uint32{&l.MaxFrame, &l.MaxTypeName, &l.EventRate, &l.EventBurst, &l.MaxRooms,
		&l.MaxMembers, &l.HeartbeatMillis, &l.ResumeMillis, &l.MaxDatagram} {
		*p = d.u32("limits")
	}
}

// Hello opens a native session (client → server, first control frame).
// NodeID 0 asks the server to assign one; ResumeToken, when not empty,
// asks to resume a lost session within the grace window.
type Hello struct {
	Token       string // hub JWT ("" when the relay needs none)
	NodeID      NodeID
	ResumeToken string
	Client      string // client name and version, for logs
}

// FrameType implements Message.
func (*Hello) FrameType() FrameType { return FrameHello }
func (m *Hello) appendBody(b []byte) []byte {
	return putString(putString(putU64(putString(b, m.Token), uint64(m.NodeID)), m.ResumeToken), m.Client)
}
func (m *Hello) decode(d *decoder) {
	m.Token = d.str("token", MaxTokenSize)
	m.NodeID = NodeID(d.u64("node_id"))
	m.ResumeToken = d.str("resume_token", MaxTokenSize)
	m.Client = d.str("client", MaxRoomName)
}

// Welcome accepts a session (server → client). Resumed tells that the
// session's rooms were kept.
type Welcome struct {
	NodeID      NodeID
	SessionID   string
	ResumeToken string
	Resumed     bool
	Limits      Limits
}

// FrameType implements Message.
func (*Welcome) FrameType() FrameType { return FrameWelcome }
func (m *Welcome) appendBody(b []byte) []byte {
	b = putBool(putString(putString(putU64(b, uint64(m.NodeID)), m.SessionID), m.ResumeToken), m.Resumed)
	return m.Limits.append(b)
}
func (m *Welcome) decode(d *decoder) {
	m.NodeID = NodeID(d.u64("node_id"))
	m.SessionID = d.str("session_id", MaxSessionID)
	m.ResumeToken = d.str("resume_token", MaxTokenSize)
	m.Resumed = d.boolean("resumed")
	m.Limits.decode(d)
}

// Join asks to join (or, with Create, create) a room. MaxMembers caps a
// created room (0: the server's cap); Metadata is shown to other members.
type Join struct {
	RequestID  uint32
	Room       string
	Create     bool
	MaxMembers uint32
	Metadata   []byte
}

// FrameType implements Message.
func (*Join) FrameType() FrameType { return FrameJoin }
func (m *Join) appendBody(b []byte) []byte {
	return putBytes(putU32(putBool(putString(putU32(b, m.RequestID), m.Room), m.Create), m.MaxMembers), m.Metadata)
}
func (m *Join) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Room = d.str("room", MaxRoomName)
	m.Create = d.boolean("create")
	m.MaxMembers = d.u32("max_members")
	m.Metadata = d.bytes("metadata", MaxMetadataSize)
}

// Member is a room member as other members see it.
type Member struct {
	NodeID   NodeID
	User     string
	Metadata []byte
}

func putMembers(b []byte, ms []Member) []byte {
	b = putU64(b, uint64(len(ms)))
	for _, m := range ms {
		b = putBytes(putString(putU64(b, uint64(m.NodeID)), m.User), m.Metadata)
	}
	return b
}

func (d *decoder) members(field string) []Member {
	n := d.count(field, noLimit, 24)
	if n == 0 {
		return nil
	}
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{NodeID: NodeID(d.u64(field)), User: d.str(field, noLimit), Metadata: d.bytes(field, MaxMetadataSize)}
	}
	return out
}

// Joined answers Join: the room's handle (used by events and Leave on
// this connection) and its members, the joiner included.
type Joined struct {
	RequestID uint32
	Room      string
	Handle    uint32
	Members   []Member
}

// FrameType implements Message.
func (*Joined) FrameType() FrameType { return FrameJoined }
func (m *Joined) appendBody(b []byte) []byte {
	return putMembers(putU32(putString(putU32(b, m.RequestID), m.Room), m.Handle), m.Members)
}
func (m *Joined) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Room = d.str("room", MaxRoomName)
	m.Handle = d.u32("handle")
	m.Members = d.members("members")
}

// Leave asks to leave the room of Handle.
type Leave struct {
	RequestID uint32
	Handle    uint32
}

// FrameType implements Message.
func (*Leave) FrameType() FrameType         { return FrameLeave }
func (m *Leave) appendBody(b []byte) []byte { return putU32(putU32(b, m.RequestID), m.Handle) }
func (m *Leave) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Handle = d.u32("handle")
}

// Left tells that the connection left the room of Handle: answering
// Leave (RequestID set) or on the server's initiative (RequestID 0, with
// a reason).
type Left struct {
	RequestID uint32
	Handle    uint32
	Reason    string
}

// FrameType implements Message.
func (*Left) FrameType() FrameType { return FrameLeft }
func (m *Left) appendBody(b []byte) []byte {
	return putString(putU32(putU32(b, m.RequestID), m.Handle), m.Reason)
}
func (m *Left) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Handle = d.u32("handle")
	m.Reason = d.str("reason", MaxMessageSize)
}

// Presence tells a room's members who joined and left it.
type Presence struct {
	Handle uint32
	Joins  []Member
	Leaves []NodeID
}

// FrameType implements Message.
func (*Presence) FrameType() FrameType { return FramePresence }
func (m *Presence) appendBody(b []byte) []byte {
	return putNodes(putMembers(putU32(b, m.Handle), m.Joins), m.Leaves)
}
func (m *Presence) decode(d *decoder) {
	m.Handle = d.u32("handle")
	m.Joins = d.members("joins")
	m.Leaves = d.nodes("leaves")
}

// List asks for the rooms whose names start with Prefix, at most Limit
// (0: the server's cap).
type List struct {
	RequestID uint32
	Prefix    string
	Limit     uint32
}

// FrameType implements Message.
func (*List) FrameType() FrameType { return FrameList }
func (m *List) appendBody(b []byte) []byte {
	return putU32(putString(putU32(b, m.RequestID), m.Prefix), m.Limit)
}
func (m *List) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Prefix = d.str("prefix", MaxRoomName)
	m.Limit = d.u32("limit")
}

// RoomInfo describes a room in Rooms.
type RoomInfo struct {
	Name       string
	Members    uint32
	MaxMembers uint32
}

// Rooms answers List.
type Rooms struct {
	RequestID uint32
	Rooms     []RoomInfo
}

// FrameType implements Message.
func (*Rooms) FrameType() FrameType { return FrameRooms }
func (m *Rooms) appendBody(b []byte) []byte {
	b = putU64(putU32(b, m.RequestID), uint64(len(m.Rooms)))
	for _, r := range m.Rooms {
		b = putU32(putU32(putString(b, r.Name), r.Members), r.MaxMembers)
	}
	return b
}
func (m *Rooms) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	n := d.count("rooms", MaxListItems, 16)
	if n > 0 {
		m.Rooms = make([]RoomInfo, n)
		for i := range m.Rooms {
			m.Rooms[i] = RoomInfo{Name: d.str("rooms.name", MaxRoomName), Members: d.u32("rooms.members"), MaxMembers: d.u32("rooms.max_members")}
		}
	}
}

// Error answers a request that failed (RequestID 0: not tied to one).
type Error struct {
	RequestID uint32
	Code      ErrorCode
	Message   string
}

// FrameType implements Message.
func (*Error) FrameType() FrameType { return FrameError }
func (m *Error) appendBody(b []byte) []byte {
	return putString(putU16(putU32(b, m.RequestID), uint16(m.Code)), m.Message)
}
func (m *Error) decode(d *decoder) {
	m.RequestID = d.u32("request_id")
	m.Code = ErrorCode(d.u16("code"))
	m.Message = d.str("message", MaxMessageSize)
}

// GoAway tells the client the server closes the connection: Code is the
// server's disconnect code (3000-3499: reconnect, after RetryAfterMillis),
// Reason a text for logs.
type GoAway struct {
	Code             uint32
	Reason           string
	RetryAfterMillis uint32
}

// FrameType implements Message.
func (*GoAway) FrameType() FrameType { return FrameGoAway }
func (m *GoAway) appendBody(b []byte) []byte {
	return putU32(putString(putU32(b, m.Code), m.Reason), m.RetryAfterMillis)
}
func (m *GoAway) decode(d *decoder) {
	m.Code = d.u32("code")
	m.Reason = d.str("reason", MaxMessageSize)
	m.RetryAfterMillis = d.u32("retry_after_ms")
}

// Heartbeat is sent both ways every heartbeat interval; the peer answers
// with an Ack carrying the same Seq and SentMicros (RTT = now - SentMicros
// on the sender's clock).
type Heartbeat struct {
	Seq        uint64
	SentMicros uint64
}

// FrameType implements Message.
func (*Heartbeat) FrameType() FrameType         { return FrameHeartbeat }
func (m *Heartbeat) appendBody(b []byte) []byte { return putU64(putU64(b, m.Seq), m.SentMicros) }
func (m *Heartbeat) decode(d *decoder) {
	m.Seq = d.u64("seq")
	m.SentMicros = d.u64("sent_us")
}

// Ack answers a Heartbeat.
type Ack struct {
	Seq        uint64
	SentMicros uint64
}

// FrameType implements Message.
func (*Ack) FrameType() FrameType         { return FrameAck }
func (m *Ack) appendBody(b []byte) []byte { return putU64(putU64(b, m.Seq), m.SentMicros) }
func (m *Ack) decode(d *decoder) {
	m.Seq = d.u64("seq")
	m.SentMicros = d.u64("sent_us")
}

// NativeEvent is a room event of the native protocol: FrameEvent on the
// reliable stream, FrameDatagram in datagrams (Unreliable, not encoded).
// Sender is set by the server; Targets, when not empty, restricts delivery
// to those members; the sender never receives its own event.
type NativeEvent struct {
	Handle     uint32 // the room's handle on the connection carrying it
	Sender     NodeID
	Sequence   uint64
	OpCode     uint32
	Targets    []NodeID
	Payload    []byte
	Unreliable bool
}

// FrameType implements Message.
func (m *NativeEvent) FrameType() FrameType {
	if m.Unreliable {
		return FrameDatagram
	}
	return FrameEvent
}
func (m *NativeEvent) appendBody(b []byte) []byte {
	b = putU32(putU64(putU64(putU32(b, m.Handle), uint64(m.Sender)), m.Sequence), m.OpCode)
	return putBytes(putNodes(b, m.Targets), m.Payload)
}
func (m *NativeEvent) decode(d *decoder) {
	m.Handle = d.u32("handle")
	m.Sender = NodeID(d.u64("sender"))
	m.Sequence = d.u64("sequence")
	m.OpCode = d.u32("op_code")
	n := d.count("targets", MaxTargets, 8)
	if n > 0 {
		if cap(m.Targets) >= n {
			m.Targets = m.Targets[:n]
		} else {
			m.Targets = make([]NodeID, n)
		}
		for i := range m.Targets {
			m.Targets[i] = NodeID(d.u64("targets"))
		}
	} else {
		m.Targets = nil
	}
	m.Payload = d.bytes("payload", -1)
}
