package bench

import (
	"bytes"
	"errors"
	"strconv"
)

// Stamped payloads are JSON objects {"t":<unix nanos>,"s":<sequence>,"w":<publisher>,"p":"<padding>"}
// so they pass through any server that requires JSON data, and are parsed back without
// reflection. Sequence numbers count per (channel, publisher), so each publisher's stream is
// ordered on its own and reordering or loss is told apart from publisher concurrency.

// appendStamp appends a stamped payload of roughly size bytes (never less than needed).
func appendStamp(dst []byte, sendNanos int64, seq uint64, publisher int, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sendNanos, 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"w":`...)
	dst = strconv.AppendInt(dst, int64(publisher), 10)
	dst = append(dst, `,"p":"`...)
	for len(dst)-start+2 < size {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

var errNoStamp = errors.New("payload has no send stamp")

// parseStamp extracts the send time, sequence number and publisher of a stamped payload. It
// tolerates whitespace and any key order a server might re-encode with; a missing "w" means
// publisher 0.
func parseStamp(b []byte) (sendNanos int64, seq uint64, publisher int, err error) {
	t, okT := findNumber(b, `"t"`)
	s, okS := findNumber(b, `"s"`)
	if !okT || !okS || t > 1<<62 {
		return 0, 0, 0, errNoStamp
	}
	w, okW := findNumber(b, `"w"`)
	if !okW {
		w = 0
	}
	if w > 1<<20 {
		return 0, 0, 0, errNoStamp
	}
	return int64(t), s, int(w), nil
}

// findNumber returns the unsigned integer value of key (quoted) in a flat JSON object.
func findNumber(b []byte, key string) (uint64, bool) {
	for off := 0; off < len(b); {
		i := bytes.Index(b[off:], []byte(key))
		if i < 0 {
			return 0, false
		}
		j := off + i + len(key)
		off = j
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
			j++
		}
		if j >= len(b) || b[j] != ':' {
			continue // the key text appeared inside a value
		}
		j++
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
			j++
		}
		var v uint64
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			if v > (1<<64-1)/10 {
				return 0, false
			}
			v = v*10 + uint64(b[j]-'0')
			j++
			n++
		}
		if n == 0 {
			return 0, false
		}
		return v, true
	}
	return 0, false
}
