package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testHash = "90452544ce5e488505ffec14551ea04cd39803d74edf86491e2b45349cfd9d08"

func examples(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", "workers")
}

func TestDeterministic(t *testing.T) {
	a, err := Chunk(testHash, nil, 3000, 50)
	require.NoError(t, err)
	b, err := Chunk(testHash, json.RawMessage(`{}`), 3000, 50)
	require.NoError(t, err)
	require.Equal(t, a, b)
	c, err := Chunk(testHash, nil, 4000, 50)
	require.NoError(t, err)
	require.NotEqual(t, a, c, "another seed offset gives another result")
	// Iterations are seeded one by one: chunking does not change them.
	x, _ := Chunk(testHash, nil, 3000, 25)
	y, _ := Chunk(testHash, nil, 3025, 25)
	require.Equal(t, a.MinDps, min(x.MinDps, y.MinDps))
	require.Equal(t, a.MaxDps, max(x.MaxDps, y.MaxDps))
	require.InEpsilon(t, a.MeanDps, (x.MeanDps+y.MeanDps)/2, 1e-12)
}

func TestJob(t *testing.T) {
	j, err := Job(testHash, nil, 2500)
	require.NoError(t, err)
	require.Equal(t, int64(2500), j.TotalIterations)
	require.Equal(t, 3, j.ChunksCompleted)
	// Defaults: 60 attacks, 95 % hits of 100 ± 10, 20 % crits ×2 → 114 DPS.
	require.InDelta(t, 114, j.MeanDps, 1)
	require.Greater(t, j.StdDps, 0.0)
}

func TestParseErrors(t *testing.T) {
	_, _, err := Parse(json.RawMessage(`{"duration":0}`))
	require.ErrorContains(t, err, "config.duration")
	_, _, err = Parse(json.RawMessage(`{"duration":1e9}`))
	require.ErrorContains(t, err, "attacks")
	_, err = SeedBase("xyz")
	require.Error(t, err)
}

// workerProc runs an example worker over the stdio protocol.
type workerProc struct {
	in  io.WriteCloser
	out *bufio.Scanner
	cmd *exec.Cmd
}

func startWorker(t *testing.T, argv ...string) *workerProc {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s is not installed: %v", argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = examples(t)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	w := &workerProc{in: in, out: bufio.NewScanner(out), cmd: cmd}
	t.Cleanup(func() {
		_ = in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	require.True(t, w.out.Scan())
	require.JSONEq(t, `{"type":"ready","tasks":["chunk"],"events":[]}`, w.out.Text())
	return w
}

func (w *workerProc) send(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	_, err = w.in.Write(append(b, '\n'))
	require.NoError(t, err)
}

// next returns the next line that is not a progress call; calls are
// checked and collected.
func (w *workerProc) next(t *testing.T, calls *[]string) map[string]json.RawMessage {
	t.Helper()
	for w.out.Scan() {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(w.out.Bytes(), &m), w.out.Text())
		if string(m["type"]) == `"call"` {
			*calls = append(*calls, w.out.Text())
			continue
		}
		return m
	}
	t.Fatal("worker closed stdout")
	return nil
}

// The Python and Node workers produce exactly the Go reference's results,
// report progress with calls, answer pings and bad input.
func TestWorkersMatchReference(t *testing.T) {
	cfg := json.RawMessage(`{"duration":30,"attacksPerSecond":2.5,"critChance":0.3,"critMultiplier":2.5,"baseDamage":80}`)
	cases := []struct {
		off, n int64
		config json.RawMessage
	}{{0, 1000, nil}, {7000, 250, cfg}, {123000, 1, cfg}}
	for _, argv := range [][]string{{"python3", "sim.py"}, {"node", "sim.mjs"}} {
		t.Run(argv[0], func(t *testing.T) {
			w := startWorker(t, argv...)
			for i, c := range cases {
				id := i + 1
				w.send(t, map[string]any{"type": "task", "id": id, "taskId": "chunk", "input": map[string]any{
					"id": fmt.Sprint("c", i), "jobId": "j", "leaseId": "l", "iterations": c.n, "configHash": testHash,
					"config": c.config, "seedOffset": c.off, "deadline": "2030-01-01T00:00:00Z"}})
				var calls []string
				m := w.next(t, &calls)
				require.Equal(t, fmt.Sprint(id), string(m["id"]))
				require.Equal(t, "true", string(m["ok"]), "reply %v", m)
				var got Result
				require.NoError(t, json.Unmarshal(m["result"], &got))
				want, err := Chunk(testHash, c.config, c.off, c.n)
				require.NoError(t, err)
				require.Equal(t, want, got, "chunk %d", i)
				require.Len(t, calls, int((c.n-1)/100))
				if len(calls) > 0 {
					require.Contains(t, calls[0], `"method":"progress"`)
					require.Contains(t, calls[0], `"done":100`)
				}
			}
			w.send(t, map[string]any{"type": "ping", "id": 50})
			var calls []string
			require.JSONEq(t, `{"id":50,"ok":true}`, mustJSON(t, w.next(t, &calls)))
			w.send(t, map[string]any{"type": "task", "id": 51, "taskId": "chunk", "input": map[string]any{
				"iterations": 5, "configHash": testHash, "config": map[string]any{"duration": "long"}}})
			m := w.next(t, &calls)
			require.Equal(t, "false", string(m["ok"]))
			require.Contains(t, string(m["error"]), "config.duration must be a finite number")
			w.send(t, map[string]any{"type": "task", "id": 52, "taskId": "other", "input": nil})
			m = w.next(t, &calls)
			require.Contains(t, string(m["error"]), "NOT_FOUND")
			w.send(t, map[string]any{"type": "shutdown", "id": 53})
			require.JSONEq(t, `{"id":53,"ok":true}`, mustJSON(t, w.next(t, &calls)))
		})
	}
}

func mustJSON(t *testing.T, m map[string]json.RawMessage) string {
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
