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

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol/circles"
	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

// Server is an in-process fake circle server for one circle, speaking the
// circles JSON-RPC 2.0 protocol over WebSocket at ws://127.0.0.1:PORT/{circle}:
// fetch_nonce and authenticate (with real secp256k1 signature verification by
// public-key recovery, package eip191; nonces are per connection, per public
// key, single-use and expire after 5 minutes), play, whoami, ping, and the
// standard JSON-RPC errors. Frames are decoded and answered with package
// protocol/circles, as the real server does.
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

// maxBatch bounds the requests of one batch frame.
const maxBatch = 1024

func (s *session) write(b []byte) { _ = s.ws.Write(s.ctx, websocket.MessageText, b) }

func (s *session) handleFrame(data []byte) {
	f := circles.DecodeFrame(data, maxBatch)
	if f.Fatal != nil {
		s.write(circles.EncodeResponse(nil, nil, f.Fatal))
		return
	}
	var out []json.RawMessage
	for i, r := range f.Requests {
		var resp json.RawMessage
		if f.Invalid[i] != nil {
			resp = circles.EncodeResponse(r.ID, nil, f.Invalid[i])
		} else {
			result, rerr, ok := s.handleOne(r)
			if !ok || r.IsNotification() {
				continue
			}
			resp = circles.EncodeResponse(r.ID, result, rerr)
		}
		if !f.Batch {
			s.write(resp)
			return
		}
		out = append(out, resp)
	}
	if len(out) > 0 {
		s.write(circles.EncodeBatch(out))
	}
}

// handleOne answers one valid request; ok is false when the answer is
// deferred or never sent.
func (s *session) handleOne(req circles.Request) (result any, rerr *circles.Error, ok bool) {
	fail := func(code int, data any) (any, *circles.Error, bool) { return nil, circles.NewError(code, data), true }
	s.f.callsMu.Lock()
	s.f.calls[req.Method]++
	s.f.callsMu.Unlock()
	switch req.Method {
	case circles.MethodFetchNonce:
		var p circles.FetchNonceParams
		if e := circles.DecodeParams(req.Params, &p, circles.FetchNonceParamNames...); e != nil {
			return nil, e, true
		}
		pk, err := parsePublicKey(p.PubKey)
		if err != nil {
			return fail(circles.CodeInvalidParams, err.Error())
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		n := nonceEntry{nonce: "nonce_" + hex.EncodeToString(b), expires: time.Now().Add(5 * time.Minute)}
		s.mu.Lock()
		s.nonces[hex.EncodeToString(pk.SerializeCompressed())] = n
		s.mu.Unlock()
		return circles.NonceResult{Nonce: n.nonce, ExpiresAt: n.expires.Unix()}, nil, true
	case circles.MethodAuthenticate:
		var p circles.AuthenticateParams
		if e := circles.DecodeParams(req.Params, &p, circles.AuthenticateParamNames...); e != nil {
			return nil, e, true
		}
		pk, err := parsePublicKey(p.PubKey)
		if err != nil {
			return fail(circles.CodeInvalidCredentials, nil)
		}
		id := hex.EncodeToString(pk.SerializeCompressed())
		s.mu.Lock()
		n, ok := s.nonces[id]
		delete(s.nonces, id) // consumed either way
		s.mu.Unlock()
		sig, err := hex.DecodeString(strings.TrimPrefix(p.Signature, "0x"))
		if !ok || err != nil || time.Now().After(n.expires) || !eip191.Verify(pk, []byte(n.nonce), sig) {
			return fail(circles.CodeInvalidCredentials, nil)
		}
		if s.f.allowed != nil && !s.f.allowed(pk) {
			return fail(circles.CodeInvalidCredentials, nil)
		}
		s.mu.Lock()
		s.authed = p.PubKey
		s.mu.Unlock()
		s.f.auths.Add(1)
		return circles.AuthenticateResult{Authenticated: true}, nil, true
	case circles.MethodWhoami:
		s.mu.Lock()
		var pub *string
		if s.authed != "" {
			a := s.authed
			pub = &a
		}
		s.mu.Unlock()
		return circles.WhoamiResult{Circle: s.f.circle, PubKey: pub}, nil, true
	case circles.MethodPing:
		return "pong", nil, true
	case circles.MethodPlay:
		var p circles.PlayParams
		if e := circles.DecodeParams(req.Params, &p, circles.PlayParamNames...); e != nil {
			return nil, e, true
		}
		if p.Script == "" {
			return fail(circles.CodeInvalidParams, "script is required")
		}
		s.mu.Lock()
		caller := s.authed
		s.mu.Unlock()
		if s.f.requireAuth && caller == "" {
			return fail(circles.CodeAuthRequired, nil)
		}
		script := p.Script
		switch {
		case script == "block":
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.f.blocked <- struct{}{}
				<-s.ctx.Done()
			}()
			return nil, nil, false
		case script == "freeze":
			s.f.blocked <- struct{}{}
			<-s.ctx.Done() // the read loop stops: pings go unanswered
			return nil, nil, false
		case script == "caller":
			return caller, nil, true
		case strings.HasPrefix(script, "echo:"):
			return strings.TrimPrefix(script, "echo:"), nil, true
		case strings.HasPrefix(script, "fail:"):
			return fail(circles.CodeExecution, strings.TrimPrefix(script, "fail:"))
		default:
			return "ran:" + script, nil, true
		}
	default:
		return fail(circles.CodeMethodNotFound, nil)
	}
}

// parsePublicKey parses a hex (optionally 0x-prefixed) compressed or
// uncompressed secp256k1 public key.
func parsePublicKey(h string) (*secp256k1.PublicKey, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(h, "0x"))
	if err != nil {
		return nil, err
	}
	return secp256k1.ParsePubKey(b)
}
