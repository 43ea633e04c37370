package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge-go"
	"github.com/stretchr/testify/require"

	relayclient "github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// devBanner is what `serve --dev` printed: "name: value" lines.
type devBanner struct {
	listening string
	values    map[string]string
}

func readDevBanner(t *testing.T, p *program) devBanner {
	t.Helper()
	lines := p.readUntil(t, func(l string) bool { return strings.HasPrefix(l, "  bench: ") })
	b := devBanner{listening: lines[0], values: map[string]string{}}
	for _, l := range lines[1:] {
		if name, value, ok := strings.Cut(strings.TrimSpace(l), ": "); ok {
			b.values[name] = value
		}
	}
	return b
}

// field is the first word of a banner value ("KEY  (generated …)" → KEY).
func (b devBanner) field(t *testing.T, name string) string {
	t.Helper()
	v, ok := b.values[name]
	require.True(t, ok, "banner has no %q line: %v", name, b.values)
	return strings.Fields(v)[0]
}

// TestServeDevFirstRun is the README quick start: `serve --dev`, connect
// with the printed token, publish with the printed curl line, see it arrive;
// then the bench examples against the same server.
func TestServeDevFirstRun(t *testing.T) {
	p := startProgram(t, "serve", "--dev", "--port", "0")
	b := readDevBanner(t, p)
	require.Contains(t, b.listening, "listening on http://127.0.0.1:")
	require.Contains(t, strings.Join(mapValues(b.values), "\n"), "generated for this run")
	wsURL := b.field(t, "websocket")
	tok := b.field(t, "token")
	apiKey := b.field(t, "api_key")
	secret := b.field(t, "hmac_secret_key")
	require.Len(t, secret, 64)
	require.Len(t, apiKey, 64)
	require.NotEqual(t, secret, apiKey)

	c := newGoClientURL(t, wsURL, false, tok)
	sub, subscribed := c.sub(t, devChannel, centrifuge.SubscriptionConfig{})
	require.NoError(t, sub.Subscribe())
	require.NoError(t, c.Connect())
	receive(t, c.connected, "connected with the printed token")
	ev := receive(t, subscribed, "subscribed to "+devChannel)
	require.True(t, ev.Recoverable, "the dev chat namespace keeps history for recovery")

	curl := b.values["publish"]
	require.True(t, strings.HasPrefix(curl, "curl "), curl)
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("sh", "-c", curl).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), `"result"`)
	} else {
		t.Log("curl not installed: publishing with the line's URL, key and body instead")
		publishLikeCurl(t, curl)
	}
	require.Eventually(t, func() bool { return len(c.publications()) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.JSONEq(t, `{"text":"hello"}`, c.publications()[0])

	// Presence and history are open to subscribers.
	pres, err := sub.Presence(t.Context())
	require.NoError(t, err)
	require.Len(t, pres.Clients, 1)
	hist, err := sub.History(t.Context(), centrifuge.WithHistoryLimit(10))
	require.NoError(t, err)
	require.Len(t, hist.Publications, 1)

	// The printed bench line and the README's bench examples work against it.
	benchLine := strings.Fields(b.values["bench"])
	require.Equal(t, []string{"switchboard", "bench", "fanout"}, benchLine[:3])
	require.Equal(t, 0, run(append(benchLine[1:], "--duration", "300ms", "-s", "5", "--json"), io.Discard, os.Stderr))
	for _, args := range readmeBenchExamples(t, wsURL, secret, apiKey, true) {
		require.Equal(t, 0, run(args, io.Discard, os.Stderr), "%v", args)
	}

	devSchedulerAndConsole(t, b, tok)

	require.Equal(t, 0, p.stop(t), "stderr: %s", p.stderr.String())
	require.Contains(t, p.stderr.String(), "not for production")
}

// devSchedulerAndConsole checks what the banner says of the console and
// the scheduler: the console signs in with the printed password, the
// printed token creates a job, and the job is on the console's list.
func devSchedulerAndConsole(t *testing.T, b devBanner, tok string) {
	t.Helper()
	consoleURL := b.field(t, "console")
	require.True(t, strings.HasSuffix(consoleURL, "/console"), consoleURL)
	password := b.field(t, "admin_password")
	require.Len(t, password, 24)
	require.Contains(t, b.values["admin_password"], "generated for this run")
	base := strings.TrimSuffix(consoleURL, "/console")
	require.Equal(t, base+"/jobs", b.field(t, "scheduler"))
	require.Contains(t, b.values["node"], "switchboard node --server "+base)

	post := func(url, auth, body string) (*http.Response, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		return resp, m
	}
	resp, created := post(base+"/jobs", tok, `{"config":{"seed":1},"iterations":2500}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, created)
	require.Equal(t, 3.0, created["chunks"])

	resp, m := post(consoleURL+"/api/login", "", `{"password":"wrong"}`)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, m)
	resp, m = post(consoleURL+"/api/login", "", `{"password":"`+password+`"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, m)
	req, err := http.NewRequest(http.MethodGet, consoleURL+"/api/jobs", nil)
	require.NoError(t, err)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	jr, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer jr.Body.Close()
	require.Equal(t, http.StatusOK, jr.StatusCode)
	var jobs struct {
		Jobs []map[string]any `json:"jobs"`
	}
	require.NoError(t, json.NewDecoder(jr.Body).Decode(&jobs))
	var mine []map[string]any // the README's bench scheduler example ran too (user "bench")
	for _, j := range jobs.Jobs {
		if j["id"] == created["jobId"] {
			mine = append(mine, j)
		}
	}
	require.Len(t, mine, 1, "the console lists the job")
	require.Equal(t, devUser, mine[0]["ownerId"])
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// publishLikeCurl posts what the printed curl line posts.
func publishLikeCurl(t *testing.T, line string) {
	t.Helper()
	f := strings.Fields(line)
	var url, key string
	for i, w := range f {
		if strings.HasPrefix(w, "http://") {
			url = w
		}
		if w == "'X-API-Key:" {
			key = strings.TrimSuffix(f[i+1], "'")
		}
	}
	body := line[strings.Index(line, "-d '")+4 : len(line)-1]
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// readmeBenchExamples returns the README's `switchboard bench` lines as
// argument lists aimed at wsURL, scaled down: S and K become the secret and
// API key, PID this process, and counts at most 20, each run 300ms.
//
// `bench scheduler` lines are included only with scheduler (the server runs
// it): --server becomes the server's http URL, --hmac-secret the secret,
// --jobs 20.
func readmeBenchExamples(t *testing.T, wsURL, secret, apiKey string, scheduler bool) [][]string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	var out [][]string
	for _, l := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(l, "switchboard bench ") {
			continue
		}
		f := strings.Fields(l)[1:]
		if f[1] == "scheduler" {
			if !scheduler {
				continue
			}
			for i := 1; i < len(f); i++ {
				switch f[i-1] {
				case "--server":
					f[i] = "http://" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws://"), "/connection/websocket")
				case "--hmac-secret":
					f[i] = secret
				case "--jobs":
					f[i] = "20"
				}
			}
			out = append(out, f)
			continue
		}
		for i := 1; i < len(f); i++ {
			switch f[i-1] {
			case "--url":
				f[i] = wsURL
			case "--secret":
				f[i] = secret
			case "--api-key":
				f[i] = apiKey
			case "--server-pid":
				f[i] = strconv.Itoa(os.Getpid())
			case "-n", "-s":
				f[i] = "20"
			case "--duration":
				f[i] = "300ms"
			}
		}
		out = append(out, append(f, "--duration", "300ms", "--json"))
	}
	require.GreaterOrEqual(t, len(out), 3, "README bench examples")
	return out
}

// TestDevFillsOnlyWhatIsMissing: --dev with -c keeps every configured value
// and adds only absent secrets and namespaces; --port still applies.
func TestDevFillsOnlyWhatIsMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.json")
	require.NoError(t, writeFile(path, `{"client":{"token":{"hmac_secret_key":"mine"},"allowed_origins":["http://app.example"]},
		"channel":{"namespaces":[{"name":"chat","presence":true}]}}`))
	s := &ServeCmd{Config: path, Dev: true, Port: 0, RelayPort: -1}
	cfg, info, err := s.loadConfig()
	require.NoError(t, err)
	require.Equal(t, "mine", cfg.Client.Token.HMACSecretKey)
	require.False(t, info.secretGenerated)
	require.True(t, info.keyGenerated)
	require.Len(t, cfg.HTTPAPI.Key, 64)
	require.Equal(t, []string{"http://app.example"}, cfg.Client.AllowedOrigins)
	chat, ok := cfg.Namespace("chat")
	require.True(t, ok)
	require.Equal(t, config.NamespaceOptions{Presence: true}, chat, "the configured chat namespace is kept as is")
	_, ok = cfg.Namespace("bench")
	require.True(t, ok)
	require.Equal(t, []string{"bench"}, info.namespaces)
	require.Equal(t, 0, cfg.HTTPServer.Port)

	// Without --dev nothing is added.
	s.Dev = false
	cfg, _, err = s.loadConfig()
	require.NoError(t, err)
	require.Empty(t, cfg.HTTPAPI.Key)
	_, ok = cfg.Namespace("bench")
	require.False(t, ok)
}

func TestDevBannerIsParseable(t *testing.T) {
	cfg := config.Default()
	// Secret, API key, admin password (12 bytes), console secret.
	info, err := applyDev(&cfg, bytes.NewReader(bytes.Repeat([]byte{7}, 32+32+12+32)))
	require.NoError(t, err)
	require.True(t, cfg.Scheduler.Enabled)
	require.True(t, cfg.Admin.Enabled)
	require.NoError(t, cfg.Validate())
	var out bytes.Buffer
	require.NoError(t, printDevBanner(&out, cfg, info, "http://127.0.0.1:1", "ws://127.0.0.1:1/connection/websocket", nil, time.Now()))
	s := out.String()
	require.Contains(t, s, "NOT FOR PRODUCTION")
	require.Contains(t, s, "  console: http://127.0.0.1:1/console")
	require.Contains(t, s, "  admin_password: "+strings.Repeat("07", 12)+"  (generated for this run)")
	require.Contains(t, s, "  api_key: "+strings.Repeat("07", 32))
	require.Contains(t, s, "curl -s -X POST http://127.0.0.1:1/api/publish")
	var body map[string]any
	i := strings.Index(s, "-d '")
	require.NoError(t, json.Unmarshal([]byte(s[i+4:strings.Index(s[i+4:], "'")+i+4]), &body))
	require.Equal(t, devChannel, body["channel"])

	_, err = applyDev(&cfg, bytes.NewReader(nil)) // exhausted randomness is an error, not an empty secret
	require.NoError(t, err, "nothing left to generate")
	cfg = config.Default()
	_, err = applyDev(&cfg, bytes.NewReader(nil))
	require.ErrorContains(t, err, "--dev: generate secret")
}

// TestReadmeBenchExamplesAgainstReadmeConfig boots the configuration the
// README shows (secrets filled in, port 0) and runs the README's bench
// examples against it: each must succeed.
func TestReadmeBenchExamplesAgainstReadmeConfig(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	text := string(readme)
	sec := text[strings.Index(text, "## Configuration"):]
	start := strings.Index(sec, "```json\n") + len("```json\n")
	block := sec[start : start+strings.Index(sec[start:], "```")]
	block = strings.Replace(block, `"…"`, `"readme-secret"`, 1)
	block = strings.Replace(block, `"…"`, `"readme-api-key"`, 1)
	cfg, err := config.Parse([]byte(block), "json")
	require.NoError(t, err, block)
	cfg.HTTPServer.Port = 0
	m := startServer(t, cfg)
	for _, args := range readmeBenchExamples(t, "ws://"+m.Addr()+"/connection/websocket", "readme-secret", "readme-api-key", false) {
		require.Equal(t, 0, run(args, io.Discard, os.Stderr), "%v", args)
	}
}

func TestReadmeTestCommandRetests(t *testing.T) {
	for _, f := range []string{"README.md", "Makefile"} {
		data, err := os.ReadFile(filepath.Join("..", "..", f))
		require.NoError(t, err)
		require.Contains(t, string(data), "go test -race -count=1 ./...", f)
	}
}

// TestServeDevRelay: `serve --dev --relay-port` binds the relay to the
// loopback interface like the HTTP server, the banner gives its address,
// certificate hash and demo page, and spectators may subscribe to a
// room's channel relay:R (and read its presence) with the printed token.
func TestServeDevRelay(t *testing.T) {
	p := startProgram(t, "serve", "--dev", "--port", "0", "--relay-port", "0")
	b := readDevBanner(t, p)
	addr := b.field(t, "relay")
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "--dev keeps the relay on loopback")
	pin := b.field(t, "relay_sha256")
	require.Len(t, pin, 64)
	base := strings.TrimSuffix(b.field(t, "console"), "/console")
	require.Equal(t, base+"/relay/demo", b.field(t, "relay_demo"))
	rsp, err := http.Get(b.field(t, "relay_demo"))
	require.NoError(t, err)
	rsp.Body.Close()
	require.Equal(t, http.StatusOK, rsp.StatusCode)

	raw, err := hex.DecodeString(pin)
	require.NoError(t, err)
	var sum [32]byte
	copy(sum[:], raw)
	ctx, cancel := context.WithTimeout(t.Context(), testenv.Wait)
	defer cancel()
	player, err := relayclient.Dial(ctx, addr, relayclient.Options{CertHashes: [][32]byte{sum}})
	require.NoError(t, err, "the printed hash pins the relay's certificate")
	defer player.Close()
	_, err = player.Join(ctx, "pong-1", relayclient.JoinOptions{Create: true})
	require.NoError(t, err)

	c := newGoClientURL(t, b.field(t, "websocket"), false, b.field(t, "token"))
	sub, subscribed := c.sub(t, "relay:pong-1", centrifuge.SubscriptionConfig{})
	require.NoError(t, sub.Subscribe())
	require.NoError(t, c.Connect())
	receive(t, subscribed, "subscribed to relay:pong-1 (a spectator)")
	require.Eventually(t, func() bool {
		pres, err := sub.Presence(t.Context())
		if err != nil {
			return false
		}
		for _, ci := range pres.Clients { // the spectator and the player
			if strings.Contains(string(ci.ChanInfo), `"transport":"quic-native"`) {
				return true
			}
		}
		return false
	}, testenv.Wait, testenv.Tick, "the player in the room's presence")
	require.Equal(t, 0, p.stop(t), "stderr: %s", p.stderr.String())
}
