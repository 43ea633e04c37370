package circle

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeFrame(t *testing.T) {
	f := decodeFrame([]byte(`{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"1"}}`), 4)
	require.Nil(t, f.fatal)
	require.False(t, f.batch)
	require.Nil(t, f.bad[0])
	require.Equal(t, "play", f.reqs[0].Method)
	require.Equal(t, json.RawMessage("1"), f.reqs[0].ID)

	f = decodeFrame([]byte(` [{"jsonrpc":"2.0","method":"ping"}, 5]`), 4)
	require.True(t, f.batch)
	require.True(t, f.reqs[0].notification())
	require.NotNil(t, f.bad[1])

	require.Equal(t, CodeParseError, decodeFrame([]byte(`{`), 4).fatal.Code)
	require.Equal(t, CodeInvalidRequest, decodeFrame([]byte(`[]`), 4).fatal.Code)
	require.Equal(t, CodeInvalidRequest, decodeFrame([]byte(`[1,1,1,1,1]`), 4).fatal.Code)
}

func TestEncodeResponse(t *testing.T) {
	require.JSONEq(t, `{"jsonrpc":"2.0","id":null,"result":""}`, string(encodeResponse(nil, "", nil)))
	require.JSONEq(t, `{"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"Authentication Required"}}`,
		string(encodeResponse(json.RawMessage(`"a"`), nil, newError(CodeAuthRequired, nil))))
}

// FuzzDecodeFrame checks that any input decodes without panicking, that
// every outcome can be encoded as a valid response, and that a frame cut in
// two (a partial read) is answered with a parse error unless the cut
// happens to be valid JSON itself.
func FuzzDecodeFrame(f *testing.F) {
	seeds := []string{
		`{"jsonrpc":"2.0","id":1,"method":"fetch_nonce","params":{"pubkey":"02aa"}}`,
		`{"jsonrpc":"2.0","id":"x","method":"authenticate","params":["k","s"]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"1"}},{"jsonrpc":"2.0","method":"ping"}]`,
		`{"jsonrpc":"2.0","id":null,"method":"whoami","params":null}`,
		`[]`, `{`, `"x"`, `[1]`, `{"jsonrpc":"2.0","id":1.5e3,"method":"ping"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := decodeFrame(data, 8)
		check := func(b json.RawMessage) {
			if !json.Valid(b) {
				t.Fatalf("invalid response JSON %q", b)
			}
		}
		if fr.fatal != nil {
			check(encodeResponse(nil, nil, fr.fatal))
			return
		}
		if len(fr.reqs) != len(fr.bad) || len(fr.reqs) == 0 || len(fr.reqs) > 8 {
			t.Fatalf("inconsistent frame %+v", fr)
		}
		for i, r := range fr.reqs {
			if fr.bad[i] != nil {
				check(encodeResponse(r.ID, nil, fr.bad[i]))
				continue
			}
			if r.ID != nil && !json.Valid(r.ID) {
				t.Fatalf("invalid id %q", r.ID)
			}
			check(encodeResponse(r.ID, "ok", nil))
			var p struct {
				Script *string `json:"script"`
			}
			_ = decodeParams(r.Params, &p, "script")
		}
		if len(data) > 1 {
			for _, part := range [][]byte{data[:len(data)/2], data[len(data)/2:]} {
				pf := decodeFrame(part, 8)
				if !json.Valid(part) && (pf.fatal == nil || pf.fatal.Code != CodeParseError) {
					t.Fatalf("partial frame %q not a parse error", part)
				}
			}
		}
	})
}
