package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/sandbox"

	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// execMainEnv makes the test binary act as the switchboard binary: tests
// re-execute themselves with it to run the real main (signals, exit status,
// standard streams) without a separate go build.
const execMainEnv = "SWITCHBOARD_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	// The sandbox pool of a Main under test starts this test binary as its
	// sandbox processes.
	if os.Getenv(sandbox.EnvConfig) != "" {
		os.Exit(run([]string{"sandbox-worker"}, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// program is a running switchboard process started by startProgram.
type program struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr *testenv.Buffer
	exited chan struct{} // closed when the process has exited
}

// startProgram runs the switchboard command line args in a child process
// whose environment has no SWITCHBOARD_* settings, so only args apply, in
// a temporary working directory. The
// process gets SIGTERM (then SIGKILL) at the end of the test.
func startProgram(t *testing.T, args ...string) *program {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = t.TempDir() // relative paths (circles.data_dir ./data) stay out of the tree
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWITCHBOARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, execMainEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &program{cmd: cmd, lines: make(chan string, 256), stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() { // owned by the process: ends at its stdout's EOF
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// readUntil collects stdout lines until one satisfies stop (included).
func (p *program) readUntil(t *testing.T, stop func(string) bool) []string {
	t.Helper()
	var got []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("program exited early; stdout %q, stderr %s", got, p.stderr.String())
			}
			got = append(got, l)
			if stop(l) {
				return got
			}
		case <-timeout:
			t.Fatalf("timeout reading stdout; got %q", got)
		}
	}
}

// stop sends SIGTERM and returns the exit status.
func (p *program) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("program did not stop on SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}
