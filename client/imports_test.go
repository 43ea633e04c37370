package client_test

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestImportsOnlyProtocol: the SDK and its fake server depend on no
// internal package of this module, only on the public protocol/ packages,
// natively and under js/wasm.
func TestImportsOnlyProtocol(t *testing.T) {
	if runtime.GOOS == "js" {
		t.Skip("no go command under js")
	}
	for _, env := range [][]string{nil, {"GOOS=js", "GOARCH=wasm"}} {
		cmd := exec.Command("go", "list", "-deps", "./...")
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", env, err, out)
		}
		for _, pkg := range strings.Fields(string(out)) {
			rest, ok := strings.CutPrefix(pkg, "github.com/switchboard-rt/switchboard/")
			if ok && !strings.HasPrefix(rest, "client") && !strings.HasPrefix(rest, "protocol/") {
				t.Errorf("%v: client depends on %s", env, pkg)
			}
		}
	}
}
