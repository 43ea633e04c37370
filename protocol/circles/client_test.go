package circles

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeResponses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Response
		wantErr bool
	}{
		{"result", `{"jsonrpc":"2.0","id":7,"result":"ok"}`, []Response{{ID: 7, HasID: true, Result: json.RawMessage(`"ok"`)}}, false},
		{"null result", `{"jsonrpc":"2.0","id":1,"result":null}`, []Response{{ID: 1, HasID: true, Result: json.RawMessage(`null`)}}, false},
		{"string id", `{"jsonrpc":"2.0","id":"9","result":1}`, []Response{{ID: 9, HasID: true, Result: json.RawMessage(`1`)}}, false},
		{"error", `{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"Execution Error","data":"x"}}`,
			[]Response{{ID: 2, HasID: true, Error: &Error{Code: -32000, Message: "Execution Error", Data: json.RawMessage(`"x"`)}}}, false},
		{"null id error", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`,
			[]Response{{Error: &Error{Code: -32700, Message: "Parse error"}}}, false},
		{"batch", `[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":2}]`,
			[]Response{{ID: 1, HasID: true, Result: json.RawMessage(`1`)}, {ID: 2, HasID: true, Result: json.RawMessage(`2`)}}, false},
		{"notification skipped", `{"jsonrpc":"2.0","method":"tick","params":{}}`, []Response{}, false},
		{"empty", ``, nil, true},
		{"empty batch", `[]`, nil, true},
		{"not json", `nope`, nil, true},
		{"scalar", `42`, nil, true},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"result":1}`, nil, true},
		{"neither", `{"jsonrpc":"2.0","id":1}`, nil, true},
		{"negative id", `{"jsonrpc":"2.0","id":-1,"result":1}`, nil, true},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"result":1}`, nil, true},
		{"error not object", `{"jsonrpc":"2.0","id":1,"error":"bad"}`, nil, true},
		{"batch with scalar", `[1]`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResponses([]byte(tt.in))
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrMalformedResponse) {
					t.Fatalf("err = %v, want ErrMalformedResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d responses, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.ID != w.ID || g.HasID != w.HasID || string(g.Result) != string(w.Result) {
					t.Fatalf("response %d = %+v, want %+v", i, g, w)
				}
				if (g.Error == nil) != (w.Error == nil) || (g.Error != nil && (g.Error.Code != w.Error.Code || g.Error.Message != w.Error.Message || string(g.Error.Data) != string(w.Error.Data))) {
					t.Fatalf("response %d error = %+v, want %+v", i, g.Error, w.Error)
				}
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Code: -32000, Message: "Execution Error", Data: json.RawMessage(`"timeout"`)}
	if got := e.Error(); got != "rpc error -32000: Execution Error: timeout" {
		t.Fatal(got)
	}
	e = &Error{Code: -32002, Message: "Invalid Credentials", Data: json.RawMessage(`null`)}
	if got := e.Error(); got != "rpc error -32002: Invalid Credentials" {
		t.Fatal(got)
	}
	e = &Error{Code: 1, Message: "m", Data: json.RawMessage(`{"a":1}`)}
	if got := e.DataString(); got != `{"a":1}` {
		t.Fatal(got)
	}
}

func FuzzDecodeResponses(f *testing.F) {
	seeds := []string{
		`{"jsonrpc":"2.0","id":1,"result":"out"}`,
		`{"jsonrpc":"2.0","id":2,"result":{"nonce":"n","expires_at":1700000000}}`,
		`{"jsonrpc":"2.0","id":3,"error":{"code":-32002,"message":"Invalid Credentials"}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`,
		`[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":"2","error":{"code":-32000,"message":"e","data":"d"}}]`,
		`{"jsonrpc":"2.0","method":"n"}`,
		`[]`, ``, `null`, `{"id":18446744073709551616,"result":1}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) {
			resps, err := DecodeResponses(b)
			if err != nil {
				if !errors.Is(err, ErrMalformedResponse) {
					t.Fatalf("error %v does not wrap ErrMalformedResponse", err)
				}
				return
			}
			for _, r := range resps {
				if (r.Error == nil) == (r.Result == nil) {
					t.Fatalf("response %+v must carry exactly one of result and error", r)
				}
				if !r.HasID && r.ID != 0 {
					t.Fatalf("id %d without HasID", r.ID)
				}
				if r.Error != nil {
					_ = r.Error.Error()
				}
			}
		}
		check(data)
		// Split in two, as a partial read would deliver it.
		if len(data) > 1 {
			mid := len(data) / 2
			check(data[:mid])
			check(data[mid:])
		}
	})
}

func TestEncodeRequest(t *testing.T) {
	b, err := EncodeRequest(3, MethodPlay, PlayParams{Script: "1"})
	if err != nil || string(b) != `{"jsonrpc":"2.0","id":3,"method":"play","params":{"script":"1"}}` {
		t.Fatalf("%s %v", b, err)
	}
	if _, err := EncodeRequest(1, "x", func() {}); err == nil {
		t.Fatal("unencodable params")
	}
	// What the client encodes, the server decodes.
	f := DecodeFrame(b, 1)
	if f.Fatal != nil || f.Invalid[0] != nil || f.Requests[0].Method != MethodPlay {
		t.Fatalf("%+v", f)
	}
	var p PlayParams
	if e := DecodeParams(f.Requests[0].Params, &p, PlayParamNames...); e != nil || p.Script != "1" {
		t.Fatalf("%+v %v", p, e)
	}
	// What the server encodes, the client decodes.
	resps, err := DecodeResponses(EncodeResponse(f.Requests[0].ID, "out", nil))
	if err != nil || len(resps) != 1 || resps[0].ID != 3 || string(resps[0].Result) != `"out"` {
		t.Fatalf("%+v %v", resps, err)
	}
}
