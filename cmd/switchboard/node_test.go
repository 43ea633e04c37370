package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Usage errors of `switchboard node` name the flag and exit with 2.
func TestNodeCommandUsage(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	require.NoError(t, os.WriteFile(open, []byte("x"), 0o644))
	require.NoError(t, os.Chmod(open, 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "--worker", "true"}, "--server"},
		{[]string{"node", "--server", "http://127.0.0.1:1", "--worker", "no-such-worker-command x.py"}, `--worker: exec: "no-such-worker-command": executable file not found`},
		{[]string{"node", "--server", "http://127.0.0.1:1"}, "--worker"},
		{[]string{"node", "--server", "http://127.0.0.1:1", "--worker", `"unterminated`}, "--worker"},
		{[]string{"node", "--server", "http://127.0.0.1:1", "--worker", "true", "--parallel", "-2"}, "--parallel"},
		{[]string{"node", "--server", "http://127.0.0.1:1", "--worker", "true", "--grace", "0s"}, "--grace"},
		{[]string{"node", "--server", "http://127.0.0.1:1", "--worker", "true", "--key-file", open}, "mode 0644"},
		{[]string{"node", "--server", "ftp://x", "--worker", "true", "--key-file", filepath.Join(dir, "new.key")}, "http://HOST:PORT"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want, "%v", tc.args)
	}
	st, err := os.Stat(filepath.Join(dir, "new.key"))
	require.NoError(t, err, "the key is created before the server URL is checked")
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}
