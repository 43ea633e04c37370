package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

const testKey = "k"

// fakeClient records what the server API asks of a connection.
type fakeClient struct {
	hub      *hub.Hub
	id, user string
	mu       sync.Mutex
	calls    []string
}

func (c *fakeClient) ID() string     { return c.id }
func (c *fakeClient) UserID() string { return c.user }
func (c *fakeClient) record(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}
func (c *fakeClient) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}
func (c *fakeClient) Format() hub.FormatID { return 0 }
func (c *fakeClient) Send([]byte) error    { return nil }
func (c *fakeClient) Disconnect(d hub.Disconnect) {
	c.record("disconnect " + d.Reason)
	go c.hub.RemoveClient(c) // as a connection does once closed
}
func (c *fakeClient) ServerSubscribe(_ context.Context, ch string, o hub.ServerSubscribe) error {
	c.record("subscribe " + ch + " " + string(o.ChanInfo))
	return nil
}
func (c *fakeClient) ServerUnsubscribe(_ context.Context, ch string, _ uint32, _ string) {
	c.record("unsubscribe " + ch)
}
func (c *fakeClient) Refresh(expireAt int64, expired bool, info []byte) {
	c.record("refresh " + string(info))
}

type echoRPC struct{}

func (echoRPC) HandleRPC(_ context.Context, r hub.RPCRequest) ([]byte, error) {
	switch r.Method {
	case "nothing":
		return nil, nil
	case "binary":
		return []byte{0xff}, nil
	}
	return r.Data, nil
}

type nopCodec struct{}

func (nopCodec) EncodePublication(string, *hub.Publication) ([]byte, error) { return []byte("p"), nil }
func (nopCodec) EncodeJoin(string, *hub.ClientInfo) ([]byte, error)         { return []byte("j"), nil }
func (nopCodec) EncodeLeave(string, *hub.ClientInfo) ([]byte, error)        { return []byte("l"), nil }
func (nopCodec) EncodeMessage([]byte) ([]byte, error)                       { return []byte("m"), nil }

type nopSub struct{ n int }

func (*nopSub) Format() hub.FormatID           { return 0 }
func (*nopSub) Deliver(string, uint64, []byte) {}

type fixture struct {
	hub *hub.Hub
	h   *Handler
	c   *fakeClient
}

func newFixture(t testing.TB, rpc hub.RPCHandler) *fixture {
	t.Helper()
	hb, err := hub.New(hub.Config{Broker: memory.New(nil), Presence: memory.NewPresence(),
		Clock:   clocktest.New(time.Unix(1_700_000_000, 0)),
		Cluster: hub.ClusterConfig{NodeID: "node1", NodeName: "node1", Version: "v-test"},
		Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{
			"chat": {HistorySize: 10, HistoryTTL: time.Minute, Presence: true},
			"bare": {},
			"json": {PublicationDataFormat: hub.DataFormatJSON},
			"obj":  {PublicationDataFormat: hub.DataFormatJSONObject},
			"bin":  {PublicationDataFormat: hub.DataFormatBinary},
		}}})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, hb.Shutdown(ctx))
	})
	_, err = hb.RegisterFormat("nop", nopCodec{})
	require.NoError(t, err)
	h, err := New(Config{Hub: hb, Key: testKey, RPC: rpc, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	c := &fakeClient{hub: hb, id: "c1", user: "alice"}
	require.NoError(t, hb.AddClient(c))
	return &fixture{hub: hb, h: h, c: c}
}

func (f *fixture) call(t *testing.T, method, body string, header ...string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/"+method, strings.NewReader(body))
	r.Header.Set("X-API-Key", testKey)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

var epochRe = regexp.MustCompile(`"epoch":"[^"]+"`)

// TestReplyShapes runs every method and compares the exact reply with
// Centrifugo v6's (epochs normalised).
func TestReplyShapes(t *testing.T) {
	f := newFixture(t, echoRPC{})
	require.NoError(t, f.hub.AddPresence(context.Background(), "chat:a", &hub.ClientInfo{ClientID: "c1", UserID: "alice", ConnInfo: []byte(`{"n":1}`)}))
	for i, ch := range []string{"chat:a", "chat:a", "chat:x/y", "room"} {
		require.NoError(t, f.hub.AddSubscriber(ch, &nopSub{i}, false))
	}
	for _, tc := range []struct {
		method, body, want string
	}{
		{"publish", `{"channel":"chat:a","data":{"x":1}}`, `{"result":{"offset":1,"epoch":"E"}}`},
		{"publish", `{"channel":"bare:a","data":{"x":1}}`, `{"result":{}}`},
		{"publish", `{"channel":"chat:a","b64data":"AP8="}`, `{"result":{"offset":2,"epoch":"E"}}`},
		{"publish", `{"channel":"nope:a","data":1}`, `{"error":{"code":102,"message":"unknown channel"}}`},
		{"publish", `{"channel":"chat:a"}`, `{"error":{"code":107,"message":"bad request: data required"}}`},
		{"publish", `{"data":1}`, `{"error":{"code":107,"message":"bad request: channel required"}}`},
		{"publish", `{"channel":"chat:a","data":1,"idempotency_key":"` + strings.Repeat("k", 257) + `"}`, `{"error":{"code":107,"message":"bad request: idempotency_key is longer than 256 bytes"}}`},
		{"broadcast", `{"channels":["chat:a","nope:b",""],"data":{"y":2}}`,
			`{"result":{"responses":[{"result":{"offset":3,"epoch":"E"}},{"error":{"code":102,"message":"unknown channel"}},{"error":{"code":107,"message":"bad request: channel required"}}]}}`},
		{"broadcast", `{"channels":["chat:a"]}`, `{"result":{"responses":[{"error":{"code":107,"message":"bad request: data required"}}]}}`},
		{"publish", `{"channel":"json:a","b64data":"AP8="}`, `{"error":{"code":107,"message":"bad request: data must be JSON in UTF-8 in this namespace"}}`},
		{"publish", `{"channel":"json:a","b64data":"e30="}`, `{"result":{}}`}, // base64 of {}
		{"publish", `{"channel":"obj:a","data":[1]}`, `{"error":{"code":107,"message":"bad request: data must be a JSON object in this namespace"}}`},
		{"publish", `{"channel":"bin:a"}`, `{"result":{}}`},
		{"broadcast", `{"channels":["bin:a","obj:a"],"data":"s"}`, `{"result":{"responses":[{"result":{}},{"error":{"code":107,"message":"bad request: data must be a JSON object in this namespace"}}]}}`},
		{"broadcast", `{"channels":[],"data":1}`, `{"error":{"code":107,"message":"bad request: channels required"}}`},
		{"subscribe", `{"user":"alice","channel":"chat:a","info":{"r":1}}`, `{"result":{}}`},
		{"subscribe", `{"user":"alice","channel":"chat:a","session":"s"}`, `{"error":{"code":107,"message":"bad request: session is not supported by Switchboard"}}`},
		{"unsubscribe", `{"user":"alice","channel":"chat:a"}`, `{"result":{}}`},
		{"unsubscribe", `{"user":"alice","channel":"nope:a"}`, `{"error":{"code":102,"message":"unknown channel"}}`},
		{"refresh", `{"user":"alice","info":{"v":2}}`, `{"result":{}}`},
		{"presence", `{"channel":"chat:a"}`, `{"result":{"presence":{"c1":{"user":"alice","client":"c1","conn_info":{"n":1}}}}}`},
		{"presence", `{"channel":"bare:a"}`, `{"error":{"code":108,"message":"not available"}}`},
		{"presence_stats", `{"channel":"chat:a"}`, `{"result":{"num_clients":1,"num_users":1}}`},
		{"presence_stats", `{"channel":"chat:empty"}`, `{"result":{"num_clients":0,"num_users":0}}`},
		{"history", `{"channel":"chat:a","limit":10}`,
			`{"result":{"publications":[{"data":{"x":1},"offset":1},{"b64data":"AP8=","offset":2},{"data":{"y":2},"offset":3}],"epoch":"E","offset":3}}`},
		{"history", `{"channel":"chat:a"}`, `{"result":{"publications":[],"epoch":"E","offset":3}}`},
		{"history", `{"channel":"chat:a","limit":1,"since":{"offset":1,"epoch":"other"}}`, `{"error":{"code":112,"message":"unrecoverable position"}}`},
		{"history", `{"channel":"bare:a"}`, `{"error":{"code":108,"message":"not available"}}`},
		{"history_remove", `{"channel":"chat:a"}`, `{"result":{}}`},
		{"channels", `{}`, `{"result":{"channels":{"chat:a":{"num_clients":2},"chat:x/y":{"num_clients":1},"room":{"num_clients":1}}}}`},
		{"channels", `{"pattern":"chat:*"}`, `{"result":{"channels":{"chat:a":{"num_clients":2},"chat:x/y":{"num_clients":1}}}}`},
		{"channels", `{"pattern":"{room,chat:?}"}`, `{"result":{"channels":{"chat:a":{"num_clients":2},"room":{"num_clients":1}}}}`},
		{"channels", `{"pattern":"[!c]*"}`, `{"result":{"channels":{"room":{"num_clients":1}}}}`},
		{"channels", `{"pattern":"[z-a]"}`, `{"error":{"code":107,"message":"bad request: invalid pattern: invalid pattern"}}`},
		{"info", `{}`, `{"result":{"nodes":[{"uid":"node1","name":"node1","version":"v-test","num_clients":1,"num_users":1,"num_channels":3,"num_subs":4}]}}`},
		{"rpc", `{"method":"echo","params":{"p":1}}`, `{"result":{"data":{"p":1}}}`},
		{"rpc", `{"method":"nothing"}`, `{"result":{}}`},
		{"rpc", `{"method":"binary"}`, `{"error":{"code":100,"message":"internal server error"}}`},
		{"rpc", `{}`, `{"error":{"code":107,"message":"bad request: method required"}}`},
		{"disconnect", `{"user":"alice","whitelist":["c1"]}`, `{"result":{}}`},
		{"disconnect", `{"user":"alice","disconnect":{"code":1,"reason":"x"}}`, `{"error":{"code":107,"message":"bad request: disconnect code must be in 3000-4999"}}`},
		{"batch", `{"commands":[{"publish":{"channel":"chat:b","data":{}}},{"presence_stats":{"channel":"chat:a"}},{"nope":{}},{},{"info":{},"rpc":{}},null,{"publish":{"channel":"nope:x","data":1}}]}`,
			`{"replies":[{"publish":{"offset":1,"epoch":"E"}},{"presence_stats":{"num_clients":1,"num_users":1}},{"error":{"code":104,"message":"not found"}},{"error":{"code":104,"message":"not found"}},{"error":{"code":107,"message":"bad request: each command holds exactly one method"}},{"error":{"code":107,"message":"bad request: each command is an object"}},{"error":{"code":102,"message":"unknown channel"}}]}`},
		{"batch", `{"commands":[]}`, `{}`},
	} {
		t.Run(tc.method+" "+tc.body, func(t *testing.T) {
			code, got := f.call(t, tc.method, tc.body)
			require.Equal(t, http.StatusOK, code)
			want := strings.ReplaceAll(tc.want, `"epoch":"E"`, `"epoch":"EPOCH"`)
			require.JSONEq(t, want, epochRe.ReplaceAllString(got, `"epoch":"EPOCH"`))
		})
	}
	require.Equal(t, []string{`subscribe chat:a {"r":1}`, "unsubscribe chat:a", `refresh {"v":2}`}, f.c.got(),
		"the whitelisted client is not disconnected")
}

func TestHTTPErrors(t *testing.T) {
	f := newFixture(t, nil)
	f.h.cfg.MaxBody = 64
	for _, tc := range []struct {
		name, method, httpMethod, key, body string
		header                              []string
		status                              int
		want                                string
	}{
		{"no key", "info", http.MethodPost, "", `{}`, nil, 401, `{"error":{"code":101,"message":"unauthorized"}}`},
		{"wrong key", "info", http.MethodPost, "nope", `{}`, nil, 401, `{"error":{"code":101,"message":"unauthorized"}}`},
		{"GET", "info", http.MethodGet, testKey, ``, nil, 405, `{"error":{"code":107,"message":"method not allowed, use POST"}}`},
		{"unknown method", "nope", http.MethodPost, testKey, `{}`, nil, 404, `{"error":{"code":104,"message":"method \"nope\" not found"}}`},
		{"not an object", "publish", http.MethodPost, testKey, `[1]`, nil, 400, `{"error":{"code":107,"message":"body must be a JSON object"}}`},
		{"wrong field type", "publish", http.MethodPost, testKey, `{"channel":1}`, nil, 400, ``},
		{"too large", "publish", http.MethodPost, testKey, `{"channel":"chat:a","data":"` + strings.Repeat("x", 100) + `"}`, nil, 413, `{"error":{"code":107,"message":"body exceeds 64 bytes"}}`},
		{"transport error mode", "publish", http.MethodPost, testKey, `{"channel":"nope:a","data":1}`, []string{"X-Centrifugo-Error-Mode", "transport"}, 404, `{"code":102,"message":"unknown channel"}`},
		{"transport error mode, bad request", "history", http.MethodPost, testKey, `{"channel":"bare:a"}`, []string{"X-Centrifugo-Error-Mode", "transport"}, 400, `{"code":108,"message":"not available"}`},
		{"authorization header", "info", http.MethodPost, "", `{}`, []string{"Authorization", "apikey " + testKey}, 200, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.httpMethod, "/api/"+tc.method, strings.NewReader(tc.body))
			if tc.key != "" {
				r.Header.Set("X-API-Key", tc.key)
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				r.Header.Set(tc.header[i], tc.header[i+1])
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code, w.Body.String())
			require.Equal(t, "application/json", w.Header().Get("Content-Type"))
			if tc.want != "" {
				require.JSONEq(t, tc.want, w.Body.String())
			}
		})
	}
}

func TestTransportErrorsConfig(t *testing.T) {
	f := newFixture(t, nil)
	f.h.cfg.TransportErrors = true
	code, body := f.call(t, "publish", `{"channel":"chat:a"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.JSONEq(t, `{"code":107,"message":"bad request: data required"}`, body)
	code, body = f.call(t, "batch", `{"commands":[{"publish":{"channel":"nope:a","data":1}}]}`)
	require.Equal(t, http.StatusOK, code, "batch keeps per-command errors, as in Centrifugo")
	require.JSONEq(t, `{"replies":[{"error":{"code":102,"message":"unknown channel"}}]}`, body)
}

// TestInvalidUTF8Refused: data and infos that would reach JSON clients
// must be UTF-8 text; nothing reaches history or a client otherwise.
func TestInvalidUTF8Refused(t *testing.T) {
	f := newFixture(t, echoRPC{})
	bad := "\"\xff\xfe\""
	for _, tc := range []struct{ method, body, want string }{
		{"publish", `{"channel":"chat:a","data":` + bad + `}`, `{"error":{"code":107,"message":"bad request: data is not valid UTF-8"}}`},
		{"publish", `{"channel":"chat:a","data":{"k":` + bad + `}}`, `{"error":{"code":107,"message":"bad request: data is not valid UTF-8"}}`},
		{"broadcast", `{"channels":["chat:a","chat:b"],"data":` + bad + `}`,
			`{"result":{"responses":[{"error":{"code":107,"message":"bad request: data is not valid UTF-8"}},{"error":{"code":107,"message":"bad request: data is not valid UTF-8"}}]}}`},
		{"batch", `{"commands":[{"publish":{"channel":"chat:a","data":` + bad + `}}]}`,
			`{"replies":[{"error":{"code":107,"message":"bad request: data is not valid UTF-8"}}]}`},
		{"subscribe", `{"user":"alice","channel":"chat:a","info":` + bad + `}`, `{"error":{"code":107,"message":"bad request: info is not valid UTF-8"}}`},
		{"refresh", `{"user":"alice","info":` + bad + `}`, `{"error":{"code":107,"message":"bad request: info is not valid UTF-8"}}`},
		{"rpc", `{"method":"echo","params":` + bad + `}`, `{"error":{"code":107,"message":"bad request: params is not valid UTF-8"}}`},
	} {
		t.Run(tc.method, func(t *testing.T) {
			code, got := f.call(t, tc.method, tc.body)
			require.Equal(t, http.StatusOK, code)
			require.JSONEq(t, tc.want, got)
		})
	}
	hr, err := f.hub.History(context.Background(), "chat:a", hub.HistoryOptions{Limit: -1})
	require.NoError(t, err)
	require.Empty(t, hr.Publications)
	require.Empty(t, f.c.got())

	// Binary data travels as b64data and comes back the same way.
	_, got := f.call(t, "publish", `{"channel":"chat:a","b64data":"//4="}`)
	require.Contains(t, got, `"offset":1`)
	_, got = f.call(t, "history", `{"channel":"chat:a","limit":5}`)
	require.Contains(t, got, `"b64data":"//4="`)
}

// FuzzServeHTTP: whatever the body, a method answers JSON that is valid
// UTF-8, and never panics.
func FuzzServeHTTP(f *testing.F) {
	methods := []string{"publish", "broadcast", "subscribe", "unsubscribe", "disconnect", "refresh", "presence",
		"presence_stats", "history", "history_remove", "channels", "info", "rpc", "batch"}
	for i, body := range []string{
		`{"channel":"chat:a","data":{"x":1}}`, `{"channels":["chat:a"],"b64data":"AA=="}`,
		`{"user":"alice","channel":"chat:a","info":{"a":1}}`, `{"user":"alice","channel":"chat:a"}`,
		`{"user":"alice","disconnect":{"code":3000}}`, `{"user":"alice","info":"x"}`, `{"channel":"chat:a"}`,
		`{"channel":"chat:a"}`, `{"channel":"chat:a","limit":-1,"since":{"offset":1}}`, `{"channel":"chat:a"}`,
		`{"pattern":"{a,[b-c]}*"}`, `{}`, `{"method":"echo","params":[1]}`,
		`{"commands":[{"publish":{"channel":"chat:a","data":1}},{"history":{"channel":"chat:a","limit":5}}]}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(0), []byte("{\"channel\":\"chat:a\",\"data\":\"\xff\"}"))
	fx := newFixture(f, echoRPC{})
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/api/"+methods[int(m)%len(methods)], bytes.NewReader(body))
		r.Header.Set("X-API-Key", testKey)
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		out := w.Body.Bytes()
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("reply is not UTF-8 JSON: %q", out)
		}
	})
}

// publish and broadcast with idempotency_key: a repeat answers the first
// result and publishes nothing; the key is per channel.
func TestIdempotentPublish(t *testing.T) {
	f := newFixture(t, nil)
	first := `{"result":{"offset":1,"epoch":"E"}}`
	for range 2 {
		code, body := f.call(t, "publish", `{"channel":"chat:i","data":{"n":1},"idempotency_key":"k1"}`)
		require.Equal(t, http.StatusOK, code)
		require.JSONEq(t, first, epochRe.ReplaceAllString(body, `"epoch":"E"`))
	}
	_, body := f.call(t, "broadcast", `{"channels":["chat:i","chat:j"],"data":{"n":2},"idempotency_key":"k1"}`)
	require.JSONEq(t, `{"result":{"responses":[{"result":{"offset":1,"epoch":"E"}},{"result":{"offset":1,"epoch":"E"}}]}}`,
		epochRe.ReplaceAllString(body, `"epoch":"E"`), "chat:i repeats k1; chat:j publishes")
	_, body = f.call(t, "broadcast", `{"channels":["chat:i","chat:j"],"data":{"n":3},"idempotency_key":"k2"}`)
	require.JSONEq(t, `{"result":{"responses":[{"result":{"offset":2,"epoch":"E"}},{"result":{"offset":2,"epoch":"E"}}]}}`,
		epochRe.ReplaceAllString(body, `"epoch":"E"`))
	_, body = f.call(t, "history", `{"channel":"chat:i","limit":-1}`)
	require.JSONEq(t, `{"result":{"publications":[{"data":{"n":1},"offset":1},{"data":{"n":3},"offset":2}],"epoch":"E","offset":2}}`,
		epochRe.ReplaceAllString(body, `"epoch":"E"`))
}
