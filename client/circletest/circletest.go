// Package circletest provides an in-process fake circle server for testing
// code built on package client, in the spirit of net/http/httptest.
package circletest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/switchboard-rt/switchboard/client"
)

// Server is an in-process fake circle server for one circle, speaking the
// circles JSON-RPC 2.0 protocol over WebSocket at ws://127.0.0.1:PORT/{circle}:
// fetch_nonce and authenticate (with real secp256k1 signature verification by
// public-key recovery; nonces are per connection, per public key, single-use
// and expire after 5 minutes), play, whoami, and the standard JSON-RPC errors.
// Other paths get HTTP 404 before any upgrade. Scripts given to play have
// test meanings instead of being run:
//
//	"echo:X"  returns X
//	"fail:X"  fails with -32000 "Execution Error" and data X
//	"caller"  returns the authenticated public key as sent ("" if none)
//	"block"   never answers; a value is sent on Blocked, and the call stays
//	          pending until the connection ends
//	"freeze"  stops reading the connection (so pings go unanswered) until it
//	          ends; a value is sent on Blocked
//	other     returns "ran:" + script
//
// Methods are safe for concurrent use.
type Server struct {
	tb          testing.TB
	circle      string
	requireAuth bool
	allowed     func(pubkey *secp256k1.PublicKey) bool // nil allows every key

	auths   atomic.Int64 // successful authentications, across restarts
	accepts atomic.Int64 // WebSocket sessions accepted, across restarts
	pings   atomic.Int64 // WebSocket ping frames received, across restarts
	callsMu sync.Mutex
	calls   map[string]int // requests received by method, across restarts
	blocked chan struct{}

	mu      sync.Mutex
	addr    string
	srv     *http.Server
	stopped bool
	conns   map[*websocket.Conn]context.CancelFunc
	wg      sync.WaitGroup
}

// Option configures a Server.
type Option func(*Server)

// WithoutAuth lets play run without authentication (the server runs without
// --enable-auth).
func WithoutAuth() Option { return func(f *Server) { f.requireAuth = false } }

// WithAllowed makes authenticate fail with -32002 for public keys for which
// fn returns false, after the signature itself was verified.
func WithAllowed(fn func(*secp256k1.PublicKey) bool) Option {
	return func(f *Server) { f.allowed = fn }
}

// WithCircle sets the circle key served (by default a fresh random
// compressed public key).
func WithCircle(key string) Option { return func(f *Server) { f.circle = key } }

// NewServer starts a Server on a random loopback port. Unless WithoutAuth is
// given, play requires authentication. The server is stopped by tb.Cleanup.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	k, err := client.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	f := &Server{
		tb:          tb,
		circle:      k.PublicKeyCompressed(),
		requireAuth: true,
		blocked:     make(chan struct{}, 64),
		calls:       make(map[string]int),
	}
	for _, o := range opts {
		o(f)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.serve(ln)
	tb.Cleanup(f.Stop)
	return f
}

// URL returns the circle endpoint, ws://ADDR/CIRCLE.
func (f *Server) URL() string { return "ws://" + f.Addr() + "/" + f.circle }

// Addr returns the listening host:port (unchanged by Restart).
func (f *Server) Addr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr
}

// Circle returns the circle key served.
func (f *Server) Circle() string { return f.circle }

// Auths returns the number of successful authentications since NewServer,
// across restarts.
func (f *Server) Auths() int64 { return f.auths.Load() }

// Accepts returns the number of WebSocket sessions accepted since NewServer,
// across restarts.
func (f *Server) Accepts() int64 { return f.accepts.Load() }

// Pings returns the number of WebSocket ping frames received.
func (f *Server) Pings() int64 { return f.pings.Load() }

// Calls returns how many requests for method were received.
func (f *Server) Calls(method string) int {
	f.callsMu.Lock()
	defer f.callsMu.Unlock()
	return f.calls[method]
}

// Blocked receives a value each time a "block" or "freeze" script starts.
func (f *Server) Blocked() <-chan struct{} { return f.blocked }

func (f *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(f.handle)}
	f.mu.Lock()
	f.addr = ln.Addr().String()
	f.srv = srv
	f.stopped = false
	f.conns = make(map[*websocket.Conn]context.CancelFunc)
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// Stop closes the listener and every session and waits for all server
// goroutines. It is idempotent.
func (f *Server) Stop() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	srv := f.srv
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	_ = srv.Close()
	for ws, cancel := range conns {
		cancel()
		_ = ws.CloseNow()
	}
	f.wg.Wait()
}

// Restart stops the server (dropping every session) and starts a new one on
// the same address, as a server process restart would. Authentication state
// is lost; counters are kept.
func (f *Server) Restart() {
	f.tb.Helper()
	f.Stop()
	addr := f.Addr()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			f.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			f.tb.Fatalf("circletest: relisten on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // polling for the port to free up
	}
}

// DropAll closes every session abruptly, leaving the listener up.
func (f *Server) DropAll() {
	f.mu.Lock()
	conns := f.conns
	f.conns = make(map[*websocket.Conn]context.CancelFunc)
	f.mu.Unlock()
	for ws, cancel := range conns {
		cancel()
		_ = ws.CloseNow()
	}
}

func (f *Server) handle(w http.ResponseWriter, r *http.Request) {
	if strings.TrimPrefix(r.URL.Path, "/") != f.circle {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"Circle not found"}`))
		return
	}
	ws, err := websocket.Accept(w, r, f.acceptOptions())
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		cancel()
		_ = ws.CloseNow()
		return
	}
	f.conns[ws] = cancel
	f.wg.Add(1)
	f.mu.Unlock()
	f.accepts.Add(1)
	defer f.wg.Done()
	defer cancel()
	defer ws.CloseNow()

	st := &session{f: f, ws: ws, ctx: ctx, nonces: make(map[string]nonceEntry)}
	defer st.wg.Wait()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return
		}
		st.handleFrame(data)
	}
}

type nonceEntry struct {
	nonce   string
	expires time.Time
}

type session struct {
	f   *Server
	ws  *websocket.Conn
	ctx context.Context
	wg  sync.WaitGroup

	mu     sync.Mutex
	nonces map[string]nonceEntry // by compressed pubkey hex
	authed string                // pubkey as sent, "" if none
}

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

func (s *session) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.f.tb.Errorf("fake server: marshal: %v", err)
		return
	}
	_ = s.ws.Write(s.ctx, websocket.MessageText, data)
}

func (s *session) handleFrame(data []byte) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		var batch []json.RawMessage
		if err := json.Unmarshal(data, &batch); err != nil || len(batch) == 0 {
			s.write(response{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: &rpcError{Code: -32700, Message: "Parse error"}})
			return
		}
		var out []response
		for _, raw := range batch {
			if r, ok := s.handleOne(raw); ok {
				out = append(out, r)
			}
		}
		if len(out) > 0 {
			s.write(out)
		}
		return
	}
	if r, ok := s.handleOne(data); ok {
		s.write(r)
	}
}

// handleOne answers one request; ok is false when the answer is deferred or
// never sent.
func (s *session) handleOne(raw []byte) (response, bool) {
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return response{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: &rpcError{Code: -32700, Message: "Parse error"}}, true
	}
	if len(req.ID) == 0 {
		req.ID = json.RawMessage("null")
	}
	resp := response{JSONRPC: "2.0", ID: req.ID}
	fail := func(code int, msg string, data any) (response, bool) {
		resp.Error = &rpcError{Code: code, Message: msg, Data: data}
		return resp, true
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		return fail(-32600, "Invalid Request", nil)
	}
	s.f.callsMu.Lock()
	s.f.calls[req.Method]++
	s.f.callsMu.Unlock()
	switch req.Method {
	case "fetch_nonce":
		var p struct {
			PubKey string `json:"pubkey"`
		}
		if json.Unmarshal(req.Params, &p) != nil {
			return fail(-32602, "Invalid params", nil)
		}
		pk, err := ParsePublicKey(p.PubKey)
		if err != nil {
			return fail(-32602, "Invalid params", err.Error())
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		n := nonceEntry{nonce: "nonce_" + hex.EncodeToString(b), expires: time.Now().Add(5 * time.Minute)}
		s.mu.Lock()
		s.nonces[hex.EncodeToString(pk.SerializeCompressed())] = n
		s.mu.Unlock()
		resp.Result = map[string]any{"nonce": n.nonce, "expires_at": n.expires.Unix()}
		return resp, true
	case "authenticate":
		var p struct {
			PubKey    string `json:"pubkey"`
			Signature string `json:"signature"`
		}
		if json.Unmarshal(req.Params, &p) != nil {
			return fail(-32602, "Invalid params", nil)
		}
		pk, err := ParsePublicKey(p.PubKey)
		if err != nil {
			return fail(-32002, "Invalid Credentials", nil)
		}
		id := hex.EncodeToString(pk.SerializeCompressed())
		s.mu.Lock()
		n, ok := s.nonces[id]
		delete(s.nonces, id) // consumed either way
		s.mu.Unlock()
		if !ok || time.Now().After(n.expires) || !VerifyPersonal(pk, n.nonce, p.Signature) {
			return fail(-32002, "Invalid Credentials", nil)
		}
		if s.f.allowed != nil && !s.f.allowed(pk) {
			return fail(-32002, "Invalid Credentials", nil)
		}
		s.mu.Lock()
		s.authed = p.PubKey
		s.mu.Unlock()
		s.f.auths.Add(1)
		resp.Result = map[string]bool{"authenticated": true}
		return resp, true
	case "whoami":
		s.mu.Lock()
		var pub any
		if s.authed != "" {
			pub = s.authed
		}
		s.mu.Unlock()
		resp.Result = map[string]any{"circle": s.f.circle, "pubkey": pub}
		return resp, true
	case "play":
		var p struct {
			Script *string `json:"script"`
		}
		if json.Unmarshal(req.Params, &p) != nil || p.Script == nil {
			return fail(-32602, "Invalid params", nil)
		}
		s.mu.Lock()
		caller := s.authed
		s.mu.Unlock()
		if s.f.requireAuth && caller == "" {
			return fail(-32001, "Authentication Required", nil)
		}
		script := *p.Script
		switch {
		case script == "block":
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.f.blocked <- struct{}{}
				<-s.ctx.Done()
			}()
			return resp, false
		case script == "freeze":
			s.f.blocked <- struct{}{}
			<-s.ctx.Done() // the read loop stops: pings go unanswered
			return resp, false
		case script == "caller":
			resp.Result = caller
		case strings.HasPrefix(script, "echo:"):
			resp.Result = strings.TrimPrefix(script, "echo:")
		case strings.HasPrefix(script, "fail:"):
			return fail(-32000, "Execution Error", strings.TrimPrefix(script, "fail:"))
		default:
			resp.Result = "ran:" + script
		}
		return resp, true
	default:
		return fail(-32601, "Method not found", nil)
	}
}

// ParsePublicKey parses a hex (optionally 0x-prefixed) compressed or
// uncompressed secp256k1 public key.
func ParsePublicKey(h string) (*secp256k1.PublicKey, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(h, "0x"))
	if err != nil {
		return nil, err
	}
	return secp256k1.ParsePubKey(b)
}

// VerifyPersonal checks an Ethereum personal-sign signature (r‖s‖v hex, v in
// {27,28} or {0,1}) over nonce by recovering the public key.
func VerifyPersonal(pk *secp256k1.PublicKey, nonce, sigHex string) bool {
	sig, err := hex.DecodeString(strings.TrimPrefix(sigHex, "0x"))
	if err != nil || len(sig) != 65 {
		return false
	}
	v := sig[64]
	if v < 27 {
		v += 27
	}
	if v != 27 && v != 28 {
		return false
	}
	compact := append([]byte{v}, sig[:64]...)
	got, _, err := ecdsa.RecoverCompact(compact, client.PersonalMessageHash([]byte(nonce)))
	if err != nil {
		return false
	}
	return got.IsEqual(pk)
}
