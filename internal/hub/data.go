package hub

import (
	"encoding/json"
	"unicode/utf8"
)

// IsJSONText reports whether b is one valid JSON value encoded as valid
// UTF-8: what may travel inside a JSON text frame or a JSON HTTP body.
// encoding/json alone accepts invalid UTF-8 inside strings.
func IsJSONText(b []byte) bool {
	return utf8.Valid(b) && json.Valid(b)
}
