package client_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchboard-rt/switchboard/client/circletest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// TestWasmUnderNode builds testdata/wasmsmoke for GOOS=js GOARCH=wasm and runs
// it with Node (whose WebSocket stands in for the browser's) against the fake
// server: authentication, keep-alive by whoami, reconnection with
// re-authentication after the server drops the connection.
func TestWasmUnderNode(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: skipping the js/wasm build")
	}
	if runtime.GOOS == "js" {
		t.Skip("already under js")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: skipping the js/wasm smoke test")
	}
	if out, err := exec.Command(node, "--experimental-websocket", "-e", "if (typeof WebSocket !== 'function') process.exit(3)").CombinedOutput(); err != nil {
		t.Skipf("node lacks a WebSocket client (%v %s): skipping", err, out)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found: skipping")
	}
	gorootOut, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(gorootOut))
	execJS := filepath.Join(goroot, "lib", "wasm", "wasm_exec_node.js")
	if _, err := os.Stat(execJS); err != nil {
		t.Skipf("no %s: skipping", execJS)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "smoke.wasm")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./testdata/wasmsmoke")
	var flags []string // GOFLAGS minus what js/wasm rejects (-race, -msan, -asan)
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if f != "-race" && f != "-msan" && f != "-asan" {
			flags = append(flags, f)
		}
	}
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS="+strings.Join(flags, " "))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("wasm build: %v\n%s", err, out)
	}

	srv := circletest.NewServer(t)
	key := mustKey(t)
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", execJS, bin)
	cmd.Env = append(os.Environ(), "SMOKE_URL="+srv.URL(), "SMOKE_KEY="+key.Hex())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("wasm program ended early: %v", lines.Err())
		}
		return lines.Text()
	}

	if got := next(); got != "first "+key.PublicKeyUncompressed() {
		t.Fatalf("first line %q", got)
	}
	// Keep-alive under wasm is a whoami round trip, not a ping frame.
	require.Eventually(t, func() bool { return srv.Calls("whoami") >= 3 }, 30*time.Second, testenv.Tick, "whoami keep-alives")
	srv.DropAll()
	if got := next(); got != "second "+key.PublicKeyUncompressed() {
		t.Fatalf("second line %q", got)
	}
	if got := next(); got != "closed closed" {
		t.Fatalf("third line %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wasm program: %v", err)
	}
	if srv.Auths() < 2 {
		t.Fatalf("auths = %d, want a re-authentication", srv.Auths())
	}
}
