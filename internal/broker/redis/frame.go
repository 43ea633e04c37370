package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// PUB/SUB frames. The first byte is the format version, the second the
// kind; the rest depends on the kind:
//
//	'1' 'p' <offset decimal> ':' <epoch> ':' <publication payload>
//	'1' 'j' <client info>
//	'1' 'l' <client info>
//
// The publication part is written by the publish script in Redis (it alone
// knows offset and epoch), so it is text; payloads are binary (see
// appendPublication). Epochs never contain ':'.
const (
	frameVersion = '1'
	kindPub      = 'p'
	kindJoin     = 'j'
	kindLeave    = 'l'
)

// errFrame is wrapped by every decoding error.
var errFrame = errors.New("redis broker: malformed frame")

// maxTags bounds the tags of one decoded publication.
const maxTags = 1 << 16

type frame struct {
	kind byte
	pub  *hub.Publication
	sp   hub.StreamPosition
	info *hub.ClientInfo
}

// pubFrame returns the frame the publish path sends for a publication
// without history (offset 0, no epoch).
func pubFrame(payload []byte) []byte {
	out := make([]byte, 0, len(payload)+5)
	out = append(out, frameVersion, kindPub, '0', ':', ':')
	return append(out, payload...)
}

func infoFrame(kind byte, info *hub.ClientInfo) []byte {
	out := []byte{frameVersion, kind}
	return appendInfo(out, info)
}

// decodeFrame parses a PUB/SUB message.
func decodeFrame(msg string) (frame, error) {
	if len(msg) < 2 || msg[0] != frameVersion {
		return frame{}, fmt.Errorf("%w: unknown version", errFrame)
	}
	f := frame{kind: msg[1]}
	rest := msg[2:]
	switch f.kind {
	case kindPub:
		offs, r, ok := strings.Cut(rest, ":")
		if !ok {
			return frame{}, fmt.Errorf("%w: no offset", errFrame)
		}
		off, err := strconv.ParseUint(offs, 10, 64)
		if err != nil {
			return frame{}, fmt.Errorf("%w: offset: %v", errFrame, err)
		}
		epoch, payload, ok := strings.Cut(r, ":")
		if !ok {
			return frame{}, fmt.Errorf("%w: no epoch", errFrame)
		}
		pub, err := decodePublication([]byte(payload))
		if err != nil {
			return frame{}, err
		}
		pub.Offset = off
		f.pub, f.sp = pub, hub.StreamPosition{Offset: off, Epoch: epoch}
	case kindJoin, kindLeave:
		d := decoder{b: []byte(rest)}
		f.info = d.info()
		if d.err == nil && len(d.b) != 0 {
			d.err = fmt.Errorf("%w: trailing bytes", errFrame)
		}
		if d.err != nil {
			return frame{}, d.err
		}
	default:
		return frame{}, fmt.Errorf("%w: unknown kind %q", errFrame, f.kind)
	}
	return f, nil
}

// Publication payload (stream entries and PUB/SUB frames):
//
//	varint time | bytes data | byte flags (1 info, 2 tags) | [info] | [uvarint n, n × (bytes key, bytes value)]
//
// info is four byte strings: client, user, conn info, chan info. A byte
// string is a uvarint length followed by the bytes.
const (
	flagInfo = 1
	flagTags = 2
)

func appendPublication(b []byte, pub *hub.Publication) []byte {
	b = binary.AppendVarint(b, pub.Time)
	b = appendBytes(b, pub.Data)
	var flags byte
	if pub.Info != nil {
		flags |= flagInfo
	}
	if len(pub.Tags) > 0 {
		flags |= flagTags
	}
	b = append(b, flags)
	if pub.Info != nil {
		b = appendInfoFields(b, pub.Info)
	}
	if len(pub.Tags) > 0 {
		b = binary.AppendUvarint(b, uint64(len(pub.Tags)))
		for k, v := range pub.Tags {
			b = appendBytes(b, []byte(k))
			b = appendBytes(b, []byte(v))
		}
	}
	return b
}

func decodePublication(b []byte) (*hub.Publication, error) {
	d := decoder{b: b}
	pub := &hub.Publication{Time: d.varint()}
	pub.Data = d.bytes()
	flags := d.byte()
	if flags&^(flagInfo|flagTags) != 0 && d.err == nil {
		d.err = fmt.Errorf("%w: unknown flags %#x", errFrame, flags)
	}
	if flags&flagInfo != 0 {
		pub.Info = d.infoFields()
	}
	if flags&flagTags != 0 {
		n := d.uvarint()
		// Each tag takes at least two bytes.
		if d.err == nil && (n == 0 || n > maxTags || n > uint64(len(d.b))/2) {
			d.err = fmt.Errorf("%w: %d tags", errFrame, n)
		}
		if d.err == nil {
			pub.Tags = make(map[string]string, n)
			for i := uint64(0); i < n && d.err == nil; i++ {
				k := string(d.bytes())
				pub.Tags[k] = string(d.bytes())
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: trailing bytes", errFrame)
	}
	if d.err != nil {
		return nil, d.err
	}
	return pub, nil
}

// appendInfo writes a presence flag byte then, when present, info.
func appendInfo(b []byte, info *hub.ClientInfo) []byte {
	if info == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return appendInfoFields(b, info)
}

func appendInfoFields(b []byte, info *hub.ClientInfo) []byte {
	b = appendBytes(b, []byte(info.ClientID))
	b = appendBytes(b, []byte(info.UserID))
	b = appendNullable(b, info.ConnInfo)
	return appendNullable(b, info.ChanInfo)
}

// appendNullable distinguishes nil from empty: length+1, 0 for nil.
func appendNullable(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodeInfo is the presence hash value of info.
func encodeInfo(info *hub.ClientInfo) []byte { return appendInfo(nil, info) }

func decodeInfo(b []byte) (*hub.ClientInfo, error) {
	d := decoder{b: b}
	info := d.info()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: trailing bytes", errFrame)
	}
	return info, d.err
}

// decoder reads the encodings above; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errFrame, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	v := d.take(n)
	if v == nil && d.err == nil {
		v = []byte{}
	}
	return v
}

func (d *decoder) nullable() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	return d.take(n - 1)
}

func (d *decoder) info() *hub.ClientInfo {
	switch d.byte() {
	case 0:
		return nil
	case 1:
		return d.infoFields()
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: bad info flag", errFrame)
		}
		return nil
	}
}

func (d *decoder) infoFields() *hub.ClientInfo {
	info := &hub.ClientInfo{ClientID: string(d.bytes()), UserID: string(d.bytes())}
	info.ConnInfo = d.nullable()
	info.ChanInfo = d.nullable()
	if d.err != nil {
		return nil
	}
	return info
}
