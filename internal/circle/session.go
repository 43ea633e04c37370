package circle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// session is one WebSocket connection to one circle; it is the
// connection's ws.Session.
type session struct {
	s      *Server
	id     uint64
	circle string
	conn   *ws.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // frame goroutines (plays)

	mu       sync.Mutex
	pubkey   auth.PublicKey // zero until authenticated
	inflight int
}

func newSession(s *Server, circle string) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{s: s, id: s.nextID.Add(1), circle: circle, ctx: ctx, cancel: cancel}
}

// open is the session's ws.Options.Open.
func (sess *session) open(c *ws.Conn) ws.Session {
	sess.conn = c
	sess.s.mu.Lock()
	sess.s.sessions[sess] = struct{}{}
	sess.s.mu.Unlock()
	sess.s.m.connections.Inc()
	sess.s.log.Debug("circle connection opened", "circle", sess.circle, "conn", sess.id)
	return sess
}

// OnMessage answers one text frame (the transport refuses binary ones).
func (sess *session) OnMessage(data []byte) { sess.handleFrame(data) }

// OnClose cuts the session's plays, waits for them and forgets the
// session.
func (sess *session) OnClose() {
	sess.cancel()
	sess.wg.Wait()
	sess.s.nonces.DropConn(sess.id)
	sess.s.mu.Lock()
	delete(sess.s.sessions, sess)
	sess.s.mu.Unlock()
	sess.s.conns.Add(-1)
	sess.s.m.connections.Dec()
	sess.s.log.Debug("circle connection closed", "circle", sess.circle, "conn", sess.id)
}

// handleFrame answers one frame. Frames without plays are answered inline,
// in order; frames with plays run in a goroutine owned by the session.
func (sess *session) handleFrame(data []byte) {
	f := circles.DecodeFrame(data, sess.s.cfg.MaxBatch)
	if f.Fatal != nil {
		sess.s.m.requests.WithLabelValues("invalid", fmt.Sprint(f.Fatal.Code)).Inc()
		sess.write(circles.EncodeResponse(nil, nil, f.Fatal))
		return
	}
	hasPlay := false
	for i, r := range f.Requests {
		if f.Invalid[i] == nil && r.Method == circles.MethodPlay {
			hasPlay = true
		}
	}
	if !hasPlay {
		sess.answer(f, false)
		return
	}
	sess.mu.Lock()
	full := sess.inflight >= sess.s.cfg.MaxInflight
	if !full {
		sess.inflight++
	}
	sess.mu.Unlock()
	if full {
		sess.answer(f, true)
		return
	}
	sess.wg.Add(1)
	go func() {
		defer sess.wg.Done()
		defer func() {
			sess.mu.Lock()
			sess.inflight--
			sess.mu.Unlock()
		}()
		defer func() {
			if r := recover(); r != nil {
				sess.s.log.Error("circle play handler panicked", "panic", fmt.Sprint(r))
			}
		}()
		sess.answer(f, false)
	}()
}

// answer runs the frame's requests in order and writes the response(s).
func (sess *session) answer(f circles.Frame, rejectPlays bool) {
	var out []json.RawMessage
	for i, r := range f.Requests {
		var resp json.RawMessage
		if f.Invalid[i] != nil {
			sess.s.m.requests.WithLabelValues("invalid", fmt.Sprint(f.Invalid[i].Code)).Inc()
			resp = circles.EncodeResponse(r.ID, nil, f.Invalid[i])
		} else {
			var result any
			var rerr *circles.Error
			if rejectPlays && r.Method == circles.MethodPlay {
				rerr = rpcError(errs.New(errs.LimitExceeded, fmt.Sprintf("more than %d plays in flight on this connection", sess.s.cfg.MaxInflight)))
			} else {
				result, rerr = sess.call(r)
			}
			code := "0"
			if rerr != nil {
				code = fmt.Sprint(rerr.Code)
			}
			sess.s.m.requests.WithLabelValues(methodLabel(r.Method), code).Inc()
			if r.IsNotification() {
				continue
			}
			resp = circles.EncodeResponse(r.ID, result, rerr)
		}
		if sess.ctx.Err() != nil {
			return // connection gone
		}
		if !f.Batch {
			sess.write(resp)
			return
		}
		out = append(out, resp)
	}
	if f.Batch && len(out) > 0 {
		sess.write(circles.EncodeBatch(out))
	}
}

func methodLabel(m string) string {
	switch m {
	case circles.MethodFetchNonce, circles.MethodAuthenticate, circles.MethodPlay, circles.MethodWhoami, circles.MethodPing:
		return m
	}
	return "unknown"
}

// write sends one response; a failed write drops the connection.
func (sess *session) write(b []byte) {
	if err := sess.conn.Write(b); err != nil {
		sess.s.log.Debug("circle write failed", "conn", sess.id, "err", err)
	}
}

func (sess *session) call(r circles.Request) (any, *circles.Error) {
	switch r.Method {
	case circles.MethodFetchNonce:
		return sess.fetchNonce(r.Params)
	case circles.MethodAuthenticate:
		return sess.authenticate(r.Params)
	case circles.MethodPlay:
		return sess.play(r.Params)
	case circles.MethodWhoami:
		return sess.whoami()
	case circles.MethodPing:
		return "pong", nil
	}
	return nil, rpcError(&errs.Error{Code: errs.NotFound})
}

func (sess *session) fetchNonce(params json.RawMessage) (any, *circles.Error) {
	var p circles.FetchNonceParams
	if err := circles.DecodeParams(params, &p, circles.FetchNonceParamNames...); err != nil {
		return nil, err
	}
	if p.PubKey == "" {
		return nil, rpcError(errs.New(errs.Invalid, "pubkey is required"))
	}
	pk, err := auth.ParsePublicKey(p.PubKey)
	if err != nil {
		return nil, rpcError(errs.New(errs.Invalid, "pubkey is not a secp256k1 (66 or 130 hex) or ed25519 (64 hex) public key"))
	}
	nonce, exp, err := sess.s.nonces.Issue(auth.NonceBinding{Conn: sess.id, Circle: sess.circle, PubKey: pk.String()})
	if errors.Is(err, auth.ErrNonceLimit) {
		return nil, rpcError(errs.New(errs.LimitExceeded, "too many outstanding nonces"))
	}
	if err != nil {
		sess.s.log.Error("circle nonce issue failed", "err", err)
		return nil, rpcError(err)
	}
	return circles.NonceResult{Nonce: nonce, ExpiresAt: exp.Unix()}, nil
}

func (sess *session) authenticate(params json.RawMessage) (any, *circles.Error) {
	var p circles.AuthenticateParams
	if err := circles.DecodeParams(params, &p, circles.AuthenticateParamNames...); err != nil {
		return nil, err
	}
	if p.PubKey == "" || p.Signature == "" {
		return nil, rpcError(errs.New(errs.Invalid, "pubkey and signature are required"))
	}
	fail := func(reason string) (any, *circles.Error) {
		sess.s.m.auths.WithLabelValues("failed").Inc()
		return nil, rpcError(errs.New(errs.Unauthorized, reason))
	}
	pk, err := auth.ParsePublicKey(p.PubKey)
	if err != nil {
		return fail("malformed public key")
	}
	nonce, err := sess.s.nonces.Take(auth.NonceBinding{Conn: sess.id, Circle: sess.circle, PubKey: pk.String()})
	switch {
	case errors.Is(err, auth.ErrNonceExpired):
		return fail("nonce expired; call fetch_nonce again")
	case err != nil:
		return fail("no nonce issued for this key on this connection; call fetch_nonce first")
	}
	if err := auth.VerifySignature(pk, []byte(nonce), p.Signature); err != nil {
		return fail("signature does not verify")
	}
	sess.mu.Lock()
	sess.pubkey = pk
	sess.mu.Unlock()
	sess.s.m.auths.WithLabelValues("ok").Inc()
	sess.s.log.Debug("circle client authenticated", "conn", sess.id, "circle", sess.circle, "pubkey", pk.String())
	return circles.AuthenticateResult{Authenticated: true}, nil
}

func (sess *session) caller() string {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.pubkey.IsZero() {
		return ""
	}
	return sess.pubkey.String()
}

func (sess *session) whoami() (any, *circles.Error) {
	var pk *string
	if c := sess.caller(); c != "" {
		pk = &c
	}
	return circles.WhoamiResult{Circle: sess.circle, PubKey: pk}, nil
}

func (sess *session) play(params json.RawMessage) (any, *circles.Error) {
	var p circles.PlayParams
	if err := circles.DecodeParams(params, &p, circles.PlayParamNames...); err != nil {
		return nil, err
	}
	if p.Script == "" {
		return nil, rpcError(errs.New(errs.Invalid, "script is required"))
	}
	caller := sess.caller()
	if sess.s.cfg.EnableAuth && caller == "" {
		return nil, rpcError(errAuthRequired)
	}
	if !sess.s.beginPlay() {
		return nil, rpcError(errs.New(errs.Unavailable, "server shutting down"))
	}
	defer sess.s.plays.Done()
	ctx, cancel := context.WithTimeout(sess.ctx, sess.s.cfg.PlayTimeout)
	defer cancel()
	start := time.Now()
	out, err := sess.s.cfg.Player.Play(ctx, sess.circle, caller, p.Script)
	sess.s.m.playDur.Observe(time.Since(start).Seconds())
	if err == nil {
		return out, nil
	}
	rerr, ok := playError(err, sess.s.cfg.PlayTimeout)
	if !ok {
		sess.s.log.Error("circle play failed", "circle", sess.circle, "err", err)
	}
	return nil, rerr
}
