package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/clientproto"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
)

const (
	fakeSecret = "node-test-secret"
	fakeNodeID = "n1"
	fakeHash   = "90452544ce5e488505ffec14551ea04cd39803d74edf86491e2b45349cfd9d08"
)

// report is one request the node made to the fake node API.
type report struct {
	Path string
	Body map[string]json.RawMessage
}

// fakeServer is a real hub (memory broker, Centrifugo protocol over
// WebSocket) plus a hand-written node API that follows the issue's
// contract: signed requests checked, verify 404 until claimed, tokens
// whose channels claim subscribes the node server-side.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	hub *hub.Hub

	mu            sync.Mutex
	claimed       bool
	registers     int // POST /nodes/register calls
	limitRegister int // answer this many of them 429
	maxPar        int
	tokenTTL      time.Duration
	tokens        int
	assigned      []json.RawMessage
	reports       []report
	progress      map[string]int // status to answer /chunks/progress with; 0 = 200
	key           ed25519.PublicKey
	heartbeats    int
	seen          map[string]bool // signatures (the server's replay cache)
	assignedCalls int
	verifyCalls   int
	// drainGate, when set, holds the answer to a draining heartbeat until
	// it is closed; drainSeen is set when one arrives.
	drainGate chan struct{}
	drainSeen bool
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	broker := memory.New(time.Now)
	opts := hub.ChannelOptions{HistorySize: 1000, HistoryTTL: 24 * time.Hour, ForceRecovery: true}
	h, err := hub.New(hub.Config{Broker: broker, Presence: memory.NewPresence(), Logger: log,
		Namespaces: hub.Namespaces{Named: map[string]hub.ChannelOptions{
			"chunks": opts, "nodes": opts,
		}}})
	require.NoError(t, err)
	proto, err := clientproto.NewServer(clientproto.Config{Hub: h, Tokens: auth.NewTokenVerifier(fakeSecret, "", ""), Logger: log})
	require.NoError(t, err)
	wst, err := ws.New(ws.Config{Logger: log})
	require.NoError(t, err)
	f := &fakeServer{t: t, hub: h, tokenTTL: time.Hour, progress: map[string]int{}, maxPar: 4, seen: map[string]bool{}}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", proto.WebSocketHandler(wst))
	mux.HandleFunc("/", f.serveNodeAPI)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = wst.Shutdown(ctx)
		proto.Close()
		f.srv.Close()
		_ = h.Shutdown(ctx)
		_ = broker.Close(ctx)
	})
	return f
}

func (f *fakeServer) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// verify checks the request signature independently of sign.go.
func (f *fakeServer) verify(r *http.Request, body []byte) error {
	pub, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Node-Key"))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("bad key")
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Node-Sig"))
	if err != nil {
		return fmt.Errorf("bad sig")
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-Node-Ts"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 300*time.Second {
		return fmt.Errorf("bad ts")
	}
	sum := sha256.Sum256(body)
	msg := r.Header.Get("X-Node-Ts") + "\x00" + r.Method + "\x00" + r.URL.Path + "\x00" + hex.EncodeToString(sum[:])
	if !ed25519.Verify(pub, []byte(msg), sig) {
		return fmt.Errorf("Invalid signature")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen[string(sig)] {
		return fmt.Errorf("Replayed signature")
	}
	f.seen[string(sig)] = true
	if f.key != nil && !f.key.Equal(ed25519.PublicKey(pub)) {
		return fmt.Errorf("another key")
	}
	f.key = pub
	return nil
}

func (f *fakeServer) serveNodeAPI(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := f.verify(r, body); err != nil {
		f.t.Errorf("node API %s %s: %v", r.Method, r.URL.Path, err)
		f.reply(w, 401, map[string]string{"error": err.Error()})
		return
	}
	var m map[string]json.RawMessage
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			f.reply(w, 400, map[string]string{"error": "invalid JSON"})
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info := map[string]any{"id": fakeNodeID, "name": "test node", "maxParallel": f.maxPar, "status": "online"}
	switch r.Method + " " + r.URL.Path {
	case "POST /nodes/register":
		f.registers++
		f.reports = append(f.reports, report{Path: r.URL.Path, Body: m})
		if f.limitRegister > 0 {
			f.limitRegister--
			w.Header().Set("Retry-After", "1")
			f.reply(w, 429, map[string]string{"error": "too many registrations from this address; retry later"})
			return
		}
		code := any("MW3AM4")
		if f.claimed {
			code = nil
		}
		f.reply(w, 200, map[string]any{"id": fakeNodeID, "claimCode": code, "claimed": f.claimed})
	case "POST /nodes/verify":
		f.verifyCalls++
		if !f.claimed {
			f.reply(w, 404, map[string]string{"error": "Node not found or not claimed"})
			return
		}
		f.reply(w, 200, info)
	case "POST /nodes/heartbeat":
		f.heartbeats++
		f.reports = append(f.reports, report{Path: r.URL.Path, Body: m})
		if gate := f.drainGate; gate != nil && string(m["draining"]) == "true" {
			f.drainSeen = true
			f.mu.Unlock()
			<-gate
			f.mu.Lock()
		}
		f.reply(w, 200, info)
	case "POST /nodes/token":
		f.tokens++
		chans := []string{"nodes:" + fakeNodeID, "chunks:" + fakeNodeID}
		exp := time.Now().Add(f.tokenTTL)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": fakeNodeID, "exp": exp.Unix(), "channels": chans}).SignedString([]byte(fakeSecret))
		require.NoError(f.t, err)
		f.reply(w, 200, map[string]any{"token": tok, "url": "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/connection/websocket",
			"expiresAt": exp.UTC().Format(time.RFC3339), "channels": chans})
	case "GET /chunks/assigned":
		f.assignedCalls++
		f.reply(w, 200, map[string]any{"chunks": f.assigned})
	case "POST /chunks/progress":
		f.reports = append(f.reports, report{Path: r.URL.Path, Body: m})
		var id string
		_ = json.Unmarshal(m["chunkId"], &id)
		if s := f.progress[id]; s != 0 {
			f.reply(w, s, map[string]string{"error": "lease lost"})
			return
		}
		f.reply(w, 200, map[string]any{"success": true})
	case "POST /chunks/complete":
		f.reports = append(f.reports, report{Path: r.URL.Path, Body: m})
		f.reply(w, 200, map[string]any{"success": true, "jobComplete": false})
	case "POST /chunks/fail":
		f.reports = append(f.reports, report{Path: r.URL.Path, Body: m})
		f.reply(w, 200, map[string]any{"success": true})
	default:
		f.reply(w, 404, map[string]string{"error": "no route " + r.Method + " " + r.URL.Path})
	}
}

func (f *fakeServer) claim() {
	f.mu.Lock()
	f.claimed = true
	f.mu.Unlock()
}

// of returns the reports to path, in order.
func (f *fakeServer) of(path string) []report {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []report
	for _, r := range f.reports {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeServer) publish(t *testing.T, channel string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	_, err = f.hub.Publish(context.Background(), channel, b, nil, nil)
	require.NoError(t, err)
}

// chunkMsg is a chunk assignment for the sim worker.
func chunkMsg(id, lease string, iterations, seedOffset int, config map[string]any, deadline time.Duration) map[string]any {
	return map[string]any{"id": id, "jobId": "j1", "leaseId": lease, "iterations": iterations, "configHash": fakeHash,
		"config": config, "seedOffset": seedOffset, "deadline": time.Now().Add(deadline).UTC().Format(time.RFC3339Nano)}
}

func simWorker(t *testing.T) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return []string{"python3", filepath.Join(filepath.Dir(file), "..", "..", "examples", "workers", "sim.py")}
}

// startNode runs a node against f; it is shut down with the test.
func startNode(t *testing.T, f *fakeServer, mod func(*Config)) (*Node, *testenv.Buffer) {
	t.Helper()
	requirePython(t)
	_, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	out := &testenv.Buffer{}
	logs := &testenv.Buffer{}
	cfg := Config{Server: f.srv.URL, Key: key, Worker: simWorker(t), Parallel: 2, Out: out,
		HeartbeatInterval: 100 * time.Millisecond, ProgressInterval: 100 * time.Millisecond,
		ClaimPollMin: 10 * time.Millisecond, ClaimPollMax: 50 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		require.NoError(t, n.Shutdown(ctx))
		require.NoError(t, <-runErr)
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})
	return n, out
}

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skipf("python3 is not installed (%v): the node tests run the Python example worker", err)
	}
}

// connected waits until the node's hub connection is subscribed to its
// chunk channel.
func (f *fakeServer) connected(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		return f.hub.Channels()["chunks:"+fakeNodeID] == 1
	}, testenv.Wait, testenv.Tick, "node subscribed server-side to chunks:%s", fakeNodeID)
}

func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(nil)
}
