package circles

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeFrame(t *testing.T) {
	f := DecodeFrame([]byte(`{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"1"}}`), 4)
	require.Nil(t, f.Fatal)
	require.False(t, f.Batch)
	require.Nil(t, f.Invalid[0])
	require.Equal(t, "play", f.Requests[0].Method)
	require.Equal(t, json.RawMessage("1"), f.Requests[0].ID)

	f = DecodeFrame([]byte(` [{"jsonrpc":"2.0","method":"ping"}, 5]`), 4)
	require.True(t, f.Batch)
	require.True(t, f.Requests[0].IsNotification())
	require.NotNil(t, f.Invalid[1])

	require.Equal(t, CodeParseError, DecodeFrame([]byte(`{`), 4).Fatal.Code)
	require.Equal(t, CodeInvalidRequest, DecodeFrame([]byte(`[]`), 4).Fatal.Code)
	require.Equal(t, CodeInvalidRequest, DecodeFrame([]byte(`[1,1,1,1,1]`), 4).Fatal.Code)
}

func TestDecodeParams(t *testing.T) {
	var p AuthenticateParams
	require.Nil(t, DecodeParams(json.RawMessage(`["k","s"]`), &p, AuthenticateParamNames...))
	require.Equal(t, AuthenticateParams{PubKey: "k", Signature: "s"}, p)
	p = AuthenticateParams{}
	require.Nil(t, DecodeParams(json.RawMessage(`{"pubkey":"k"}`), &p, AuthenticateParamNames...))
	require.Equal(t, "k", p.PubKey)
	require.Nil(t, DecodeParams(nil, &p, AuthenticateParamNames...))
	require.Equal(t, CodeInvalidParams, DecodeParams(json.RawMessage(`["k","s","x"]`), &p, AuthenticateParamNames...).Code)
	require.Equal(t, CodeInvalidParams, DecodeParams(json.RawMessage(`{"pubkey":1}`), &p, AuthenticateParamNames...).Code)
}

func TestEncodeResponse(t *testing.T) {
	require.JSONEq(t, `{"jsonrpc":"2.0","id":null,"result":""}`, string(EncodeResponse(nil, "", nil)))
	require.JSONEq(t, `{"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"Authentication Required"}}`,
		string(EncodeResponse(json.RawMessage(`"a"`), nil, NewError(CodeAuthRequired, nil))))
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error"}}`,
		string(EncodeResponse(json.RawMessage(`1`), func() {}, nil)), "unencodable result")
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"Execution Error","data":"boom"}}`,
		string(EncodeResponse(json.RawMessage(`1`), nil, NewError(CodeExecution, "boom"))))
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
		fr := DecodeFrame(data, 8)
		check := func(b json.RawMessage) {
			if !json.Valid(b) {
				t.Fatalf("invalid response JSON %q", b)
			}
		}
		if fr.Fatal != nil {
			check(EncodeResponse(nil, nil, fr.Fatal))
			return
		}
		if len(fr.Requests) != len(fr.Invalid) || len(fr.Requests) == 0 || len(fr.Requests) > 8 {
			t.Fatalf("inconsistent frame %+v", fr)
		}
		for i, r := range fr.Requests {
			if fr.Invalid[i] != nil {
				check(EncodeResponse(r.ID, nil, fr.Invalid[i]))
				continue
			}
			if r.ID != nil && !json.Valid(r.ID) {
				t.Fatalf("invalid id %q", r.ID)
			}
			check(EncodeResponse(r.ID, "ok", nil))
			var p AuthenticateParams
			if e := DecodeParams(r.Params, &p, AuthenticateParamNames...); e != nil {
				check(EncodeResponse(r.ID, nil, e))
			}
		}
		if len(data) > 1 {
			for _, part := range [][]byte{data[:len(data)/2], data[len(data)/2:]} {
				pf := DecodeFrame(part, 8)
				if !json.Valid(part) && (pf.Fatal == nil || pf.Fatal.Code != CodeParseError) {
					t.Fatalf("partial frame %q not a parse error", part)
				}
			}
		}
	})
}
