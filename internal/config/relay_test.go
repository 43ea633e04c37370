package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/relay"
)

// Validate applies the relay's own rules (relay.Config.Validate), by key
// path: what `serve` would refuse, `checkconfig` reports.
func TestValidateRelay(t *testing.T) {
	cases := []struct {
		name string
		mut  func(r *Relay)
		want string
	}{
		{"address without port", func(r *Relay) { r.Address = "nope" }, `relay.address: "nope" is not host:port`},
		{"address bad port", func(r *Relay) { r.Address = ":99999" }, `relay.address: ":99999": bad port "99999"`},
		{"address empty port", func(r *Relay) { r.Address = "127.0.0.1:" }, `relay.address: "127.0.0.1:" has no port`},
		{"queue below a frame", func(r *Relay) { r.QueueLimit = 100 },
			"relay.queue_limit: 100 is less than max_frame + 64 (65600 bytes)"},
		{"queue below a large frame", func(r *Relay) { r.MaxFrame = 1 << 20 }, "relay.queue_limit: 262144 is less than max_frame + 64 (1048640 bytes)"},
		{"auth", func(r *Relay) { r.Auth = "tokn" }, `relay.auth: "tokn" is not "none" or "token"`},
		{"max_frame", func(r *Relay) { r.MaxFrame = 32 << 20 }, "relay.max_frame: 33554432 is not within 1..16777216"},
		{"type name", func(r *Relay) { r.MaxTypeName = -1 }, "relay.max_type_name: -1 is not within"},
		{"mirror rate", func(r *Relay) { r.Mirror.Rate = -0.5 }, "relay.mirror.rate: -0.5 is not a positive number"},
		{"bus queue", func(r *Relay) { r.BusQueue = -1 }, "relay.bus_queue: -1 is negative"},
		{"timeout", func(r *Relay) { r.IdleTimeout = -1 }, "relay.idle_timeout: -1ns is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mut(&c.Relay)
			err := c.Validate()
			wantErr(t, err, tc.want)
			if strings.Contains(err.Error(), "relay: ") {
				t.Errorf("the relay's own prefix leaked into %v", err)
			}
		})
	}
	t.Run("zero values are the defaults", func(t *testing.T) {
		c := Default()
		c.Relay = Relay{}
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	})
}

// Timings the relay would take but cannot work with are refused by key;
// the bounds themselves and 0 (the default) pass.
func TestRelayTimingBounds(t *testing.T) {
	cases := []struct {
		name string
		mut  func(r *Relay)
		want string
	}{
		{"heartbeat too fast", func(r *Relay) { r.HeartbeatInterval = Duration(500 * time.Microsecond) },
			"relay.heartbeat_interval: 500µs is not within 100ms..1m0s (0: the default)"},
		{"heartbeat too slow", func(r *Relay) { r.HeartbeatInterval = Duration(2 * time.Minute) }, "relay.heartbeat_interval: 2m0s is not within"},
		{"resume grace too short", func(r *Relay) { r.ResumeGrace = Duration(time.Millisecond) },
			"relay.resume_grace: 1ms is not within 1s..10m0s"},
		{"resume grace too long", func(r *Relay) { r.ResumeGrace = Duration(time.Hour) }, "relay.resume_grace: 1h0m0s is not within"},
		{"idle timeout", func(r *Relay) { r.IdleTimeout = Duration(time.Millisecond) }, "relay.idle_timeout: 1ms is not within 1s..10m0s"},
		{"handshake timeout", func(r *Relay) { r.HandshakeTimeout = Duration(time.Millisecond) }, "relay.handshake_timeout: 1ms is not within"},
		{"write timeout", func(r *Relay) { r.WriteTimeout = Duration(time.Microsecond) }, "relay.write_timeout: 1µs is not within"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mut(&c.Relay)
			wantErr(t, c.Validate(), tc.want)
		})
	}
	c := Default()
	c.Relay.HeartbeatInterval, c.Relay.ResumeGrace = Duration(100*time.Millisecond), Duration(10*time.Minute)
	c.Relay.IdleTimeout, c.Relay.HandshakeTimeout, c.Relay.WriteTimeout = 0, Duration(time.Minute), Duration(10*time.Millisecond)
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	_, err := load("", []string{"SWITCHBOARD_RELAY_RESUME_GRACE=1ms"})
	wantErr(t, err, "SWITCHBOARD_RELAY_RESUME_GRACE (relay.resume_grace): 1ms is not within")
}

// An invalid relay.max_frame is reported alone: max_type_name and
// queue_limit, checked against it, are not (the user did not set them),
// unless they are wrong on their own.
func TestRelayInvalidBaseHidesDependents(t *testing.T) {
	_, err := Parse([]byte(`{"relay":{"max_frame":-1}}`), "json")
	wantErr(t, err, "relay.max_frame: -1 is not within")
	if strings.Contains(err.Error(), "max_type_name") || strings.Contains(err.Error(), "queue_limit") {
		t.Errorf("a dependent of max_frame reported: %v", err)
	}
	_, err = load("", []string{"SWITCHBOARD_RELAY_MAX_FRAME=5GB"})
	wantErr(t, err, "SWITCHBOARD_RELAY_MAX_FRAME (relay.max_frame): 5000000000 is not within")
	if strings.Contains(err.Error(), "queue_limit") {
		t.Errorf("queue_limit reported for an invalid max_frame: %v", err)
	}
	_, err = Parse([]byte(`{"relay":{"max_frame":-1,"max_type_name":-2,"queue_limit":-3}}`), "json")
	wantErr(t, err, "relay.max_frame: -1", "relay.max_type_name: must not be negative, got -2", "relay.queue_limit: must not be negative, got -3")
}

// relay.mirror.rate is a number: fractions load from every format and
// from the environment.
func TestMirrorRateIsANumber(t *testing.T) {
	for format, doc := range map[string]string{
		"json": `{"relay":{"mirror":{"rate":2.5}}}`,
		"yaml": "relay:\n  mirror:\n    rate: 2.5\n",
		"toml": "[relay.mirror]\nrate = 2.5\n",
	} {
		c, err := Parse([]byte(doc), format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if c.Relay.Mirror.Rate != 2.5 || c.Relay.RelayConfig().Mirror.Rate != 2.5 {
			t.Errorf("%s: rate %v", format, c.Relay.Mirror.Rate)
		}
	}
	c, err := load("", []string{"SWITCHBOARD_RELAY_MIRROR_RATE=0.25"})
	if err != nil || c.Relay.Mirror.Rate != 0.25 {
		t.Errorf("env: rate %v, %v", c.Relay.Mirror.Rate, err)
	}
	_, err = Parse([]byte(`{"relay":{"mirror":{"rate":"fast"}}}`), "json")
	wantErr(t, err, `relay.mirror.rate: expected number, got string "fast"`)
	_, err = Parse([]byte("[relay.mirror]\nrate = inf\n"), "toml")
	wantErr(t, err, "relay.mirror.rate: +Inf is not a finite number")
}

// A bad value set by an environment variable is reported under the
// variable's name, with its key path; one from the file under the key.
func TestValidationNamesTheVariable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(p, []byte(`{"relay":{"queue_limit":100}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(p, []string{"SWITCHBOARD_RELAY_AUTH=tokn"})
	wantErr(t, err, `SWITCHBOARD_RELAY_AUTH (relay.auth): "tokn" is not`, "\nrelay.queue_limit: 100 is less than")
	_, err = load(p, []string{"CENTRIFUGO_RELAY_AUTH=tokn"})
	wantErr(t, err, `CENTRIFUGO_RELAY_AUTH (relay.auth): "tokn"`)
}

// TOML errors carry one "toml:" prefix, and the position when the parser
// gives one.
func TestTOMLErrors(t *testing.T) {
	for doc, want := range map[string]string{
		"[relay]\nenabled = true\n[relay]\n": "toml: table relay already exists",
		"[relay]\nenabled = tru\n":           "toml: line 2, column 11: expected 'true'",
	} {
		_, err := Parse([]byte(doc), "toml")
		wantErr(t, err, want)
		if strings.Count(err.Error(), "toml:") != 1 {
			t.Errorf("prefix repeated: %v", err)
		}
	}
}

// Relay.Certificate reads the pair, naming the key of the file at fault.
func TestRelayCertificate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certA, keyA, err := relay.GenerateCertificate(nil, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := relay.GenerateCertificate(nil, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ca, ka, kb := write("a.crt", certA), write("a.key", keyA), write("b.key", keyB)

	if c, err := (Relay{}).Certificate(); c != nil || err != nil {
		t.Errorf("no files: %v, %v", c, err)
	}
	if c, err := (Relay{CertFile: ca, KeyFile: ka}).Certificate(); c == nil || err != nil {
		t.Errorf("a pair: %v", err)
	}
	_, err = Relay{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: ka}.Certificate()
	wantErr(t, err, "relay.cert_file: open ", "missing.crt")
	_, err = Relay{CertFile: ca, KeyFile: filepath.Join(dir, "missing.key")}.Certificate()
	wantErr(t, err, "relay.key_file: open ", "missing.key")
	_, err = Relay{CertFile: ca, KeyFile: kb}.Certificate()
	wantErr(t, err, "relay.cert_file: "+ca+" and relay.key_file "+kb+": ", "private key does not match public key")
	_, err = Relay{CertFile: ca}.Certificate()
	wantErr(t, err, "relay.cert_file: relay.cert_file and relay.key_file go together")

	// Set from the environment: the variable is named, the cause kept.
	c, err := load("", []string{"SWITCHBOARD_RELAY_CERT_FILE=" + filepath.Join(dir, "missing.crt"), "SWITCHBOARD_RELAY_KEY_FILE=" + ka})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RelayCertificate()
	wantErr(t, err, "SWITCHBOARD_RELAY_CERT_FILE (relay.cert_file): open ", "missing.crt")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cause lost: %v", err)
	}
	c, err = load("", []string{"SWITCHBOARD_RELAY_CERT_FILE=" + ca, "SWITCHBOARD_RELAY_KEY_FILE=" + filepath.Join(dir, "missing.key")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RelayCertificate()
	wantErr(t, err, "SWITCHBOARD_RELAY_KEY_FILE (relay.key_file): open ", "missing.key")
}

// A value refused by decoding does not hide the problems of the other
// keys: the file's, the environment's and Validate's come at once, and
// nothing is said of the refused key beyond its decoding.
func TestProblemsReportedAtOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(p, []byte(`{"relay":{"max_frame":"x","heartbeat_interval":"1ms"},"client":{"ping_interval":"nope"},"http_server":{"port":999999}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(p, []string{"SWITCHBOARD_RELAY_RESUME_GRACE=zz", "SWITCHBOARD_RELAY_IDLE_TIMEOUT=1ms"})
	wantErr(t, err, "config "+p+":\n",
		`relay.max_frame: invalid size "x"`,
		`client.ping_interval: invalid duration "nope"`,
		"http_server.port: 999999 out of range",
		"relay.heartbeat_interval: 1ms is not within",
		"SWITCHBOARD_RELAY_IDLE_TIMEOUT (relay.idle_timeout): 1ms is not within",
		"config environment:\nSWITCHBOARD_RELAY_RESUME_GRACE (relay.resume_grace): invalid duration")
	if n := strings.Count(err.Error(), "relay.max_frame"); n != 1 {
		t.Errorf("relay.max_frame reported %d times: %v", n, err)
	}

	_, err = Parse([]byte(`{"relay":{"max_frame":"x","resume_grace":-1}}`), "json")
	wantErr(t, err, `relay.max_frame: invalid size "x"`, "relay.resume_grace: -1s is negative")
}
