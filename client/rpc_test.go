package client

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestDecodeResponses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []response
		wantErr bool
	}{
		{"result", `{"jsonrpc":"2.0","id":7,"result":"ok"}`, []response{{ID: 7, HasID: true, Result: json.RawMessage(`"ok"`)}}, false},
		{"null result", `{"jsonrpc":"2.0","id":1,"result":null}`, []response{{ID: 1, HasID: true, Result: json.RawMessage(`null`)}}, false},
		{"string id", `{"jsonrpc":"2.0","id":"9","result":1}`, []response{{ID: 9, HasID: true, Result: json.RawMessage(`1`)}}, false},
		{"error", `{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"Execution Error","data":"x"}}`,
			[]response{{ID: 2, HasID: true, Error: &RPCError{Code: -32000, Message: "Execution Error", Data: json.RawMessage(`"x"`)}}}, false},
		{"null id error", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`,
			[]response{{Error: &RPCError{Code: -32700, Message: "Parse error"}}}, false},
		{"batch", `[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":2}]`,
			[]response{{ID: 1, HasID: true, Result: json.RawMessage(`1`)}, {ID: 2, HasID: true, Result: json.RawMessage(`2`)}}, false},
		{"notification skipped", `{"jsonrpc":"2.0","method":"tick","params":{}}`, []response{}, false},
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
			got, err := decodeResponses([]byte(tt.in))
			if tt.wantErr {
				if err == nil || !errors.Is(err, errBadResponse) {
					t.Fatalf("err = %v, want errBadResponse", err)
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

func TestRPCErrorText(t *testing.T) {
	e := &RPCError{Code: -32000, Message: "Execution Error", Data: json.RawMessage(`"timeout"`)}
	if got := e.Error(); got != "rpc error -32000: Execution Error: timeout" {
		t.Fatal(got)
	}
	e = &RPCError{Code: -32002, Message: "Invalid Credentials", Data: json.RawMessage(`null`)}
	if got := e.Error(); got != "rpc error -32002: Invalid Credentials" {
		t.Fatal(got)
	}
	e = &RPCError{Code: 1, Message: "m", Data: json.RawMessage(`{"a":1}`)}
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
			resps, err := decodeResponses(b)
			if err != nil {
				if !errors.Is(err, errBadResponse) {
					t.Fatalf("error %v does not wrap errBadResponse", err)
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

func TestBackoffJitterExtremes(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second, Multiplier: 3, Jitter: 1}
	if d := b.delay(1, 0); d != 3*time.Second {
		t.Fatalf("r=0: %v", d)
	}
	if d := b.delay(1, 0.999999); d < 0 || d > 10*time.Microsecond {
		t.Fatalf("r≈1: %v", d)
	}
	if d := b.delay(5, 0); d != 10*time.Second {
		t.Fatalf("capped: %v", d)
	}
	weird := Backoff{Initial: time.Second, Max: time.Millisecond, Multiplier: 0.5, Jitter: 7}
	if d := weird.delay(3, 0); d != time.Second {
		t.Fatalf("max below initial: %v", d)
	}
}
