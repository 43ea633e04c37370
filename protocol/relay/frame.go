package relay

import (
	"encoding/binary"
	"fmt"
	"io"
)

// HeaderSize is the size of a frame header.
const HeaderSize = 8

// Magic bytes opening every frame.
const (
	Magic0 = 0x49 // 'I'
	Magic1 = 0x53 // 'S'
)

// Protocol versions carried in the frame header.
const (
	// VersionISSUN is the ISSUN 0.10 profile.
	VersionISSUN = 1
	// VersionNative is the native protocol switchboard-relay/1.
	VersionNative = 2
)

// FrameType is the fourth header byte.
type FrameType uint8

// Frame types. Event, Heartbeat and Ack exist in both versions (ISSUN
// clients parse only FrameEvent bodies); the others are native only.
const (
	FrameEvent     FrameType = 0x01 // ISSUN: RawNetworkEvent; native: Event, reliable
	FrameHeartbeat FrameType = 0x02
	FrameAck       FrameType = 0x03
	// FrameDatagram is a native Event sent unreliably (in QUIC datagrams).
	FrameDatagram FrameType = 0x04
	FrameHello    FrameType = 0x10
	FrameWelcome  FrameType = 0x11
	FrameJoin     FrameType = 0x12
	FrameJoined   FrameType = 0x13
	FrameLeave    FrameType = 0x14
	FrameLeft     FrameType = 0x15
	FramePresence FrameType = 0x16
	FrameList     FrameType = 0x17
	FrameRooms    FrameType = 0x18
	FrameError    FrameType = 0x1e
	FrameGoAway   FrameType = 0x1f
)

var frameNames = map[FrameType]string{
	FrameEvent: "EVENT", FrameHeartbeat: "HEARTBEAT", FrameAck: "ACK", FrameDatagram: "DATAGRAM",
	FrameHello: "HELLO", FrameWelcome: "WELCOME", FrameJoin: "JOIN", FrameJoined: "JOINED",
	FrameLeave: "LEAVE", FrameLeft: "LEFT", FramePresence: "PRESENCE", FrameList: "LIST",
	FrameRooms: "ROOMS", FrameError: "ERROR", FrameGoAway: "GOAWAY",
}

func (t FrameType) String() string {
	if n, ok := frameNames[t]; ok {
		return n
	}
	return fmt.Sprintf("frame type 0x%02x", uint8(t))
}

// Known reports whether t is a frame type of version v.
func (t FrameType) Known(v uint8) bool {
	switch v {
	case VersionISSUN:
		return t == FrameEvent || t == FrameHeartbeat || t == FrameAck
	case VersionNative:
		_, ok := frameNames[t]
		return ok
	}
	return false
}

// Header is a decoded frame header.
type Header struct {
	Version uint8
	Type    FrameType
	Length  uint32 // body length
}

// AppendHeader appends the header of a frame with a body of n bytes.
func AppendHeader(dst []byte, version uint8, t FrameType, n int) []byte {
	return binary.LittleEndian.AppendUint32(append(dst, Magic0, Magic1, version, byte(t)), uint32(n))
}

// ParseHeader decodes the header at the start of b. It checks the magic,
// that the version is want (any version when want is 0), that the type is
// known for it and that the body is at most maxBody bytes (maxBody <= 0:
// no cap); it does not need the body to be present.
func ParseHeader(b []byte, want uint8, maxBody int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header needs %d bytes, have %d", ErrTruncated, HeaderSize, len(b))
	}
	if b[0] != Magic0 || b[1] != Magic1 {
		return Header{}, fmt.Errorf("%w: % x", ErrBadMagic, b[:2])
	}
	h := Header{Version: b[2], Type: FrameType(b[3]), Length: binary.LittleEndian.Uint32(b[4:8])}
	if (want != 0 && h.Version != want) || (h.Version != VersionISSUN && h.Version != VersionNative) {
		return Header{}, fmt.Errorf("%w: version %d, want %d", ErrVersion, h.Version, want)
	}
	if !h.Type.Known(h.Version) {
		return Header{}, fmt.Errorf("%w: %s in version %d", ErrFrameType, h.Type, h.Version)
	}
	if maxBody > 0 && uint64(h.Length) > uint64(maxBody) {
		return Header{}, fmt.Errorf("%w: body of %d bytes exceeds the frame cap of %d", ErrTooLarge, h.Length, maxBody)
	}
	return h, nil
}

// SplitFrame decodes the frame at the start of b (see ParseHeader) and
// returns its body and the bytes after it.
func SplitFrame(b []byte, want uint8, maxBody int) (Header, []byte, []byte, error) {
	h, err := ParseHeader(b, want, maxBody)
	if err != nil {
		return Header{}, nil, nil, err
	}
	end := uint64(HeaderSize) + uint64(h.Length)
	if uint64(len(b)) < end {
		return Header{}, nil, nil, fmt.Errorf("%w: body of %d bytes, have %d", ErrTruncated, h.Length, len(b)-HeaderSize)
	}
	return h, b[HeaderSize:end:end], b[end:], nil
}

// ReadFrame reads one frame from r (see ParseHeader for the checks): the
// header first, then a body of at most maxBody bytes, so a hostile length
// never allocates more than the cap. buf is reused when large enough; the
// returned body aliases it. An r that ends inside the frame is
// ErrTruncated (wrapping io.ErrUnexpectedEOF); one that ends before any
// byte is io.EOF.
func ReadFrame(r io.Reader, want uint8, maxBody int, buf []byte) (Header, []byte, error) {
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.EOF {
			return Header{}, nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return Header{}, nil, fmt.Errorf("%w: header ended after %d bytes: %w", ErrTruncated, n, err)
		}
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:], want, maxBody)
	if err != nil {
		return Header{}, nil, err
	}
	if cap(buf) < int(h.Length) {
		buf = make([]byte, h.Length)
	}
	body := buf[:h.Length]
	if n, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Header{}, nil, fmt.Errorf("%w: body of %d bytes ended after %d: %w", ErrTruncated, h.Length, n, io.ErrUnexpectedEOF)
		}
		return Header{}, nil, err
	}
	return h, body, nil
}
