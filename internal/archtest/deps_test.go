package archtest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/switchboard-rt/switchboard"

// core lists the packages that must stay free of transports, drivers and
// adapters: they declare interfaces, adapters implement them.
var core = []string{
	"internal/hub",
	"internal/auth",
	"internal/worker",
	"internal/script",
	"internal/delivery",
	"internal/errs",
	"internal/clock",
	"internal/scheduler",
}

// forbidden are import path prefixes no core package may depend on,
// directly or indirectly.
var forbidden = []string{
	"github.com/lxzan/gws",
	"github.com/coder/websocket",
	"github.com/gorilla/websocket",
	"github.com/redis/rueidis",
	"modernc.org/sqlite",
	"github.com/jackc/pgx",
	"github.com/quic-go/",
	module + "/internal/transport",
	module + "/internal/api",
	module + "/internal/gateway",
	module + "/internal/circle",
	module + "/internal/clientproto",
	module + "/internal/broker/",
	module + "/internal/store",
	module + "/internal/config",
	module + "/cmd",
}

// forbiddenDirect may not be imported by a core package itself (metrics
// libraries pull net/http in indirectly, which is fine).
var forbiddenDirect = []string{"net/http"}

func TestCoreImportsNoAdapter(t *testing.T) {
	for _, pkg := range core {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-e", "-f", "{{if .Error}}{{.Error}}{{end}}", "./../../"+pkg).CombinedOutput()
			if err != nil || strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "cannot find") || strings.Contains(string(out), "directory not found") {
				t.Skipf("%s does not exist (yet): %s", pkg, strings.TrimSpace(string(out)))
			}
			deps, err := exec.Command("go", "list", "-deps", "./../../"+pkg).Output()
			require.NoError(t, err, "go list -deps %s", pkg)
			imports, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", "./../../"+pkg).Output()
			require.NoError(t, err, "go list -f {{.Imports}} %s", pkg)
			for _, imp := range strings.Fields(string(imports)) {
				for _, bad := range forbiddenDirect {
					if imp == bad {
						t.Errorf("%s imports %s: the core speaks no transport; an adapter does", pkg, imp)
					}
				}
			}
			for _, dep := range strings.Fields(string(deps)) {
				for _, bad := range forbidden {
					if dep == bad || strings.HasPrefix(dep, bad) && (strings.HasSuffix(bad, "/") || strings.HasPrefix(dep, bad+"/")) {
						t.Errorf("%s depends on %s: declare an interface in the core and implement it in an adapter", pkg, dep)
					}
				}
			}
		})
	}
}
