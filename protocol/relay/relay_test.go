package relay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The golden frames of PROTOCOLS.md ("Game relay"), as an ISSUN 0.10
// client encodes them.
func golden(t testing.TB, hexParts ...string) []byte {
	var b []byte
	for _, p := range hexParts {
		if strings.HasPrefix(p, "ascii:") {
			b = append(b, p[len("ascii:"):]...)
			continue
		}
		x, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
		require.NoError(t, err)
		b = append(b, x...)
	}
	return b
}

var paddlePayload = "0c 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 00 0a 00 00 00"

func goldenBroadcast(t testing.TB) []byte {
	return golden(t, "49 53 01 01 54 00 00 00 08 07 06 05 04 03 02 01 00 68 e5 cf 8b 01 00 00 07 00 00 00 00 00 00 00",
		"00 00 00 00 1c 00 00 00 00 00 00 00", "ascii:multiplayer_pong::PaddleMove", paddlePayload)
}

func paddleEvent(scope Scope) *Event {
	return &Event{
		Metadata: Metadata{Sender: 0x0102030405060708, Timestamp: 1700000000000, Sequence: 7},
		Scope:    scope,
		TypeName: "multiplayer_pong::PaddleMove",
		// PaddleMove{player_id: u64 = 42, y_position: i32 = 10}
		Payload: []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0},
	}
}

func TestGoldenFrames(t *testing.T) {
	cases := []struct {
		name  string
		scope Scope
		frame []byte
	}{
		{"broadcast", Scope{Kind: ScopeBroadcast}, goldenBroadcast(t)},
		{"targeted", Scope{Kind: ScopeTargeted, Target: 0x1122334455667788}, golden(t,
			"49 53 01 01 5c 00 00 00 08 07 06 05 04 03 02 01 00 68 e5 cf 8b 01 00 00 07 00 00 00 00 00 00 00",
			"02 00 00 00 88 77 66 55 44 33 22 11 1c 00 00 00 00 00 00 00", "ascii:multiplayer_pong::PaddleMove", paddlePayload)},
		{"to-server", Scope{Kind: ScopeToServer}, golden(t,
			"49 53 01 01 54 00 00 00 08 07 06 05 04 03 02 01 00 68 e5 cf 8b 01 00 00 07 00 00 00 00 00 00 00",
			"01 00 00 00 1c 00 00 00 00 00 00 00", "ascii:multiplayer_pong::PaddleMove", paddlePayload)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := paddleEvent(c.scope)
			require.Equal(t, c.frame, AppendEventFrame(nil, ev), "encoded byte for byte")
			h, body, rest, err := SplitFrame(c.frame, VersionISSUN, 1<<16)
			require.NoError(t, err)
			require.Empty(t, rest)
			require.Equal(t, Header{Version: VersionISSUN, Type: FrameEvent, Length: uint32(len(c.frame) - HeaderSize)}, h)
			got, err := DecodeEvent(body, 0)
			require.NoError(t, err)
			require.Equal(t, *ev, got)
			v, err := ParseEvent(body, 0)
			require.NoError(t, err)
			require.Equal(t, len(body), v.Size)

			h2, body2, err := ReadFrame(bytes.NewReader(c.frame), VersionISSUN, 1<<16, nil)
			require.NoError(t, err)
			require.Equal(t, h, h2)
			require.Equal(t, body, body2)
		})
	}
}

func TestSetSenderRewritesInPlace(t *testing.T) {
	f := goldenBroadcast(t)
	SetSender(f[HeaderSize:], 0xaabbccdd)
	ev, err := DecodeEvent(f[HeaderSize:], 0)
	require.NoError(t, err)
	require.Equal(t, NodeID(0xaabbccdd), ev.Metadata.Sender)
	require.Equal(t, "multiplayer_pong::PaddleMove", ev.TypeName)
}

func TestEventTrailingBytesAllowed(t *testing.T) {
	f := goldenBroadcast(t)
	body := append(append([]byte(nil), f[HeaderSize:]...), 1, 2, 3)
	v, err := ParseEvent(body, 0)
	require.NoError(t, err, "bincode 1 allows trailing bytes")
	require.Equal(t, len(body)-3, v.Size)
}

func TestHeaderErrors(t *testing.T) {
	good := goldenBroadcast(t)
	mod := func(i int, b byte) []byte {
		c := append([]byte(nil), good...)
		c[i] = b
		return c
	}
	huge := append([]byte{0x49, 0x53, 1, 1, 0xff, 0xff, 0xff, 0xff}, good[HeaderSize:]...)
	cases := []struct {
		name  string
		frame []byte
		want  error
		msg   string
	}{
		{"short header", good[:5], ErrTruncated, "header needs 8 bytes"},
		{"bad magic", mod(0, 'X'), ErrBadMagic, "58 53"},
		{"wrong version", mod(2, 2), ErrVersion, "version 2, want 1"},
		{"unknown version", mod(2, 9), ErrVersion, "version 9"},
		{"unknown type", mod(3, 0x10), ErrFrameType, "HELLO in version 1"},
		{"4 GiB length", huge, ErrTooLarge, "4294967295 bytes exceeds the frame cap of 65536"},
		{"truncated body", good[:40], ErrTruncated, "body of 84 bytes, have 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := SplitFrame(c.frame, VersionISSUN, 1<<16)
			require.ErrorIs(t, err, c.want)
			require.ErrorContains(t, err, c.msg)
			_, _, err = ReadFrame(bytes.NewReader(c.frame), VersionISSUN, 1<<16, nil)
			require.ErrorIs(t, err, c.want)
		})
	}
	t.Run("read of nothing is EOF", func(t *testing.T) {
		_, _, err := ReadFrame(bytes.NewReader(nil), VersionISSUN, 1<<16, nil)
		require.ErrorIs(t, err, io.EOF)
	})
	t.Run("4 GiB length without a cap allocates nothing before the body", func(t *testing.T) {
		_, _, _, err := SplitFrame(huge, VersionISSUN, 0)
		require.ErrorIs(t, err, ErrTruncated)
	})
}

func TestEventErrors(t *testing.T) {
	body := goldenBroadcast(t)[HeaderSize:]
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), body...)) }
	cases := []struct {
		name string
		body []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrTruncated, "metadata.sender"},
		{"bad scope", mod(func(b []byte) []byte { b[24] = 7; return b }), ErrMalformed, "unknown variant 7"},
		{"type name over cap", mod(func(b []byte) []byte { b[28] = 0xff; return b }), ErrTooLarge, "type_name: 255 bytes, at most 16"},
		{"4 GiB type name", mod(func(b []byte) []byte { b[28], b[29], b[30], b[31] = 0, 0, 0, 1; return b }), ErrTooLarge, "type_name"},
		{"payload past end", mod(func(b []byte) []byte { b[64] = 0xff; return b }), ErrTruncated, "payload: needs 255 bytes"},
		{"huge payload length", mod(func(b []byte) []byte { b[71] = 0x80; return b }), ErrTruncated, "payload"},
		{"type name not utf-8", mod(func(b []byte) []byte { b[36] = 0xff; return b }), ErrMalformed, "not UTF-8"},
		{"cut in payload", body[:len(body)-1], ErrTruncated, "payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEvent(c.body, 16)
			if c.name == "bad scope" || c.name == "payload past end" || c.name == "huge payload length" || c.name == "type name not utf-8" || c.name == "cut in payload" {
				_, err = ParseEvent(c.body, 0)
			}
			require.ErrorIs(t, err, c.want)
			require.ErrorContains(t, err, c.msg)
		})
	}
}

func TestParseControl(t *testing.T) {
	k, p := ParseControl("multiplayer_pong::SwitchboardJoin")
	require.Equal(t, ControlJoin, k)
	require.Equal(t, "multiplayer_pong", p)
	k, p = ParseControl("a::b::SwitchboardAuth")
	require.Equal(t, ControlAuth, k)
	require.Equal(t, "a::b", p)
	k, _ = ParseControl("a::SwitchboardLeave")
	require.Equal(t, ControlLeave, k)
	k, _ = ParseControl("multiplayer_pong::PaddleMove")
	require.Equal(t, ControlNone, k)
}

func TestControlPayloads(t *testing.T) {
	r, err := DecodeRoomRequest(RoomRequest{Room: "lobby"}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, "lobby", r.Room)
	require.Equal(t, []byte{5, 0, 0, 0, 0, 0, 0, 0, 'l', 'o', 'b', 'b', 'y'}, RoomRequest{Room: "lobby"}.Append(nil), "a Rust String")
	_, err = DecodeRoomRequest(RoomRequest{}.Append(nil))
	require.ErrorIs(t, err, ErrMalformed)
	_, err = DecodeRoomRequest(RoomRequest{Room: strings.Repeat("x", MaxRoomName+1)}.Append(nil))
	require.ErrorIs(t, err, ErrTooLarge)

	a, err := DecodeAuthRequest(AuthRequest{Token: "jwt"}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, "jwt", a.Token)

	w, err := DecodeAuthAnswer(AuthAnswer{NodeID: 9, User: "alice"}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, AuthAnswer{NodeID: 9, User: "alice"}, w)

	ra, err := DecodeRoomAnswer(RoomAnswer{Room: "r", Members: []NodeID{1, 2}}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, RoomAnswer{Room: "r", Members: []NodeID{1, 2}}, ra)

	pa, err := DecodePresenceAnswer(PresenceAnswer{Room: "r", Joined: []NodeID{3}, Left: []NodeID{4, 5}}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, PresenceAnswer{Room: "r", Joined: []NodeID{3}, Left: []NodeID{4, 5}}, pa)

	ea, err := DecodeErrorAnswer(ErrorAnswer{Code: ErrCodeRoomFull, Message: "full"}.Append(nil))
	require.NoError(t, err)
	require.Equal(t, ErrorAnswer{Code: ErrCodeRoomFull, Message: "full"}, ea)

	// A hostile member count does not allocate: it is checked against the bytes present.
	hostile := putU64(putString(nil, "r"), 1<<20)
	_, err = DecodeRoomAnswer(hostile)
	require.ErrorIs(t, err, ErrTruncated)
}

func nativeMessages() []Message {
	lim := Limits{MaxFrame: 65536, MaxTypeName: 256, EventRate: 100, EventBurst: 200, MaxRooms: 8, MaxMembers: 64, HeartbeatMillis: 5000, ResumeMillis: 20000, MaxDatagram: 1200}
	return []Message{
		&Hello{Token: "t.o.k", NodeID: 42, ResumeToken: "r", Client: "go/1"},
		&Welcome{NodeID: 42, SessionID: "s1", ResumeToken: "rt", Resumed: true, Limits: lim},
		&Join{RequestID: 1, Room: "lobby", Create: true, MaxMembers: 8, Metadata: []byte(`{"n":"a"}`)},
		&Joined{RequestID: 1, Room: "lobby", Handle: 3, Members: []Member{{NodeID: 42, User: "alice", Metadata: []byte("m")}, {NodeID: 7}}},
		&Leave{RequestID: 2, Handle: 3},
		&Left{RequestID: 2, Handle: 3, Reason: "left"},
		&Presence{Handle: 3, Joins: []Member{{NodeID: 8, User: "bob"}}, Leaves: []NodeID{7}},
		&List{RequestID: 4, Prefix: "lo", Limit: 10},
		&Rooms{RequestID: 4, Rooms: []RoomInfo{{Name: "lobby", Members: 2, MaxMembers: 8}}},
		&Error{RequestID: 1, Code: ErrCodeRoomFull, Message: "room full"},
		&GoAway{Code: 3001, Reason: "shutdown", RetryAfterMillis: 1000},
		&Heartbeat{Seq: 5, SentMicros: 123456},
		&Ack{Seq: 5, SentMicros: 123456},
		&NativeEvent{Handle: 3, Sender: 42, Sequence: 9, OpCode: 1, Targets: []NodeID{7}, Payload: []byte("xy")},
		&NativeEvent{Handle: 3, Sender: 42, Sequence: 10, Payload: []byte("u"), Unreliable: true},
	}
}

func TestNativeRoundTrip(t *testing.T) {
	for _, m := range nativeMessages() {
		t.Run(m.FrameType().String(), func(t *testing.T) {
			f := AppendMessage(nil, m)
			h, body, rest, err := SplitFrame(f, VersionNative, 1<<16)
			require.NoError(t, err)
			require.Empty(t, rest)
			require.Equal(t, m.FrameType(), h.Type)
			got, err := DecodeMessage(h.Type, body)
			require.NoError(t, err)
			require.Equal(t, m, got)
			// Every proper prefix of the body is truncated, never a panic.
			for i := 0; i < len(body); i++ {
				_, err := DecodeMessage(h.Type, body[:i])
				require.Error(t, err, "prefix %d", i)
			}
			_, err = DecodeMessage(h.Type, append(append([]byte(nil), body...), 0))
			require.ErrorIs(t, err, ErrMalformed, "trailing byte")
		})
	}
}

func TestNativeBincodeLayout(t *testing.T) {
	// bincode 1 of struct { request_id: u32, handle: u32 } is two
	// little-endian u32s; of GoAway, u32 + (u64 len + bytes) + u32.
	require.Equal(t, golden(t, "49 53 02 14 08 00 00 00 02 00 00 00 03 00 00 00"), AppendMessage(nil, &Leave{RequestID: 2, Handle: 3}))
	f := AppendMessage(nil, &GoAway{Code: 3001, Reason: "bye", RetryAfterMillis: 1000})
	require.Equal(t, golden(t, "49 53 02 1f 13 00 00 00 b9 0b 00 00 03 00 00 00 00 00 00 00", "ascii:bye", "e8 03 00 00"), f)
}

func TestNativeErrors(t *testing.T) {
	join := AppendMessage(nil, &Join{RequestID: 1, Room: "r", Create: true})[HeaderSize:]
	badBool := append([]byte(nil), join...)
	badBool[4+8+1] = 2
	_, err := DecodeMessage(FrameJoin, badBool)
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "create: boolean byte 2")

	_, err = DecodeMessage(FrameType(0x77), nil)
	require.ErrorIs(t, err, ErrFrameType)

	long := AppendMessage(nil, &Join{Room: strings.Repeat("x", MaxRoomName+1)})[HeaderSize:]
	_, err = DecodeMessage(FrameJoin, long)
	require.ErrorIs(t, err, ErrTooLarge)

	targets := AppendMessage(nil, &NativeEvent{Targets: make([]NodeID, MaxTargets+1)})[HeaderSize:]
	_, err = DecodeMessage(FrameEvent, targets)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "targets: 257 items")

	// A 4 GiB string length in HELLO is refused, not allocated.
	hello := putU64(nil, 1<<32)
	_, err = DecodeMessage(FrameHello, hello)
	require.ErrorIs(t, err, ErrTooLarge)
	require.True(t, errors.Is(err, ErrTooLarge))
}

// fuzzSeeds are valid frames of both versions.
func fuzzSeeds(f *testing.F) {
	f.Add(goldenBroadcast(f))
	f.Add(AppendEventFrame(nil, paddleEvent(Scope{Kind: ScopeTargeted, Target: 3})))
	for _, m := range nativeMessages() {
		f.Add(AppendMessage(nil, m))
	}
	f.Add([]byte{0x49, 0x53, 1, 1, 0xff, 0xff, 0xff, 0xff})
}

// FuzzFrame feeds arbitrary bytes, whole and split in two, to every
// decoder: none may panic, and whatever decodes re-encodes to the same
// bytes.
func FuzzFrame(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, _, err := SplitFrame(b, 0, 1<<16)
		if err == nil {
			switch h.Version {
			case VersionISSUN:
				if v, err := ParseEvent(body, 0); err == nil {
					ev := Event{Metadata: v.Metadata, Scope: v.Scope, TypeName: string(v.TypeName), Payload: v.Payload}
					require.Equal(t, body[:v.Size], AppendEvent(nil, &ev))
				}
			case VersionNative:
				if m, err := DecodeMessage(h.Type, body); err == nil {
					require.Equal(t, b[:HeaderSize+len(body)], AppendMessage(nil, m))
				}
			}
		}
		// A reader that delivers the bytes in two parts decodes the same.
		r := io.MultiReader(bytes.NewReader(b[:len(b)/2]), bytes.NewReader(b[len(b)/2:]))
		h2, body2, err2 := ReadFrame(r, 0, 1<<16, nil)
		if err == nil {
			require.NoError(t, err2)
			require.Equal(t, h, h2)
			require.Equal(t, string(body), string(body2))
		} else {
			require.Error(t, err2)
		}
	})
}

// FuzzEventBody fuzzes the ISSUN event parser and the control payloads.
func FuzzEventBody(f *testing.F) {
	f.Add(goldenBroadcast(f)[HeaderSize:])
	f.Add(RoomRequest{Room: "lobby"}.Append(nil))
	f.Add(AuthRequest{Token: "x"}.Append(nil))
	f.Add(PresenceAnswer{Room: "r", Joined: []NodeID{1}}.Append(nil))
	f.Add(ErrorAnswer{Code: 1, Message: "m"}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseEvent(b, 0)
		_, _ = DecodeEvent(b, 8)
		_, _ = DecodeAuthRequest(b)
		_, _ = DecodeRoomRequest(b)
		_, _ = DecodeAuthAnswer(b)
		_, _ = DecodeRoomAnswer(b)
		_, _ = DecodePresenceAnswer(b)
		_, _ = DecodeErrorAnswer(b)
	})
}

// FuzzNativeBody fuzzes every native message decoder with raw bodies.
func FuzzNativeBody(f *testing.F) {
	for _, m := range nativeMessages() {
		f.Add(byte(m.FrameType()), AppendMessage(nil, m)[HeaderSize:])
	}
	reused := &NativeEvent{Targets: make([]NodeID, 0, 4)}
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		m, err := DecodeMessage(FrameType(typ), body)
		if err == nil {
			require.Equal(t, body, AppendMessage(nil, m)[HeaderSize:])
		}
		if ft := FrameType(typ); ft == FrameEvent || ft == FrameDatagram {
			// The allocation-free decoder agrees with DecodeMessage.
			err2 := DecodeNativeEvent(FrameType(typ), body, reused)
			require.Equal(t, err == nil, err2 == nil)
			if err == nil {
				require.Equal(t, m, reused)
			}
		}
	})
}

func TestDecodeNativeEventReuses(t *testing.T) {
	ev := &NativeEvent{}
	body := AppendMessage(nil, &NativeEvent{Handle: 3, Targets: []NodeID{7, 8}, Payload: []byte("x")})[HeaderSize:]
	require.NoError(t, DecodeNativeEvent(FrameEvent, body, ev))
	targets := &ev.Targets[0]
	require.NoError(t, DecodeNativeEvent(FrameEvent, body, ev))
	require.Same(t, targets, &ev.Targets[0], "the targets' storage is reused")
	require.Equal(t, []NodeID{7, 8}, ev.Targets)
	require.Equal(t, 0.0, testing.AllocsPerRun(100, func() { _ = DecodeNativeEvent(FrameEvent, body, ev) }))
	require.ErrorIs(t, DecodeNativeEvent(FrameHello, body, ev), ErrFrameType)
	require.Error(t, DecodeNativeEvent(FrameEvent, body[:5], ev))
}
