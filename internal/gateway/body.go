package gateway

import (
	"bytes"
	"encoding/json"
)

// topLevelValue returns the value of key in the JSON object body (the last
// one if repeated). body must already be valid JSON (json.Valid) starting
// with '{'; this scan only locates value boundaries.
func topLevelValue(body []byte, key string) ([]byte, bool) {
	var (
		val   []byte
		found bool
	)
	i := skipWS(body, 1)
	for i < len(body) && body[i] != '}' {
		ks := i
		i = skipString(body, i)
		k := body[ks+1 : i-1]
		i = skipWS(body, i)
		i = skipWS(body, i+1) // ':'
		vs := i
		i = skipValue(body, i)
		if keyEquals(k, key) {
			val, found = body[vs:i], true
		}
		i = skipWS(body, i)
		if i < len(body) && body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
	return val, found
}

func keyEquals(raw []byte, key string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == key
	}
	var s string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	return json.Unmarshal(q, &s) == nil && s == key
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
