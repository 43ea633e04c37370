package config

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, data, format string) Config {
	t.Helper()
	c, err := Parse([]byte(data), format)
	if err != nil {
		t.Fatalf("Parse(%s): %v", format, err)
	}
	return c
}

// wantErr asserts err mentions every want substring.
func wantErr(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected error containing %q, got nil", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.HTTPServer.Port != 8080 || c.HTTPServer.Address != "127.0.0.1" || c.Client.PingInterval.Std() != 25*time.Second ||
		c.Runner.BasePath != "/__runner" || c.Circles.MaxSteps != 100_000_000 || c.Broker.Type != "memory" ||
		!reflect.DeepEqual(c.Runner.CORS.Origins, []string{"*"}) {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	// Defaults must not share slices between calls.
	c.Runner.CORS.Origins[0] = "x"
	if Default().Runner.CORS.Origins[0] != "*" {
		t.Fatal("Default shares slices")
	}
}

func TestEmptyDocumentsGiveDefaults(t *testing.T) {
	for _, tc := range []struct{ format, doc string }{
		{"json", "{}"}, {"yaml", ""}, {"yaml", "# nothing\n"}, {"yaml", "{}"}, {"toml", ""},
		{"yaml", "client:\n"}, // null section keeps defaults
	} {
		c := mustParse(t, tc.doc, tc.format)
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("%s %q: not the defaults", tc.format, tc.doc)
		}
	}
}

func TestFormatsLoadIdentically(t *testing.T) {
	j := mustParse(t, string(mustRead(t, "centrifugo_v6.json")), "json")
	y := mustParse(t, string(mustRead(t, "centrifugo_v6.yaml")), "yaml")
	tm := mustParse(t, string(mustRead(t, "centrifugo_v6.toml")), "toml")
	if !reflect.DeepEqual(j, y) {
		t.Errorf("json and yaml differ:\n%+v\n%+v", j, y)
	}
	if !reflect.DeepEqual(j, tm) {
		t.Errorf("json and toml differ:\n%+v\n%+v", j, tm)
	}
}

func TestCentrifugoV6ConfigLoads(t *testing.T) {
	for _, name := range []string{"centrifugo_v6.json", "centrifugo_v6.yaml", "centrifugo_v6.toml"} {
		t.Run(name, func(t *testing.T) {
			c, err := load(filepath.Join("testdata", name), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTPServer.Address != "0.0.0.0" || c.HTTPServer.Port != 8000 {
				t.Errorf("http_server = %+v", c.HTTPServer)
			}
			if c.Client.Token.HMACSecretKey != "my_secret" || c.Client.Token.Audience != "centrifugo" || c.Client.Token.Issuer != "my-app" {
				t.Errorf("client.token = %+v", c.Client.Token)
			}
			if !reflect.DeepEqual(c.Client.AllowedOrigins, []string{"http://localhost:3000", "https://example.com"}) {
				t.Errorf("allowed_origins = %v", c.Client.AllowedOrigins)
			}
			if c.HTTPAPI.Key != "my_api_key" || c.Log.Level != "debug" || c.Client.PingInterval.Std() != 20*time.Second ||
				c.Client.QueueMaxSize != 2097152 || !c.Client.AllowAnonymousConnectWithoutToken || c.Shutdown.Timeout.Std() != 10*time.Second ||
				c.WebSocket.MessageSizeLimit != 131072 || c.Channel.MaxLength != 128 {
				t.Errorf("unexpected values: %+v", c)
			}
			if !c.Channel.WithoutNamespace.Presence || !c.Channel.WithoutNamespace.AllowSubscribeForClient {
				t.Errorf("without_namespace = %+v", c.Channel.WithoutNamespace)
			}
			if len(c.Channel.Namespaces) != 2 {
				t.Fatalf("namespaces = %+v", c.Channel.Namespaces)
			}
			chat, ok := c.Namespace("chat")
			want := NamespaceOptions{
				Presence: true, JoinLeave: true, ForcePushJoinLeave: true, HistorySize: 100, HistoryTTL: Duration(300 * time.Second),
				ForceRecovery: true, ForcePositioning: true,
				AllowSubscribeForClient: true, AllowSubscribeForAnonymous: true,
				AllowPublishForSubscriber: true, AllowPublishForClient: true,
				AllowPresenceForSubscriber: true, AllowPresenceForClient: true,
				AllowHistoryForSubscriber: true, AllowHistoryForClient: true,
				AllowUserLimitedChannels: true,
			}
			if !ok || chat != want {
				t.Errorf("chat = %+v, %v", chat, ok)
			}
			news, ok := c.Namespace("news.feed")
			if !ok || news.HistoryTTL.Std() != time.Hour || news.HistorySize != 10 || !news.AllowHistoryForAnonymous {
				t.Errorf("news.feed = %+v", news)
			}
			if _, ok := c.Namespace("nope"); ok {
				t.Error("unknown namespace found")
			}
			if o, ok := c.Namespace(""); !ok || o != c.Channel.WithoutNamespace {
				t.Error(`Namespace("") is not without_namespace`)
			}
		})
	}
}

func TestSwitchboardSections(t *testing.T) {
	c := mustParse(t, string(mustRead(t, "switchboard.yaml")), "yaml")
	r := c.Runner
	if !reflect.DeepEqual(r.Command, []string{"node", "worker.js", "--mode", "fast start"}) {
		t.Errorf("command = %q", r.Command)
	}
	if r.Workers != 2 || r.BasePath != "/jobs" || r.Token != "s3cret" || r.TokenHeader != "x-runner-token" ||
		r.Timeout.Std() != 10*time.Second || r.MaxInFlight != 8 || r.QueueSize != 16 || r.QueueTimeout.Std() != 2*time.Second ||
		r.MaxBody != 2<<20 || r.MaxJobs != 1000 || r.TTL.Std() != time.Hour || r.IdleTTL.Std() != 300*time.Second ||
		r.MaxMemory != 512_000_000 || r.PingInterval.Std() != 5*time.Second {
		t.Errorf("runner = %+v", r)
	}
	if !reflect.DeepEqual(r.Allow.Tasks, []string{"app.tasks.add", "app/tasks/mul"}) || !reflect.DeepEqual(r.CORS.Origins, []string{"https://example.com"}) {
		t.Errorf("runner lists = %+v", r)
	}
	ci := c.Circles
	if len(ci.Keys) != 1 || !ci.EnableAuth || ci.RedisURL != "redis://127.0.0.1:6379/0" || ci.DataDir != "/var/lib/switchboard" ||
		ci.ScriptTimeout.Std() != 5*time.Second || ci.MaxSteps != 1000000 || ci.MaxScriptSize != 4096 || ci.MaxOutputSize != 8192 ||
		ci.Concurrency != 2 || ci.QueueSize != 10 {
		t.Errorf("circles = %+v", ci)
	}
	// The command as a list is taken verbatim.
	c = mustParse(t, `{"runner":{"command":["php","worker.php","a b"]}}`, "json")
	if !reflect.DeepEqual(c.Runner.Command, []string{"php", "worker.php", "a b"}) {
		t.Errorf("command list = %q", c.Runner.Command)
	}
}

// Config marshalled by the standard encoders loads back unchanged, so other
// packages (e.g. a "print effective config" command) can emit any format.
func TestRoundTripAllEncoders(t *testing.T) {
	c := mustParse(t, string(mustRead(t, "centrifugo_v6.yaml")), "yaml")
	sb := mustParse(t, string(mustRead(t, "switchboard.yaml")), "yaml")
	c.Runner, c.Circles = sb.Runner, sb.Circles
	c.NoEffect = nil // not a key: not encoded
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ys, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := toml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for format, data := range map[string][]byte{"json": js, "yaml": ys, "toml": ts} {
		got, err := Parse(data, format)
		if err != nil {
			t.Errorf("%s: %v\n%s", format, err, data)
			continue
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%s round trip differs:\n got %+v\nwant %+v", format, got, c)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	cases := []struct {
		name, format, doc string
		want              []string
	}{
		{"top", "json", `{"htpp_server":{}}`, []string{`unknown key "htpp_server" (did you mean "http_server"?)`}},
		{"top no suggestion", "json", `{"zzzzzzzz":1}`, []string{`unknown key "zzzzzzzz"`}},
		{"http_server", "yaml", "http_server:\n  prot: 1\n", []string{`unknown key "http_server.prot" (did you mean "http_server.port"?)`}},
		{"client", "json", `{"client":{"tokne":{}}}`, []string{`unknown key "client.tokne" (did you mean "client.token"?)`}},
		{"client.token", "toml", "[client.token]\nhmac_secret = \"x\"\n", []string{`unknown key "client.token.hmac_secret" (did you mean "client.token.hmac_secret_key"?)`}},
		{"without_namespace", "json", `{"channel":{"without_namespace":{"presense":true}}}`, []string{`unknown key "channel.without_namespace.presense" (did you mean "channel.without_namespace.presence"?)`}},
		{"namespace entry", "yaml", "channel:\n  namespaces:\n    - name: ok\n    - name: chat\n      histroy_size: 10\n", []string{`unknown key "channel.namespaces[1].histroy_size" (did you mean "channel.namespaces[1].history_size"?)`}},
		{"namespace toml", "toml", "[[channel.namespaces]]\nname = \"chat\"\nhistroy_size = 10\n", []string{`unknown key "channel.namespaces[0].histroy_size"`}},
		{"websocket", "json", `{"websocket":{"message_size":1}}`, []string{`unknown key "websocket.message_size"`}},
		{"runner.allow", "json", `{"runner":{"allow":{"task":[]}}}`, []string{`unknown key "runner.allow.task" (did you mean "runner.allow.tasks"?)`}},
		{"runner.cors", "json", `{"runner":{"cors":{"origin":[]}}}`, []string{`unknown key "runner.cors.origin" (did you mean "runner.cors.origins"?)`}},
		{"circles", "yaml", "circles:\n  key: []\n", []string{`unknown key "circles.key" (did you mean "circles.keys"?)`}},
		{"case", "json", `{"HTTP_SERVER":{}}`, []string{`unknown key "HTTP_SERVER" (did you mean "http_server"?)`}},
		{"v5 flat key", "json", `{"token_hmac_secret_key":"x"}`, []string{`unknown key "token_hmac_secret_key" (did you mean "client.token.hmac_secret_key"?)`}},
		{"v5 api_key", "json", `{"api_key":"x"}`, []string{`(did you mean "http_api.key"?)`}},
		{"misplaced key", "json", `{"allowed_origins":["*"]}`, []string{`unknown key "allowed_origins" (did you mean "client.allowed_origins"?)`}},
		{"several", "json", `{"a1x":1,"client":{"b2y":1},"channel":{"namespaces":[{"name":"aa","c3z":1}]}}`,
			[]string{`"a1x"`, `"client.b2y"`, `"channel.namespaces[0].c3z"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), tc.format)
			wantErr(t, err, tc.want...)
		})
	}
}

// Centrifugo keys that would turn on a feature Switchboard lacks are errors
// naming the key that does it.
func TestUnsupportedCentrifugoKeys(t *testing.T) {
	cases := []struct{ doc, key string }{
		{`{"engine":{"redis":{"cluster_address":["h:6379"]}}}`, "engine.redis.cluster_address"},
		{`{"engine":{"redis":{"password":"p"}}}`, "engine.redis.password"},
		{`{"redis":{"address":"x"}}`, "redis"},
		{`{"nats":{}}`, "nats"},
		{`{"consumers":[{"name":"c","enabled":true}]}`, "consumers[0].enabled"},
		{`{"rpc":{"without_namespace":{"proxy_enabled":true}}}`, "rpc.without_namespace.proxy_enabled"},
		{`{"grpc_api":{"enabled":true}}`, "grpc_api.enabled"},
		{`{"uni_sse":{"enabled":true}}`, "uni_sse.enabled"},
		{`{"uni_http_stream":{"enabled":true}}`, "uni_http_stream.enabled"},
		{`{"uni_websocket":{"enabled":true}}`, "uni_websocket.enabled"},
		{`{"uni_grpc":{"enabled":true}}`, "uni_grpc.enabled"},
		{`{"http_stream":{"enabled":true}}`, "http_stream.enabled"},
		{`{"sse":{"enabled":true}}`, "sse.enabled"},
		{`{"webtransport":{"enabled":true}}`, "webtransport.enabled"},
		{`{"admin":{"enabled":true,"insecure":true}}`, "admin.insecure"},
		{`{"admin":{"web_path":"/srv/ui"}}`, "admin.web_path"},
		{`{"graphite":{"enabled":true}}`, "graphite.enabled"},
		{`{"opentelemetry":{"enabled":true}}`, "opentelemetry.enabled"},
		{`{"debug":{"enabled":true}}`, "debug.enabled"},
		{`{"swagger":{"enabled":true}}`, "swagger.enabled"},
		{`{"tls":{}}`, "tls"},
		{`{"tls_autocert":{}}`, "tls_autocert"},
		{`{"http_server":{"tls":{"enabled":true}}}`, "http_server.tls.enabled"},
		{`{"log":{"file":"/tmp/x"}}`, "log.file"},
		{`{"client":{"proxy":{"connect":{"enabled":true}}}}`, "client.proxy.connect.enabled"},
		{`{"client":{"subscribe_to_user_personal_channel":{"enabled":true}}}`, "client.subscribe_to_user_personal_channel.enabled"},
		{`{"client":{"insecure":true}}`, "client.insecure"},
		{`{"client":{"token":{"jwks_public_endpoint":"x"}}}`, "client.token.jwks_public_endpoint"},
		{`{"channel":{"without_namespace":{"delta_publish":true}}}`, "channel.without_namespace.delta_publish"},
		{`{"channel":{"namespaces":[{"name":"ab","subscribe_proxy_enabled":true}]}}`, "channel.namespaces[0].subscribe_proxy_enabled"},
		{`{"channel":{"namespaces":[{"name":"ab","publish_proxy_enabled":true}]}}`, "channel.namespaces[0].publish_proxy_enabled"},
		{`{"channel":{"namespaces":[{"name":"ab","allowed_delta_types":["fossil"]}]}}`, "channel.namespaces[0].allowed_delta_types"},
		{`{"channel":{"namespaces":[{"name":"ab","allow_positioning":true}]}}`, "channel.namespaces[0].allow_positioning"},
		{`{"channel":{"namespaces":[{"name":"ab","allow_recovery":true}]}}`, "channel.namespaces[0].allow_recovery"},
		{`{"websocket":{"compression":true}}`, "websocket.compression"},
		{`{"broker":{"type":"redis","redis_url":"redis://h","redis":{"address":"x"}}}`, "broker.redis"},
		{`{"http_api":{"external":true}}`, "http_api.external"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "json")
			wantErr(t, err, `key "`+tc.key+`" is a Centrifugo feature not supported by Switchboard`)
		})
	}
}

func TestFixedKeys(t *testing.T) {
	mustParse(t, `{"channel":{"namespace_boundary":":","user_boundary":"#","user_separator":","},"http_api":{"handler_prefix":"/api"},"websocket":{"handler_prefix":"/connection/websocket"}}`, "json")
	_, err := Parse([]byte(`{"channel":{"namespace_boundary":"/"}}`), "json")
	wantErr(t, err, `channel.namespace_boundary: Switchboard fixes this to ":"`)
	_, err = Parse([]byte(`{"websocket":{"handler_prefix":"/ws"}}`), "json")
	wantErr(t, err, `websocket.handler_prefix: Switchboard fixes this to "/connection/websocket"`)
}

func TestTypeErrors(t *testing.T) {
	cases := []struct {
		name, format, doc, want string
	}{
		{"port string", "json", `{"http_server":{"port":"abc"}}`, `http_server.port: expected integer, got string "abc"`},
		{"port float", "json", `{"http_server":{"port":80.5}}`, `http_server.port: expected integer, got number 80.5`},
		{"port yaml", "yaml", "http_server:\n  port: abc\n", `http_server.port: expected integer, got string "abc"`},
		{"port toml", "toml", "[http_server]\nport = \"abc\"\n", `http_server.port: expected integer, got string "abc"`},
		{"port bool", "json", `{"http_server":{"port":true}}`, `http_server.port: expected integer, got boolean true`},
		{"int overflow", "json", `{"client":{"channel_limit":99999999999999999999}}`, `client.channel_limit: integer 99999999999999999999 out of range`},
		{"section not object", "json", `{"client":"x"}`, `client: expected object, got string "x"`},
		{"bool", "json", `{"http_api":{"insecure":"maybe"}}`, `http_api.insecure: expected boolean, got string "maybe"`},
		{"string", "json", `{"http_api":{"key":{"a":1}}}`, `http_api.key: expected string, got object`},
		{"list", "json", `{"client":{"allowed_origins":{"a":1}}}`, `client.allowed_origins: expected list of strings, got object`},
		{"list item", "json", `{"client":{"allowed_origins":["a",1.5,true]}}`, `client.allowed_origins[2]: expected string, got boolean true`},
		{"duration", "json", `{"client":{"ping_interval":"soon"}}`, `client.ping_interval: invalid duration "soon"`},
		{"duration float", "json", `{"client":{"ping_interval":1.5}}`, `client.ping_interval: expected duration`},
		{"duration bool", "yaml", "shutdown:\n  timeout: true\n", `shutdown.timeout: expected duration`},
		{"namespaces not list", "json", `{"channel":{"namespaces":{"name":"x"}}}`, `channel.namespaces: expected list of objects, got object`},
		{"namespace not object", "json", `{"channel":{"namespaces":["chat"]}}`, `channel.namespaces[0]: expected object, got string "chat"`},
		{"namespace field", "json", `{"channel":{"namespaces":[{"name":"chat","history_size":"many"}]}}`, `channel.namespaces[0].history_size: expected integer, got string "many"`},
		{"uint negative", "json", `{"circles":{"max_steps":-1}}`, `circles.max_steps: must not be negative`},
		{"bytesize", "json", `{"runner":{"max_memory":"12 parsecs"}}`, `runner.max_memory: invalid size "12 parsecs"`},
		{"argv quote", "json", `{"runner":{"command":"node 'x"}}`, `runner.command: unterminated ' quote`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), tc.format)
			wantErr(t, err, tc.want)
		})
	}
}

func TestWeakScalars(t *testing.T) {
	// Centrifugo (viper) accepts numbers and booleans written as strings;
	// so does Switchboard, and numbers where strings are expected.
	c := mustParse(t, `{"http_server":{"port":"9000"},"http_api":{"insecure":"true","key":12345},"client":{"allowed_origins":"*"}}`, "json")
	if c.HTTPServer.Port != 9000 || !c.HTTPAPI.Insecure || c.HTTPAPI.Key != "12345" || !reflect.DeepEqual(c.Client.AllowedOrigins, []string{"*"}) {
		t.Errorf("got %+v", c)
	}
	c = mustParse(t, "http_api:\n  key: 000123\n", "yaml")
	if c.HTTPAPI.Key != "000123" {
		t.Errorf("yaml numeric key = %q", c.HTTPAPI.Key)
	}
}

func TestLogLevels(t *testing.T) {
	for lvl, want := range map[string]slog.Level{"trace": slog.LevelDebug - 4, "debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError, "fatal": slog.LevelError + 4} {
		c := mustParse(t, `{"log":{"level":"`+lvl+`","format":"json"}}`, "json")
		if got := c.Log.SlogLevel(); got != want {
			t.Errorf("%s: %v", lvl, got)
		}
	}
	c := mustParse(t, `{"log":{"level":"none"}}`, "json")
	if c.Log.SlogLevel() <= slog.LevelError+4 {
		t.Error("none does not silence")
	}
}

func TestSyntaxErrors(t *testing.T) {
	cases := []struct{ name, format, doc, want string }{
		{"json syntax", "json", "{\n  \"a\": }", "json: line 2"},
		{"json trailing", "json", `{} {}`, "unexpected data after the top-level object"},
		{"json dup", "json", `{"log":{"level":"info","level":"debug"}}`, `duplicate key "level"`},
		{"json not object", "json", `[1]`, "top level must be an object"},
		{"json truncated", "json", `{"a":`, "unexpected end of input"},
		{"yaml dup", "yaml", "log:\n  level: info\n  level: debug\n", `line 3: mapping key "level" already defined`},
		{"yaml syntax", "yaml", "a: [", "yaml:"},
		{"yaml not mapping", "yaml", "- a\n", "top level must be a mapping"},
		{"yaml two docs", "yaml", "a: 1\n---\nb: 2\n", "more than one document"},
		{"toml syntax", "toml", "a = ", "toml: line 1"},
		{"format", "ini", "", `unknown config format "ini"`},
		{"too big", "json", `{"a":"` + strings.Repeat("x", MaxConfigSize) + `"}`, "byte limit"},
		{"json deep", "json", strings.Repeat("[", 100) + strings.Repeat("]", 100), "nesting deeper"},
		{"yaml float port", "yaml", "http_server:\n  port: 8080.0\n", "expected integer, got number 8080.0"},
		{"toml float port", "toml", "[http_server]\nport = 8080.0\n", "expected integer, got number 8080.0"},
		{"dotted key", "json", `{"http_server.port":1}`, `unknown key "http_server.port" (dotted keys are not expanded`},
		{"yaml float inf", "yaml", "http_server:\n  port: .inf\n", "not a finite number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), tc.format)
			wantErr(t, err, tc.want)
		})
	}
}

func TestYAMLAnchorsAndMerge(t *testing.T) {
	doc := `
defaults: &defaults
  presence: true
  history_size: 10
  history_ttl: 60s
`
	// An unknown top-level key holding anchors is still an error, so use
	// anchors inside known structures.
	_, err := Parse([]byte(doc), "yaml")
	wantErr(t, err, `unknown key "defaults"`)

	doc = `
channel:
  without_namespace: &base
    presence: true
    history_size: 10
    history_ttl: 60s
  namespaces:
    - <<: *base
      name: chat
      history_size: 20
    - name: other
      <<: [*base]
`
	c := mustParse(t, doc, "yaml")
	chat, _ := c.Namespace("chat")
	other, _ := c.Namespace("other")
	if !chat.Presence || chat.HistorySize != 20 || chat.HistoryTTL.Std() != time.Minute || other.HistorySize != 10 {
		t.Errorf("merge: chat=%+v other=%+v", chat, other)
	}

	// Exponential alias expansion is bounded.
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	_, err = Parse([]byte(b.String()), "yaml")
	if err == nil {
		t.Fatal("expected an error for alias bomb")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mut  func(c *Config)
		want string
	}{
		{"port", func(c *Config) { c.HTTPServer.Port = 70000 }, "http_server.port: 70000 out of range 0..65535"},
		{"negative port", func(c *Config) { c.HTTPServer.Port = -1 }, "http_server.port: -1 out of range"},
		{"address with port", func(c *Config) { c.HTTPServer.Address = "127.0.0.1:80" }, "http_server.address:"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: unknown level "verbose"`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: unknown format "xml"`},
		{"origin", func(c *Config) { c.Client.AllowedOrigins = []string{"https://*.ok.example", ""} }, "client.allowed_origins[1]:"},
		{"origin without scheme", func(c *Config) { c.Client.AllowedOrigins = []string{"*", "ok.example"} }, `client.allowed_origins[1]: "ok.example" is not an origin`},
		{"cors origin", func(c *Config) { c.Runner.CORS.Origins = []string{"https://a.example/path"} }, `runner.cors.origins[0]: "https://a.example/path" is not an origin`},
		{"pong", func(c *Config) { c.Client.PongTimeout = Duration(time.Minute) }, "client.pong_timeout: 1m0s must be less than client.ping_interval"},
		{"negative limit", func(c *Config) { c.Client.ChannelLimit = -1 }, "client.channel_limit: must not be negative"},
		{"queue", func(c *Config) { c.Client.QueueMaxSize = 0 }, "client.queue_max_size: must be positive"},
		{"rate", func(c *Config) { c.Client.CommandRateLimit = -5 }, "client.command_rate_limit: must not be negative"},
		{"max_length", func(c *Config) { c.Channel.MaxLength = 0 }, "channel.max_length: must be positive"},
		{"ns name", func(c *Config) { c.Channel.Namespaces = []Namespace{{Name: "ok"}, {Name: "bad name!"}} },
			`channel.namespaces[1].name: "bad name!" must match ^[-a-zA-Z0-9_.]{2,}$`},
		{"ns short", func(c *Config) { c.Channel.Namespaces = []Namespace{{Name: "a"}} }, `channel.namespaces[0].name: "a" must match`},
		{"ns dup", func(c *Config) { c.Channel.Namespaces = []Namespace{{Name: "chat"}, {Name: "chat"}} },
			`channel.namespaces[1].name: duplicate namespace name "chat" (also channel.namespaces[0])`},
		{"history needs ttl", func(c *Config) {
			c.Channel.Namespaces = []Namespace{{Name: "chat", NamespaceOptions: NamespaceOptions{HistorySize: 10}}}
		}, "channel.namespaces[0].history_ttl: must be set when history_size is set"},
		{"ttl needs size", func(c *Config) { c.Channel.WithoutNamespace.HistoryTTL = Duration(time.Minute) },
			"channel.without_namespace.history_size: must be set when history_ttl is set"},
		{"negative history", func(c *Config) { c.Channel.WithoutNamespace.HistorySize = -1 }, "channel.without_namespace.history_size: must not be negative"},
		{"ttl seconds", func(c *Config) {
			c.Channel.WithoutNamespace.HistorySize = 1
			c.Channel.WithoutNamespace.HistoryTTL = Duration(1500 * time.Millisecond)
		}, "channel.without_namespace.history_ttl: must be a whole number of seconds"},
		{"recovery", func(c *Config) { c.Channel.WithoutNamespace.ForceRecovery = true }, "channel.without_namespace.force_recovery: requires history_size and history_ttl"},
		{"ws size", func(c *Config) { c.WebSocket.MessageSizeLimit = -1 }, "websocket.message_size_limit: must be positive"},
		{"ws buffer", func(c *Config) { c.WebSocket.ReadBufferSize = -1 }, "websocket.read_buffer_size: must not be negative"},
		{"broker type", func(c *Config) { c.Broker.Type = "nats" }, `broker.type: unknown broker "nats"`},
		{"redis url required", func(c *Config) { c.Broker.Type = "redis" }, "broker.redis_url: required"},
		{"redis url scheme", func(c *Config) { c.Broker = Broker{Type: "redis", RedisURL: "http://x"} }, `broker.redis_url: scheme must be redis:// or rediss://, got "http"`},
		{"redis url host", func(c *Config) { c.Broker = Broker{Type: "redis", RedisURL: "redis://"} }, "broker.redis_url: missing host"},
		{"redis url bad", func(c *Config) { c.Broker = Broker{Type: "redis", RedisURL: "redis://u:pw@h:x/0"} }, "broker.redis_url: invalid URL"},
		{"redis db", func(c *Config) { c.Broker = Broker{Type: "redis", RedisURL: "redis://h/abc"} }, `broker.redis_url: database "abc"`},
		{"shutdown", func(c *Config) { c.Shutdown.Timeout = -1 }, "shutdown.timeout: must not be negative"},
		{"admin password", func(c *Config) { c.Admin = Admin{Enabled: true, Secret: "0123456789abcdef"} }, "admin.password: required when admin.enabled is true"},
		{"admin token ttl", func(c *Config) { c.Admin.TokenTTL = Duration(time.Second) }, "admin.token_ttl: must be at least 10s, got 1s"},
		{"admin session ttl", func(c *Config) { c.Admin.SessionTTL = 0 }, "admin.session_ttl: must be positive"},
		{"admin login failures", func(c *Config) { c.Admin.LoginFailures = 0 }, "admin.login_failures: must be positive"},
		{"admin hub secret", func(c *Config) { c.Admin = Admin{Enabled: true, Password: "p", Secret: "0123456789abcdef"} }, "admin.enabled: needs client.token.hmac_secret_key"},
		{"admin secret", func(c *Config) { c.Admin = Admin{Enabled: true, Password: "p", Secret: "short"} }, "admin.secret: must be at least 16 bytes when admin.enabled is true, got 5"},
		{"runner base", func(c *Config) { c.Runner.BasePath = "runner" }, `runner.base_path: "runner" must start with "/"`},
		{"runner base slash", func(c *Config) { c.Runner.BasePath = "/runner/" }, `runner.base_path: "/runner/" must not end with "/"`},
		{"runner workers", func(c *Config) { c.Runner.Workers = 0 }, "runner.workers: must be positive"},
		{"runner header", func(c *Config) { c.Runner.TokenHeader = "bad header" }, "runner.token_header:"},
		{"runner timeout", func(c *Config) { c.Runner.Timeout = 0 }, "runner.timeout: must be positive"},
		{"runner memory", func(c *Config) { c.Runner.MaxMemory = -1 }, "runner.max_memory: must not be negative"},
		{"runner body", func(c *Config) { c.Runner.MaxBody = 0 }, "runner.max_body: must be positive"},
		{"runner argv", func(c *Config) { c.Runner.Command = []string{""} }, "runner.command[0]: program name is empty"},
		{"runner task", func(c *Config) { c.Runner.Allow.Tasks = []string{" "} }, "runner.allow.tasks[0]: must not be empty"},
		{"circle key", func(c *Config) { c.Circles.Keys = []string{"02zz"} }, `circles.keys[0]: "02zz" is not a hex secp256k1 public key`},
		{"circle key dup", func(c *Config) {
			k := "02" + strings.Repeat("ab", 32)
			c.Circles.Keys = []string{k, strings.ToUpper(k)}
		}, "circles.keys[1]: duplicate key"},
		{"circle redis", func(c *Config) { c.Circles.RedisURL = "tcp://x" }, "circles.redis_url: scheme must be"},
		{"circle steps", func(c *Config) { c.Circles.MaxSteps = 0 }, "circles.max_steps: must be positive"},
		{"circle concurrency", func(c *Config) { c.Circles.Concurrency = 0 }, "circles.concurrency: must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mut(&c)
			wantErr(t, c.Validate(), tc.want)
		})
	}

	t.Run("all problems at once", func(t *testing.T) {
		c := Default()
		c.HTTPServer.Port = 1 << 20
		c.Log.Level = "loud"
		c.Channel.Namespaces = []Namespace{{Name: "x y"}, {Name: "ok", NamespaceOptions: NamespaceOptions{HistorySize: 3}}}
		err := c.Validate()
		wantErr(t, err, "http_server.port", "log.level", "channel.namespaces[0].name", "channel.namespaces[1].history_ttl")
		if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
			t.Errorf("want 4 problems, got %d:\n%v", n, err)
		}
	})
	t.Run("redis password not echoed", func(t *testing.T) {
		c := Default()
		c.Broker = Broker{Type: "redis", RedisURL: "redis://u:topsecret@h:x/0"}
		if err := c.Validate(); err == nil || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("valid extremes", func(t *testing.T) {
		c := Default()
		c.HTTPServer.Port = 0 // any free port
		c.HTTPServer.Address = ""
		c.Client.PingInterval = -1 // pings off
		c.Broker = Broker{Type: "redis", RedisURL: "rediss://user:pw@redis.example:6380/2"}
		c.Circles.Keys = []string{"04" + strings.Repeat("cd", 64)}
		c.HTTPServer.Address = "::1"
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	})
}

func TestProblemCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 500; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":1`)
	}
	b.WriteString("}")
	_, err := Parse([]byte(b.String()), "json")
	wantErr(t, err, "... and 400 more problems")
}

func TestParseReportsAllDecodeProblems(t *testing.T) {
	_, err := Parse([]byte(`{"client":{"tokne":{},"channel_limit":"x"},"engine":{"redis":{"db":3}},"http_server":{"port":"y"}}`), "json")
	wantErr(t, err, `"client.tokne"`, "client.channel_limit:", `key "engine.redis.db"`, "http_server.port:")
}

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, a, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(p, nil)
	if err != nil {
		t.Fatalf("generated config does not load: %v\n%s", err, a)
	}
	cb, err := Parse(b, "json")
	if err != nil {
		t.Fatal(err)
	}
	sec, key := c.Client.Token.HMACSecretKey, c.HTTPAPI.Key
	if len(sec) != 64 || len(key) != 64 || sec == key {
		t.Errorf("secrets: %q %q", sec, key)
	}
	if sec == cb.Client.Token.HMACSecretKey || key == cb.HTTPAPI.Key {
		t.Error("two Generate calls produced the same secrets")
	}
	if !reflect.DeepEqual(c.Client.AllowedOrigins, []string{"http://localhost:8080"}) {
		t.Errorf("origins = %v", c.Client.AllowedOrigins)
	}
	chat, ok := c.Namespace("chat")
	want := NamespaceOptions{Presence: true, JoinLeave: true, HistorySize: 100, HistoryTTL: Duration(300 * time.Second), ForceRecovery: true,
		AllowSubscribeForClient: true, AllowPublishForSubscriber: true, AllowPresenceForSubscriber: true, AllowHistoryForSubscriber: true}
	if !ok || chat != want {
		t.Errorf("chat = %+v", chat)
	}
	var generic map[string]any
	if err := json.Unmarshal(a, &generic); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, err := load(write("c.ini", "x=1"), nil)
	wantErr(t, err, `unsupported extension ".ini"`)
	_, err = load(write("config", "{}"), nil)
	wantErr(t, err, "no file extension")
	_, err = load(filepath.Join(dir, "missing.json"), nil)
	wantErr(t, err, "missing.json")
	c, err := load(write("c.YML", "http_server:\n  port: 9100\n"), nil)
	if err != nil || c.HTTPServer.Port != 9100 {
		t.Errorf("yml: %v %v", c.HTTPServer.Port, err)
	}
	_, err = load(write("bad.json", `{"client":{"tokne":{}}}`), nil)
	wantErr(t, err, "bad.json", `unknown key "client.tokne"`)
	_, err = load(write("invalid.json", `{"http_server":{"port":99999}}`), nil)
	wantErr(t, err, "invalid.json", "http_server.port")

	// Load itself reads the process environment.
	t.Setenv("SWITCHBOARD_HTTP_SERVER_PORT", "9200")
	c, err = Load("")
	if err != nil || c.HTTPServer.Port != 9200 {
		t.Errorf("Load(\"\"): %v %v", c.HTTPServer.Port, err)
	}
}

func TestDurationForms(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "25s", want: 25 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "300ms", want: 300 * time.Millisecond},
		{in: "2h", want: 2 * time.Hour},
		{in: "30", want: 30 * time.Second},
		{in: " 7 ", want: 7 * time.Second},
		{in: "0", want: 0},
		{in: "-1", want: -time.Second},
		{in: "-1s", want: -time.Second},
		{in: "", bad: true},
		{in: "1.5", bad: true},
		{in: "ten", bad: true},
		{in: "99999999999999", bad: true},
	}
	for _, tc := range cases {
		got, err := ParseDuration(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got.Std() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}

	// The same value through every format, as string and as integer seconds.
	for _, tc := range []struct{ format, doc string }{
		{"json", `{"shutdown":{"timeout":"1m30s"}}`},
		{"json", `{"shutdown":{"timeout":90}}`},
		{"json", `{"shutdown":{"timeout":"90"}}`},
		{"yaml", "shutdown:\n  timeout: 1m30s\n"},
		{"yaml", "shutdown:\n  timeout: 90\n"},
		{"toml", "[shutdown]\ntimeout = \"1m30s\"\n"},
		{"toml", "[shutdown]\ntimeout = 90\n"},
	} {
		c := mustParse(t, tc.doc, tc.format)
		if c.Shutdown.Timeout.Std() != 90*time.Second {
			t.Errorf("%s %q: %v", tc.format, tc.doc, c.Shutdown.Timeout)
		}
	}

	// Marshalers, for other packages that embed Duration.
	var s struct {
		D Duration `json:"d"`
	}
	for _, in := range []string{`{"d":"1m30s"}`, `{"d":90}`} {
		if err := json.Unmarshal([]byte(in), &s); err != nil || s.D.Std() != 90*time.Second {
			t.Errorf("UnmarshalJSON %s: %v %v", in, s.D, err)
		}
	}
	if err := json.Unmarshal([]byte(`{"d":true}`), &s); err == nil {
		t.Error("UnmarshalJSON bool: want error")
	}
	out, _ := json.Marshal(struct{ D Duration }{Duration(90 * time.Second)})
	if string(out) != `{"D":"1m30s"}` {
		t.Errorf("MarshalJSON = %s", out)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("5")); err != nil || d.Std() != 5*time.Second {
		t.Errorf("UnmarshalText: %v %v", d, err)
	}
	if err := d.UnmarshalTOML(int64(7)); err != nil || d.Std() != 7*time.Second {
		t.Errorf("UnmarshalTOML: %v %v", d, err)
	}
	if err := d.UnmarshalYAML(func(v any) error { *(v.(*any)) = 8; return nil }); err != nil || d.Std() != 8*time.Second {
		t.Errorf("UnmarshalYAML: %v %v", d, err)
	}
	if y, _ := d.MarshalYAML(); y != "8s" {
		t.Errorf("MarshalYAML = %v", y)
	}
}

func TestByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1024", want: 1024},
		{in: "512MB", want: 512_000_000},
		{in: "1GiB", want: 1 << 30},
		{in: "1.5 GiB", want: 3 << 29},
		{in: "64kib", want: 64 << 10},
		{in: "10B", want: 10},
		{in: "", bad: true},
		{in: "MB", bad: true},
		{in: "12 parsecs", bad: true},
		{in: "99999999999TiB", bad: true},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("ParseByteSize(%q) = %d, %v", tc.in, got, err)
		}
	}
	c := mustParse(t, `{"runner":{"max_memory":1048576,"max_body":"64KiB"}}`, "json")
	if c.Runner.MaxMemory != 1<<20 || c.Runner.MaxBody != 64<<10 {
		t.Errorf("got %d %d", c.Runner.MaxMemory, c.Runner.MaxBody)
	}
}

func TestSplitCommand(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "node worker.js", want: []string{"node", "worker.js"}},
		{in: "  a   b\tc\n", want: []string{"a", "b", "c"}},
		{in: `php -r 'echo "hi";'`, want: []string{"php", "-r", `echo "hi";`}},
		{in: `sh -c "echo \"x\" \$HOME \n"`, want: []string{"sh", "-c", `echo "x" $HOME \n`}},
		{in: `a\ b c`, want: []string{"a b", "c"}},
		{in: `''`, want: []string{""}},
		{in: "", want: nil},
		{in: `"open`, bad: true},
		{in: `trailing\`, bad: true},
	}
	for _, tc := range cases {
		got, err := SplitCommand(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestKeysAndEnvVars(t *testing.T) {
	keys := Keys()
	for _, k := range []string{"http_server.port", "client.token.hmac_secret_key", "channel.namespaces[].name",
		"channel.namespaces[].history_ttl", "channel.without_namespace.presence", "runner.allow.tasks", "circles.max_steps"} {
		if !contains(keys, k) {
			t.Errorf("Keys() lacks %s", k)
		}
	}
	env := EnvVars()
	for name, path := range map[string]string{
		"SWITCHBOARD_HTTP_SERVER_PORT":                      "http_server.port",
		"SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY":          "client.token.hmac_secret_key",
		"SWITCHBOARD_HTTP_API_KEY":                          "http_api.key",
		"SWITCHBOARD_LOG_LEVEL":                             "log.level",
		"SWITCHBOARD_CLIENT_ALLOWED_ORIGINS":                "client.allowed_origins",
		"SWITCHBOARD_BROKER_REDIS_URL":                      "broker.redis_url",
		"SWITCHBOARD_RUNNER_COMMAND":                        "runner.command",
		"SWITCHBOARD_RUNNER_CORS_ORIGINS":                   "runner.cors.origins",
		"SWITCHBOARD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "channel.without_namespace.history_ttl",
	} {
		if env[name] != path {
			t.Errorf("EnvVars()[%s] = %q, want %q", name, env[name], path)
		}
	}
	for name := range env {
		if strings.Contains(name, "NAMESPACES") {
			t.Errorf("namespace key settable by env: %s", name)
		}
	}
	// Every non-namespace key has a variable.
	n := 0
	for _, k := range keys {
		if !strings.Contains(k, "[]") {
			n++
		}
	}
	if n != len(env) {
		t.Errorf("%d keys but %d env vars", n, len(env))
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
