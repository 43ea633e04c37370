package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// WebTransport (ALPN h3) on the relay's listener: an HTTP/3 server whose
// one route, WebTransportPath, upgrades to a WebTransport session that
// carries a native session with the same frames. The session's first
// bidirectional stream (opened by the client) is the control stream
// (HELLO with the hub JWT, WELCOME, JOIN, …), unidirectional streams carry
// reliable events and datagrams unreliable ones. The Origin header is
// checked with the hub's origin policy (Config.Origins): refused with 403.
// One session per QUIC connection; the connection closes with its
// session.

// WebTransportPath is the path of the relay's WebTransport endpoint.
const WebTransportPath = "/relay"

// handshakeOrigin counts WebTransport sessions refused for their origin.
const handshakeOrigin = "origin_refused"

var (
	errOriginRefused = errs.Sentinel(errs.PermissionDenied, "origin not allowed")
	errMethod        = errs.Sentinel(errs.Invalid, "method not allowed: use GET")
	errNoSession     = hub.Disconnect{Code: closeBadRequest.Code, Reason: "bad request: no WebTransport session"}
)

// wtConn is an h3 connection being served.
type wtConn struct {
	qc      *quic.Conn
	started atomic.Bool // a session request arrived
}

type wtConnKey struct{}

// newWebTransport builds the HTTP/3 and WebTransport servers.
func (s *Server) newWebTransport() *webtransport.Server {
	mux := http.NewServeMux()
	mux.HandleFunc(WebTransportPath, s.handleWebTransport)
	h3 := &http3.Server{
		Handler: mux,
		Logger:  s.log,
		ConnContext: func(ctx context.Context, qc *quic.Conn) context.Context {
			if wc, ok := s.wtConns.Load(qc); ok {
				ctx = context.WithValue(ctx, wtConnKey{}, wc)
			}
			return ctx
		},
	}
	// The handler checks the origin itself, to answer 403.
	return &webtransport.Server{H3: h3, CheckOrigin: func(*http.Request) bool { return true }}
}

// serveWebTransport serves one h3 connection to its end. A connection
// that asks for no session within HandshakeTimeout, or before Shutdown,
// is closed; one with a session closes with it.
func (s *Server) serveWebTransport(qc *quic.Conn) {
	wc := &wtConn{qc: qc}
	s.wtConns.Store(qc, wc)
	defer s.wtConns.Delete(qc)
	idle := time.AfterFunc(s.cfg.HandshakeTimeout, func() {
		if !wc.started.Load() {
			s.metrics.handshakes.WithLabelValues(handshakeTimeout).Inc()
			closeQUIC(qc, errNoSession)
		}
	})
	defer idle.Stop()
	stop := context.AfterFunc(s.ctx, func() {
		if !wc.started.Load() {
			closeQUIC(qc, closeShutdown)
		}
	})
	defer stop()
	if err := s.wt.ServeQUICConn(qc); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Debug("relay WebTransport connection failed", "error", err)
		closeQUIC(qc, closeServerError)
	}
}

// handleWebTransport upgrades a request to a session and runs it.
func (s *Server) handleWebTransport(w http.ResponseWriter, r *http.Request) {
	wc, _ := r.Context().Value(wtConnKey{}).(*wtConn)
	if wc == nil || wc.started.Swap(true) {
		refuseHTTP(w, hub.ErrBadRequest.With("one WebTransport session per connection"))
		return
	}
	if !s.originAllowed(r) {
		s.metrics.handshakes.WithLabelValues(handshakeOrigin).Inc()
		refuseHTTP(w, errOriginRefused)
		closeAfter(wc.qc, closeUnauthorized)
		return
	}
	sess, err := s.wt.Upgrade(w, r)
	if err != nil {
		s.metrics.handshakes.WithLabelValues(handshakeBad).Inc()
		refuseHTTP(w, hub.ErrBadRequest.With("bad request: "+err.Error()))
		closeAfter(wc.qc, closeBadRequest)
		return
	}
	t := &wtTransport{sess: sess, qc: wc.qc}
	if session := s.handshakeNativeOn(wc.qc, t, transportWebTransport); session != nil {
		session()
	}
	closeAfter(wc.qc, t.reason())
}

// closeAfter closes qc once the peer had a moment to read what was sent
// last (a refusal, the session's close), unless it closes first.
func closeAfter(qc *quic.Conn, d hub.Disconnect) {
	t := time.NewTimer(goAwayLinger)
	select {
	case <-qc.Context().Done():
	case <-t.C:
	}
	t.Stop()
	closeQUIC(qc, d)
}

func refuseHTTP(w http.ResponseWriter, err error) {
	status, msg := httpStatus(err)
	body, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// originAllowed applies Config.Origins; with an empty list, pages of the
// relay's host on the page port (SetPagePort) count as same-origin too.
func (s *Server) originAllowed(r *http.Request) bool {
	o := s.cfg.Origins
	if o.AllowedRequest(r) {
		return true
	}
	port := s.pagePort.Load()
	if port <= 0 {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return o.Allowed(r.Header.Get("Origin"), net.JoinHostPort(host, strconv.Itoa(int(port))))
}

// SetPagePort names the port of the HTTP server serving the pages that
// use the relay (the demo page): with an empty Origins, an Origin of the
// relay's host on this port counts as same-origin. 0 (the default): none.
func (s *Server) SetPagePort(port int) { s.pagePort.Store(int32(port)) }

// wtTransport is a native session on a WebTransport session.
type wtTransport struct {
	sess *webtransport.Session
	qc   *quic.Conn // carries only this session
	mu   sync.Mutex
	why  *hub.Disconnect
}

type wtControl struct{ *webtransport.Stream }

// cancelRead also expires the read deadline: webtransport-go keeps a Read
// that met a STOP_SENDING for a session gone waiting for the session's
// close, which a client that vanished never sends.
func (s wtControl) cancelRead() {
	s.Stream.CancelRead(0)
	_ = s.Stream.SetReadDeadline(time.Now())
}

type wtRecv struct{ *webtransport.ReceiveStream }

func (s wtRecv) cancelRead() {
	s.ReceiveStream.CancelRead(0)
	_ = s.ReceiveStream.SetReadDeadline(time.Now())
}

func (t *wtTransport) acceptControl(ctx context.Context) (controlStream, error) {
	st, err := t.sess.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	// The session's end does not fail an accepted stream's reads (the
	// connection may go on): stop reading, so the session ends.
	context.AfterFunc(t.sess.Context(), func() { st.CancelRead(0) })
	return wtControl{st}, nil
}

func (t *wtTransport) acceptUni(ctx context.Context) (recvStream, error) {
	st, err := t.sess.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return wtRecv{st}, nil
}

func (t *wtTransport) openUni(ctx context.Context) (sendStream, error) {
	st, err := t.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (t *wtTransport) receiveDatagram(ctx context.Context) ([]byte, error) {
	return t.sess.ReceiveDatagram(ctx)
}

func (t *wtTransport) sendDatagram(b []byte) error { return t.sess.SendDatagram(b) }

func (t *wtTransport) done() <-chan struct{} { return t.sess.Context().Done() }

// peerLeft: the client closed the session with code 0, or its whole
// connection without an error (H3_NO_ERROR, as a closing page does). A
// closed session's accept returns its close error at once (its Context's
// cause is only "canceled").
func (t *wtTransport) peerLeft() bool {
	awaitEnd(t.done())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := t.sess.AcceptStream(ctx)
	var se *webtransport.SessionError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == 0 {
		return true
	}
	var ae *quic.ApplicationError
	return errors.As(context.Cause(t.qc.Context()), &ae) && ae.Remote &&
		(ae.ErrorCode == 0 || ae.ErrorCode == quic.ApplicationErrorCode(http3.ErrCodeNoError))
}

// close closes the session with d (the browser's WebTransport.closed
// resolves with d's code and reason); the first call wins.
func (t *wtTransport) close(d hub.Disconnect) {
	t.mu.Lock()
	if t.why == nil {
		t.why = &d
	}
	t.mu.Unlock()
	_ = t.sess.CloseWithError(webtransport.SessionErrorCode(d.Code), d.Reason)
}

// reason is why the session was closed (closeNormal when by the peer).
func (t *wtTransport) reason() hub.Disconnect {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.why == nil {
		return closeNormal
	}
	return *t.why
}
