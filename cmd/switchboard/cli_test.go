package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/playcli"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestExitStatus: 2 for every usage or configuration error, 1 for runtime
// failures, 0 for success, across the subcommands.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, writeFile(good, `{"client":{"token":{"hmac_secret_key":"s"}}}`))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, writeFile(bad, `{"client":{"tokne":{}}}`))
	exists := filepath.Join(dir, "exists")
	require.NoError(t, writeFile(exists, "x"))
	script := filepath.Join(dir, "s.star")
	require.NoError(t, writeFile(script, "1\n"))
	kp, err := playcli.GenerateKeyPair()
	require.NoError(t, err)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string // in stderr
	}{
		{"unknown flag", []string{"serve", "--nope"}, 2, "--nope"},
		{"unknown command", []string{"frobnicate"}, 2, "frobnicate"},
		{"serve missing config", []string{"serve", "-c", filepath.Join(dir, "missing.json")}, 2, "missing.json"},
		{"serve bad config", []string{"serve", "-c", bad}, 2, "client.tokne"},
		{"serve port range", []string{"serve", "--port", "70000"}, 2, "--port"},
		{"serve log format", []string{"serve", "--log-format", "xml"}, 2, "log.format"},
		{"serve bad circle key", []string{"serve", "--port", "0", "-k", "02zz"}, 2, "circles.keys[0]"},
		{"serve workers without worker", []string{"serve", "--workers", "4"}, 2, "--workers needs --worker"},
		{"serve redis engine without url", []string{"serve", "--engine", "redis"}, 2, "--engine redis needs --redis-url"},
		{"serve unknown engine", []string{"serve", "--engine", "etcd"}, 2, `--engine: unknown engine "etcd"`},
		{"serve bad redis url", []string{"serve", "--engine", "redis", "--redis-url", "http://x"}, 2, "--redis-url"},
		{"serve port in use", []string{"serve", "-c", good, "--port", busyPort}, 1, "listen"},
		{"checkconfig bad", []string{"checkconfig", "-c", bad}, 2, "client.tokne"},
		{"checkconfig missing flag", []string{"checkconfig"}, 2, "--config"},
		{"gentoken no secret", []string{"gentoken", "--user", "u"}, 2, "no secret"},
		{"gentoken negative ttl", []string{"gentoken", "--user", "u", "--secret", "s", "--ttl", "-1s"}, 2, "--ttl"},
		{"gentoken bad config", []string{"gentoken", "--user", "u", "-c", bad}, 2, "client.tokne"},
		{"genconfig exists", []string{"genconfig", "-o", exists}, 2, "--force"},
		{"keygen exists", []string{"keygen", "-o", exists}, 2, "--force"},
		{"keygen force without output", []string{"keygen", "--force"}, 2, "-o"},
		{"play bad url", []string{"play", "--url", "http://x/" + kp.Compressed, script}, 2, "scheme must be ws"},
		{"play missing script", []string{"play", "--url", "ws://" + closedAddr + "/" + kp.Compressed, filepath.Join(dir, "nope.star")}, 2, "script"},
		{"play unreachable", []string{"play", "--url", "ws://" + closedAddr + "/" + kp.Compressed, "--timeout", "5s", script}, 1, "play"},
		{"bench bad flag", []string{"bench", "conns", "--url", "http://x", "--secret", "s"}, 2, "--url"},
		{"bench every connection failed", []string{"bench", "conns", "--url", "ws://" + closedAddr + "/connection/websocket",
			"--secret", "s", "-n", "2", "--duration", "100ms", "--json"}, 1, "every connection failed"},
		{"version", []string{"version"}, 0, ""},
		{"gentoken ok", []string{"gentoken", "--user", "u", "-c", good}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			require.Equal(t, tc.code, code, "stderr: %s", stderr)
			require.Contains(t, stderr, tc.msg)
		})
	}
}

func TestWorkersNamesBothFlags(t *testing.T) {
	code, _, stderr := runCLI(t, "serve", "--workers", "2")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--workers")
	require.Contains(t, stderr, "--worker ")
	// A worker command from the configuration is enough.
	s := &ServeCmd{Port: -1, Workers: 2}
	t.Setenv("SWITCHBOARD_RUNNER_COMMAND", "node w.js")
	cfg, _, err := s.loadConfig()
	require.NoError(t, err)
	require.Equal(t, 2, cfg.Runner.Workers)
}

func TestSwitchboardConfigEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env.json")
	require.NoError(t, writeFile(path, `{"client":{"token":{"hmac_secret_key":"from-env-file"}}}`))
	t.Setenv("SWITCHBOARD_CONFIG", path)

	code, out, stderr := runCLI(t, "checkconfig")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, path)
	code, out, stderr = runCLI(t, "gentoken", "--user", "u")
	require.Equal(t, 0, code, stderr)
	require.Len(t, strings.Split(strings.TrimSpace(out), "."), 3)

	// serve reads it too: a broken file named only by the variable stops it.
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, writeFile(bad, `{"nope":1}`))
	t.Setenv("SWITCHBOARD_CONFIG", bad)
	code, _, stderr = runCLI(t, "serve")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "bad.json")
	// -c wins over the variable.
	code, _, stderr = runCLI(t, "checkconfig", "-c", path)
	require.Equal(t, 0, code, stderr)
}

func TestGenconfigStdout(t *testing.T) {
	dir := t.TempDir()
	// `genconfig -o - >> config.json` onto an existing config is refused and leaves it intact.
	full := filepath.Join(dir, "full.json")
	require.NoError(t, writeFile(full, `{"keep":"me"}`))
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"genconfig", "-o", "-"}, f, &stderr))
	f.Close()
	require.Contains(t, stderr.String(), "non-empty file")
	data, err := os.ReadFile(full)
	require.NoError(t, err)
	require.Equal(t, `{"keep":"me"}`, string(data))

	// An empty redirect target gets the config.
	empty := filepath.Join(dir, "empty.json")
	f, err = os.Create(empty)
	require.NoError(t, err)
	require.Equal(t, 0, run([]string{"genconfig", "-o", "-"}, f, &stderr), stderr.String())
	f.Close()
	code, _, errOut := runCLI(t, "checkconfig", "-c", empty)
	require.Equal(t, 0, code, errOut)

	// `genconfig > config.json` (stdout is the -o target itself) says what happened.
	target := filepath.Join(dir, "config.json")
	f, err = os.Create(target)
	require.NoError(t, err)
	stderr.Reset()
	require.Equal(t, 2, run([]string{"genconfig", "-o", target}, f, &stderr))
	f.Close()
	require.Contains(t, stderr.String(), "redirected into")
}

func TestKeygenOutputFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "me.key")
	code, out, stderr := runCLI(t, "keygen", "-o", path)
	require.Equal(t, 0, code, stderr)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	key, err := playcli.ReadKeyFile(path)
	require.NoError(t, err)
	require.NotContains(t, out, key, "the private key is not printed")
	require.Contains(t, out, "public_key_compressed: ")

	before, err := os.ReadFile(path)
	require.NoError(t, err)
	code, _, stderr = runCLI(t, "keygen", "-o", path)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "exists")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "an existing key file is never overwritten without --force")
	code, _, stderr = runCLI(t, "keygen", "-o", path, "--force")
	require.Equal(t, 0, code, stderr)
	after, err = os.ReadFile(path)
	require.NoError(t, err)
	require.NotEqual(t, before, after)
}

func TestKeygenWarnsOnTerminal(t *testing.T) {
	// /dev/null is a character device, like a terminal: the check errs on the side of warning.
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer tty.Close()
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"keygen"}, tty, &stderr))
	require.Contains(t, stderr.String(), "warning: printing a private key on a terminal")
	stderr.Reset()
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"keygen"}, &out, &stderr))
	require.Empty(t, stderr.String(), "no warning when the output is not a terminal")
	require.Contains(t, out.String(), "private_key: ")
}

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/switchboard-rt/switchboard", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-01T09:00:00Z"}}}
	got := versionText("v1.2.3", bi)
	require.Equal(t, "switchboard v1.2.3\nmodule: github.com/switchboard-rt/switchboard v1.2.3\nrevision: 0123abcd (modified)\ncommit time: 2026-12-01T09:00:00Z\ngo: go1.26.8\n", got)
	bi.Settings = nil
	require.Contains(t, versionText("dev", bi), "revision: unknown")
	require.Contains(t, versionText("dev", nil), "build info: not available")

	code, out, _ := runCLI(t, "version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "module: github.com/switchboard-rt/switchboard")
	require.Contains(t, out, "go: go")
}

func TestCircleKeyForms(t *testing.T) {
	kp, err := playcli.GenerateKeyPair()
	require.NoError(t, err)
	// 0x-prefixed keys, as documented, in flags and in the file.
	path := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, writeFile(path, `{"circles":{"keys":["0x`+kp.Uncompressed+`"]}}`))
	s := &ServeCmd{Config: path, Port: -1}
	_, _, err = s.loadConfig()
	require.NoError(t, err)
	s = &ServeCmd{Port: -1, Keys: []string{"0x" + strings.ToUpper(kp.Compressed)}}
	_, _, err = s.loadConfig()
	require.NoError(t, err)

	// The same key compressed and uncompressed is a duplicate.
	s = &ServeCmd{Port: -1, Keys: []string{kp.Compressed}, PublicKeys: kp.Uncompressed}
	_, _, err = s.loadConfig()
	require.ErrorContains(t, err, "circles.keys[1]: duplicate key (also circles.keys[0])")
	require.Equal(t, 2, exitStatus(err))
}

// TestDocumentedFlagsExist: every --flag the README and docs/circles.md show
// for switchboard exists in the command line.
func TestDocumentedFlagsExist(t *testing.T) {
	var cli CLI
	p, err := kong.New(&cli, kong.Exit(func(int) {}))
	require.NoError(t, err)
	known := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			known["--"+f.Name] = true
			for _, a := range f.Aliases {
				known["--"+a] = true
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Model.Node)
	// Flags of other programs in the same pages.
	others := map[string]bool{
		"--name":  true, // a worker's own argument in a runner.command example
		"--build": true, // docker compose up --build
	}
	flagRe := regexp.MustCompile(`(?:^|[\s\[(|/` + "`" + `])(--[a-z][a-z0-9-]+)`)
	var missing []string
	for _, doc := range []string{"../../README.md", "../../docs/circles.md", "../../docs/config.md"} {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, m := range flagRe.FindAllStringSubmatch(string(data), -1) {
			if !known[m[1]] && !others[m[1]] {
				missing = append(missing, doc+": "+m[1])
			}
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "documented flags that do not exist")
}
