package gateway

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTopLevelValue(t *testing.T) {
	tests := []struct {
		body, want string
		found      bool
	}{
		{`{"input":{"a":5,"b":3}}`, `{"a":5,"b":3}`, true},
		{`{ "x" : [1,{"input":2}] , "input" : "s\"}" } `, `"s\"}"`, true},
		{`{"inp\u0075t":7}`, `7`, true},
		{`{"input":null}`, `null`, true},
		{`{"input":1,"input":2}`, `2`, true},
		{`{"a":{"input":1}}`, ``, false},
		{`{}`, ``, false},
		{`{"input":-1.5e3}`, `-1.5e3`, true},
	}
	for _, tt := range tests {
		got, found := topLevelValue([]byte(tt.body), "input")
		require.Equal(t, tt.found, found, tt.body)
		require.Equal(t, tt.want, string(got), tt.body)
	}
}

// FuzzTopLevelValue compares the scanner with encoding/json on valid
// objects and checks it never panics.
func FuzzTopLevelValue(f *testing.F) {
	for _, s := range []string{`{"input":{"a":5}}`, `{"x":"\\","input":[1,"]"]}`, `{"input":"\u00e9"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			return
		}
		b := bytes.TrimSpace(body)
		if len(b) == 0 || b[0] != '{' {
			return
		}
		got, found := topLevelValue(b, "input")
		want, ok := m["input"]
		require.Equal(t, ok, found)
		if ok {
			var g, w any
			require.NoError(t, json.Unmarshal(got, &g))
			require.NoError(t, json.Unmarshal(want, &w))
			require.Equal(t, w, g)
		}
	})
}
