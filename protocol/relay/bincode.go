package relay

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// The bincode 1 encoding (its free functions' defaults): fixed-width
// little-endian integers, u64 length prefixes for strings, byte vectors
// and sequences, u8 booleans and option tags, u32 enum tags.

func putU8(b []byte, v uint8) []byte   { return append(b, v) }
func putU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func putU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func putU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func putBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
func putBytes(b, v []byte) []byte         { return append(putU64(b, uint64(len(v))), v...) }
func putString(b []byte, v string) []byte { return append(putU64(b, uint64(len(v))), v...) }

// decoder reads bincode values from a byte slice. The first error sticks:
// later reads return zero values, and err names the field that failed.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(field string, base error, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", base, field, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if rest := uint64(len(d.b) - d.off); n > rest {
		d.fail(field, ErrTruncated, "needs %d bytes at offset %d, have %d", n, d.off, rest)
		return nil
	}
	s := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) u8(field string) uint8 {
	if s := d.take(field, 1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if s := d.take(field, 2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if s := d.take(field, 4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if s := d.take(field, 8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (d *decoder) boolean(field string) bool {
	switch v := d.u8(field); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail(field, ErrMalformed, "boolean byte %d", v)
		return false
	}
}

// bytes reads a u64-prefixed byte vector of at most max bytes (max < 0:
// only the input bounds it). The result aliases the input; empty is nil.
func (d *decoder) bytes(field string, max int) []byte {
	n := d.u64(field)
	if d.err != nil {
		return nil
	}
	if max >= 0 && n > uint64(max) {
		d.fail(field, ErrTooLarge, "%d bytes, at most %d", n, max)
		return nil
	}
	if n == 0 {
		return nil
	}
	return d.take(field, n)
}

// str reads a u64-prefixed UTF-8 string of at most max bytes.
func (d *decoder) str(field string, max int) string {
	s := d.bytes(field, max)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(s) {
		d.fail(field, ErrMalformed, "not UTF-8")
		return ""
	}
	return string(s)
}

// count reads a u64 sequence length of at most max items, each at least
// minSize bytes, so a hostile count never allocates beyond the input.
func (d *decoder) count(field string, max, minSize int) int {
	n := d.u64(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(max) {
		d.fail(field, ErrTooLarge, "%d items, at most %d", n, max)
		return 0
	}
	if rest := uint64(len(d.b) - d.off); minSize > 0 && n > rest/uint64(minSize) {
		d.fail(field, ErrTruncated, "%d items of at least %d bytes, have %d bytes", n, minSize, rest)
		return 0
	}
	return int(n)
}

// end fails unless the input is consumed (native messages allow no
// trailing bytes).
func (d *decoder) end(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(what, ErrMalformed, "%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}

// noLimit is the cap of fields bounded only by the frame.
const noLimit = math.MaxInt32
