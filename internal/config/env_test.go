package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestApplyEnv(t *testing.T) {
	c := Default()
	err := ApplyEnv(&c, []string{
		"PATH=/usr/bin",
		"SWITCHBOARD_HTTP_SERVER_PORT=9000",
		"SWITCHBOARD_HTTP_SERVER_ADDRESS=0.0.0.0",
		"SWITCHBOARD_CLIENT_TOKEN_HMAC_SECRET_KEY=sekret=with=equals",
		"SWITCHBOARD_HTTP_API_KEY=apikey",
		"SWITCHBOARD_HTTP_API_INSECURE=true",
		"SWITCHBOARD_LOG_LEVEL=debug",
		"SWITCHBOARD_CLIENT_ALLOWED_ORIGINS=http://a.example, http://b.example,",
		"SWITCHBOARD_CLIENT_PING_INTERVAL=30",
		"SWITCHBOARD_CLIENT_PONG_TIMEOUT=4s",
		"SWITCHBOARD_BROKER_TYPE=redis",
		"SWITCHBOARD_BROKER_REDIS_URL=redis://127.0.0.1:6379/1",
		`SWITCHBOARD_RUNNER_COMMAND=python3 -u "my worker.py"`,
		`SWITCHBOARD_RUNNER_ALLOW_TASKS=["a,b","c"]`,
		"SWITCHBOARD_RUNNER_MAX_MEMORY=1GiB",
		"SWITCHBOARD_CIRCLES_MAX_STEPS=5000",
		"SWITCHBOARD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE=5",
		"SWITCHBOARD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL=1m",
		"SWITCHBOARD_RUNNER_CORS_ORIGINS=",
		"SWITCHBOARD_TEST_REDIS_URL=redis://ignored",
		"SWITCHBOARD_CONFIG=/etc/switchboard.yaml",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.HTTPServer = HTTPServer{Address: "0.0.0.0", Port: 9000}
	want.Client.Token.HMACSecretKey = "sekret=with=equals"
	want.HTTPAPI.Key, want.HTTPAPI.Insecure = "apikey", true
	want.Log.Level = "debug"
	want.Client.AllowedOrigins = []string{"http://a.example", "http://b.example"}
	want.Client.PingInterval = Duration(30 * time.Second)
	want.Client.PongTimeout = Duration(4 * time.Second)
	want.Broker = Broker{Type: "redis", RedisURL: "redis://127.0.0.1:6379/1"}
	want.Runner.Command = []string{"python3", "-u", "my worker.py"}
	want.Runner.Allow.Tasks = []string{"a,b", "c"}
	want.Runner.MaxMemory = 1 << 30
	want.Circles.MaxSteps = 5000
	want.Channel.WithoutNamespace.HistorySize = 5
	want.Channel.WithoutNamespace.HistoryTTL = Duration(time.Minute)
	want.Runner.CORS.Origins = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestApplyEnvErrors(t *testing.T) {
	cases := []struct {
		env  string
		want []string
	}{
		{"SWITCHBOARD_HTTP_SERVER_PROT=1", []string{"unknown environment variable SWITCHBOARD_HTTP_SERVER_PROT", "did you mean SWITCHBOARD_HTTP_SERVER_PORT?"}},
		{"SWITCHBOARD_NONSENSE_THING_XYZ=1", []string{"unknown environment variable SWITCHBOARD_NONSENSE_THING_XYZ"}},
		{"SWITCHBOARD_CHANNEL_NAMESPACES=[]", []string{"SWITCHBOARD_CHANNEL_NAMESPACES", "cannot be set by environment"}},
		{"SWITCHBOARD_HTTP_SERVER_PORT=abc", []string{`SWITCHBOARD_HTTP_SERVER_PORT (http_server.port): expected integer, got string "abc"`}},
		{"SWITCHBOARD_HTTP_API_INSECURE=sure", []string{"SWITCHBOARD_HTTP_API_INSECURE (http_api.insecure): expected boolean"}},
		{"SWITCHBOARD_CLIENT_PING_INTERVAL=soon", []string{"SWITCHBOARD_CLIENT_PING_INTERVAL (client.ping_interval): invalid duration"}},
		{"SWITCHBOARD_RUNNER_COMMAND=node 'x", []string{"SWITCHBOARD_RUNNER_COMMAND (runner.command): unterminated"}},
		{"SWITCHBOARD_RUNNER_ALLOW_TASKS=[1,", []string{"SWITCHBOARD_RUNNER_ALLOW_TASKS (runner.allow.tasks): invalid JSON list"}},
		{"SWITCHBOARD_CIRCLES_MAX_STEPS=-4", []string{"SWITCHBOARD_CIRCLES_MAX_STEPS (circles.max_steps): must not be negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			c := Default()
			wantErr(t, ApplyEnv(&c, []string{tc.env}), tc.want...)
		})
	}
	t.Run("all reported", func(t *testing.T) {
		c := Default()
		wantErr(t, ApplyEnv(&c, []string{"SWITCHBOARD_A_B=1", "SWITCHBOARD_HTTP_SERVER_PORT=x", "SWITCHBOARD_C_D=2"}),
			"SWITCHBOARD_A_B", "SWITCHBOARD_HTTP_SERVER_PORT", "SWITCHBOARD_C_D")
	})
	t.Run("later entry wins", func(t *testing.T) {
		c := Default()
		if err := ApplyEnv(&c, []string{"SWITCHBOARD_HTTP_SERVER_PORT=x", "SWITCHBOARD_HTTP_SERVER_PORT=81"}); err != nil || c.HTTPServer.Port != 81 {
			t.Errorf("%v %d", err, c.HTTPServer.Port)
		}
	})
}

func TestEnvOverridesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	body := "http_server:\n  port: 8000\nhttp_api:\n  key: from-file\nclient:\n  allowed_origins: [http://file.example]\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(p, []string{"SWITCHBOARD_HTTP_API_KEY=from-env", "SWITCHBOARD_CLIENT_ALLOWED_ORIGINS=http://env.example"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPServer.Port != 8000 || c.HTTPAPI.Key != "from-env" || !reflect.DeepEqual(c.Client.AllowedOrigins, []string{"http://env.example"}) {
		t.Errorf("got %+v", c)
	}
	// Env values are validated too.
	_, err = load(p, []string{"SWITCHBOARD_HTTP_SERVER_PORT=70000"})
	wantErr(t, err, "SWITCHBOARD_HTTP_SERVER_PORT (http_server.port): 70000 out of range")
	// Unknown variables fail Load.
	_, err = load(p, []string{"SWITCHBOARD_HTTP_APIKEY=x"})
	wantErr(t, err, "unknown environment variable SWITCHBOARD_HTTP_APIKEY")
}

// Centrifugo v6 variable names are aliases of the Switchboard ones; the
// SWITCHBOARD_* name wins when both are set.
func TestCentrifugoEnvAliases(t *testing.T) {
	c := Default()
	err := ApplyEnv(&c, []string{
		"CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY=centrifugo-secret",
		"CENTRIFUGO_HTTP_API_KEY=centrifugo-key",
		"SWITCHBOARD_HTTP_API_KEY=switchboard-key",
		"CENTRIFUGO_HTTP_SERVER_PORT=not-a-port", // shadowed: never parsed
		"SWITCHBOARD_HTTP_SERVER_PORT=9001",
		"CENTRIFUGO_CLIENT_ALLOWED_ORIGINS=http://a.example,http://b.example",
		"CENTRIFUGO_ADMIN_PASSWORD=x",
		"CENTRIFUGO_ADMIN_WEB_PATH=",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Client.Token.HMACSecretKey != "centrifugo-secret" || c.HTTPAPI.Key != "switchboard-key" || c.HTTPServer.Port != 9001 ||
		!reflect.DeepEqual(c.Client.AllowedOrigins, []string{"http://a.example", "http://b.example"}) {
		t.Errorf("got %+v", c)
	}
	if c.Admin.Password != "x" {
		t.Errorf("admin.password = %q from CENTRIFUGO_ADMIN_PASSWORD", c.Admin.Password)
	}
	if !reflect.DeepEqual(c.NoEffect, []string{"CENTRIFUGO_ADMIN_WEB_PATH"}) {
		t.Errorf("NoEffect = %q", c.NoEffect)
	}
	// A bad alias value is an error naming the alias.
	c = Default()
	wantErr(t, ApplyEnv(&c, []string{"CENTRIFUGO_CLIENT_PING_INTERVAL=soon"}), "CENTRIFUGO_CLIENT_PING_INTERVAL (client.ping_interval): invalid duration")
	// Every Switchboard variable has its Centrifugo alias.
	for name, path := range EnvVars() {
		c = Default()
		alias := CentrifugoEnvPrefix + strings.TrimPrefix(name, EnvPrefix)
		if err := ApplyEnv(&c, []string{alias + "="}); err != nil || len(c.NoEffect) != 0 {
			t.Errorf("%s (%s): %v %q", alias, path, err, c.NoEffect)
		}
	}
}
