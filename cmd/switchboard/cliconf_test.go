package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/bench"
	"github.com/switchboard-rt/switchboard/internal/relay"
)

// relay-cert refuses, before writing anything, when either target exists.
func TestRelayCertRefusesBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	require.NoError(t, writeFile(cert, "old cert"))
	code, _, stderr := runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, cert+" exists; use --force")
	require.NoFileExists(t, key, "no key for a certificate that was not written")
	requireContent(t, cert, "old cert")

	require.NoError(t, os.Remove(cert))
	require.NoError(t, writeFile(key, "old key"))
	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, key+" exists; use --force")
	require.NoFileExists(t, cert)
	requireContent(t, key, "old key")

	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", cert)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "same file")
}

// relay-cert refuses a validity browsers would not take and a host that
// is neither an IP address nor a DNS name, as usage errors saying why.
func TestRelayCertChecksValidityAndHosts(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--valid", "0s"}, "--valid: 0s: must be positive, at most 336h0m0s"},
		{[]string{"--valid=-1h"}, "--valid: -1h0m0s: must be positive"},
		{[]string{"--valid", "337h"}, "--valid: 337h0m0s is over 336h0m0s"},
		{[]string{"--host", "bad host!"}, `--host: "bad host!" is not an IP address or a DNS name`},
		{[]string{"--host=ok.example,-bad.example"}, `--host: "-bad.example" is not`},
		{[]string{"--host", "a..b"}, `--host: "a..b" is not`},
		{[]string{"--host", "*."}, `--host: "*." is not`},
	} {
		code, _, stderr := runCLI(t, append([]string{"relay-cert", "--cert", cert, "--key", key}, c.args...)...)
		require.Equal(t, 2, code, "%v: %s", c.args, stderr)
		require.Contains(t, stderr, c.want, "%v", c.args)
		require.NoFileExists(t, cert)
	}
	code, stdout, stderr := runCLI(t, "relay-cert", "--cert", cert, "--key", key, "--host", "game.example,*.game.example,10.0.0.1,::1,localhost")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "sha256: ")
}

// A write failing part way leaves no new file beside the old ones.
func TestRelayCertFailureLeavesNoHalfPair(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "relay.key")
	unwritable := filepath.Join(dir, "missing-dir", "relay.crt")
	code, _, _ := runCLI(t, "relay-cert", "--cert", unwritable, "--key", key)
	require.Equal(t, 1, code)
	require.NoFileExists(t, key)

	// --force over an existing pair: the old pair stays when the new one
	// cannot be written whole.
	cert := filepath.Join(dir, "relay.crt")
	code, _, stderr := runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 0, code, stderr)
	oldKey, err := os.ReadFile(key)
	require.NoError(t, err)
	code, _, _ = runCLI(t, "relay-cert", "--cert", cert, "--key", filepath.Join(dir, "missing-dir", "relay.key"), "--force")
	require.Equal(t, 1, code)
	requireContent(t, key, string(oldKey))
	requirePair(t, cert, key)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary files left: %v", entries)

	// --force replaces both.
	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", key, "--force")
	require.Equal(t, 0, code, stderr)
	newKey, err := os.ReadFile(key)
	require.NoError(t, err)
	require.NotEqual(t, oldKey, newKey)
	requirePair(t, cert, key)
}

// The certificate is public (0644), the key private (0600), with and
// without --force.
func TestRelayCertModes(t *testing.T) {
	umask := processUmask(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "r.crt"), filepath.Join(dir, "r.key")
	for _, args := range [][]string{{}, {"--force"}} {
		code, _, stderr := runCLI(t, append([]string{"relay-cert", "--cert", cert, "--key", key}, args...)...)
		require.Equal(t, 0, code, stderr)
		requireMode(t, cert, 0o644&^umask)
		requireMode(t, key, 0o600&^umask)
	}
}

// checkconfig reports, by key path and with exit status 2, what serve
// refuses; serve refuses it with status 2 too.
func TestCheckconfigRelayRules(t *testing.T) {
	dir := t.TempDir()
	certA, keyA, err := relay.GenerateCertificate(nil, time.Now(), 0)
	require.NoError(t, err)
	_, keyB, err := relay.GenerateCertificate(nil, time.Now(), 0)
	require.NoError(t, err)
	ca, ka, kb := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	require.NoError(t, os.WriteFile(ca, certA, 0o644))
	require.NoError(t, os.WriteFile(ka, keyA, 0o600))
	require.NoError(t, os.WriteFile(kb, keyB, 0o600))
	files := func(cert, key string) string {
		return `{"relay":{"enabled":true,"address":"127.0.0.1:0","cert_file":` + strconv.Quote(cert) + `,"key_file":` + strconv.Quote(key) + `}}`
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"address", `{"relay":{"enabled":true,"address":"nope"}}`, `relay.address: "nope" is not host:port`},
		{"queue limit", `{"relay":{"enabled":true,"queue_limit":100}}`, "relay.queue_limit: 100 is less than max_frame + 64 (65600 bytes)"},
		{"missing cert", files(filepath.Join(dir, "missing.crt"), ka), "relay.cert_file: open "},
		{"missing key", files(ca, filepath.Join(dir, "missing.key")), "relay.key_file: open "},
		{"mismatched pair", files(ca, kb), "and relay.key_file "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			require.NoError(t, writeFile(path, tc.doc))
			code, out, stderr := runCLI(t, "checkconfig", "-c", path)
			require.Equal(t, 2, code, "stdout: %s", out)
			require.Contains(t, stderr, tc.want)
			code, _, stderr = runCLI(t, "serve", "-c", path, "--port", "0")
			require.Equal(t, 2, code, stderr)
			require.Contains(t, stderr, tc.want)
		})
	}
	t.Run("a matching pair is valid", func(t *testing.T) {
		path := filepath.Join(dir, "good.json")
		require.NoError(t, writeFile(path, files(ca, ka)))
		code, out, stderr := runCLI(t, "checkconfig", "-c", path)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, out, "configuration is valid")
	})
}

// A relay setting refused when the relay starts (here one that Validate
// would catch first, given to Main directly) is a configuration error.
func TestRelayStartSettingErrorIsUsage(t *testing.T) {
	cfg := testConfig()
	cfg.Relay.Enabled, cfg.Relay.Address = true, "127.0.0.1:0"
	m := &Main{Config: cfg}
	require.NoError(t, m.Run(t.Context()))
	t.Cleanup(func() { require.NoError(t, m.Shutdown(context.Background())) })
	cfg.Relay.QueueLimit = 100
	err := m.startRelay(cfg, m.hub, nil, nil, nil, m.Logger)
	require.ErrorContains(t, err, "queue_limit")
	require.Equal(t, 2, exitStatus(err))
}

// A bad value from the environment is reported under the variable's name.
func TestCheckconfigNamesTheVariable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, writeFile(path, `{}`))
	t.Setenv("SWITCHBOARD_RELAY_AUTH", "tokn")
	code, _, stderr := runCLI(t, "checkconfig", "-c", path)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `SWITCHBOARD_RELAY_AUTH (relay.auth): "tokn" is not "none" or "token"`)
}

// serve's first line does not put an unversioned build's "dev" where it
// reads like --dev.
func TestListeningLine(t *testing.T) {
	l := listeningLine("dev", "http://127.0.0.1:8000", "ws://127.0.0.1:8000/connection/websocket")
	require.Equal(t, "switchboard listening on http://127.0.0.1:8000 (WebSocket ws://127.0.0.1:8000/connection/websocket; version dev)", l)
	require.NotContains(t, l, "switchboard dev")
}

// The bench command's help names every bench subcommand.
func TestBenchHelpListsSubcommands(t *testing.T) {
	f, ok := reflect.TypeOf(CLI{}).FieldByName("Bench")
	require.True(t, ok)
	help := f.Tag.Get("help")
	bt := reflect.TypeOf(bench.Cmd{})
	for i := range bt.NumField() {
		sf := bt.Field(i)
		if _, isCmd := sf.Tag.Lookup("cmd"); !isCmd {
			continue
		}
		name := sf.Tag.Get("name")
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		require.Contains(t, help, name, "bench %s", name)
	}
	code, out, _ := runCLI(t, "bench", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, strings.Join(strings.Fields(out), " "), "(conns, fanout, rpc, relay, scheduler, plot)") // kong wraps lines
}

func requireContent(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(got), path)
}

func requirePair(t *testing.T, cert, key string) {
	t.Helper()
	c, err := os.ReadFile(cert)
	require.NoError(t, err)
	k, err := os.ReadFile(key)
	require.NoError(t, err)
	_, err = relay.LoadCertificate(c, k)
	require.NoError(t, err, "the files on disk belong together")
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, st.Mode().Perm(), path)
}

// processUmask reads the umask from /proc (setting it to read it would
// race with other tests).
func processUmask(t *testing.T) os.FileMode {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			require.NoError(t, err)
			return os.FileMode(n)
		}
	}
	t.Skip("no Umask line in /proc/self/status")
	return 0
}

// --force whose key cannot replace its target (here a directory) puts
// the old certificate back: the old pair stays whole.
func TestRelayCertForceKeepsOldPairWhenKeyRenameFails(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "relay.crt"), filepath.Join(dir, "relay.key")
	code, _, stderr := runCLI(t, "relay-cert", "--cert", cert, "--key", key)
	require.Equal(t, 0, code, stderr)
	oldCert, err := os.ReadFile(cert)
	require.NoError(t, err)
	oldKey, err := os.ReadFile(key)
	require.NoError(t, err)
	// The key's place holds a non-empty directory: no rename can replace it.
	goodKey := filepath.Join(dir, "good.key")
	require.NoError(t, os.Rename(key, goodKey))
	require.NoError(t, os.MkdirAll(filepath.Join(key, "x"), 0o700))
	code, _, stderr = runCLI(t, "relay-cert", "--cert", cert, "--key", key, "--force")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "left as they were")
	requireContent(t, cert, string(oldCert))
	requireContent(t, goodKey, string(oldKey))
	requirePair(t, cert, goodKey)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary files left: %v", entries)
}

// --cert and --key naming one file by two paths (relative and absolute, or
// a link) is refused before anything is written.
func TestRelayCertSameFileByAlias(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	code, _, stderr := runCLI(t, "relay-cert", "--cert", "a.crt", "--key", filepath.Join(dir, "a.crt"), "--force")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "same file")
	require.NoFileExists(t, "a.crt")

	require.NoError(t, writeFile("b.crt", "x"))
	require.NoError(t, os.Symlink("b.crt", "link.key"))
	code, _, stderr = runCLI(t, "relay-cert", "--cert", "b.crt", "--key", "link.key", "--force")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "same file")
	requireContent(t, "b.crt", "x")
}

// keygen -o --force over a file others can read makes it private before
// writing the new key into it.
func TestKeygenForceMakesFilePrivate(t *testing.T) {
	umask := processUmask(t)
	path := filepath.Join(t.TempDir(), "k.pem")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
	require.NoError(t, os.Chmod(path, 0o644))
	code, _, stderr := runCLI(t, "keygen", "-o", path, "--force")
	require.Equal(t, 0, code, stderr)
	requireMode(t, path, 0o600&^umask)
}

// `bench` without its subcommand names every one (kong alone stops at
// five), and serve's help shows no -1 defaults for the ports.
func TestBenchListsEverySubcommandAndPortsHaveNoMinusOne(t *testing.T) {
	code, _, stderr := runCLI(t, "bench")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `expected one of "conns", "fanout", "rpc", "plot", "relay", "scheduler"`)
	require.NotContains(t, stderr, "...")

	code, stdout, _ := runCLI(t, "serve", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "--port=PORT")
	require.Contains(t, stdout, "--relay-port=PORT")
	require.NotContains(t, stdout, "=-1")
}
