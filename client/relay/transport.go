//go:build !js

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// link is the connection a Client speaks the native protocol on: a QUIC
// connection (ALPN switchboard-relay/1) or a WebTransport session (h3,
// path /relay). Both carry the same frames.
type link interface {
	openControl(ctx context.Context) (controlStream, error)
	acceptUni(ctx context.Context) (io.Reader, error)
	openUni(ctx context.Context) (io.Writer, error)
	receiveDatagram(ctx context.Context) ([]byte, error)
	sendDatagram(b []byte) error
	close(code uint32, msg string)
	// refusal tells whether err is the relay closing the connection, with
	// its code and reason.
	refusal(err error) (code uint32, reason string, ok bool)
	// closeCause is why the connection ended (nil while open), as a
	// *quic.ApplicationError when it was closed with a code.
	closeCause() error
}

type controlStream interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
}

type quicLink struct{ qc *quic.Conn }

// dialQUIC dials addr on tr, or on a socket of its own when tr is nil.
func dialQUIC(ctx context.Context, tr *quic.Transport, addr string, tc *tls.Config, qconf *quic.Config) (link, error) {
	var qc *quic.Conn
	var err error
	if tr == nil {
		qc, err = quic.DialAddr(ctx, addr, tc, qconf)
	} else {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp", addr); err != nil {
			return nil, err
		}
		qc, err = tr.Dial(ctx, ua, tc, qconf)
	}
	if err != nil {
		return nil, err
	}
	return quicLink{qc}, nil
}

func (l quicLink) openControl(ctx context.Context) (controlStream, error) {
	return l.qc.OpenStreamSync(ctx)
}

func (l quicLink) acceptUni(ctx context.Context) (io.Reader, error) { return l.qc.AcceptUniStream(ctx) }

func (l quicLink) openUni(ctx context.Context) (io.Writer, error) { return l.qc.OpenUniStreamSync(ctx) }

func (l quicLink) receiveDatagram(ctx context.Context) ([]byte, error) {
	return l.qc.ReceiveDatagram(ctx)
}

func (l quicLink) sendDatagram(b []byte) error { return l.qc.SendDatagram(b) }

func (l quicLink) close(code uint32, msg string) {
	_ = l.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

func (l quicLink) refusal(err error) (uint32, string, bool) {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return uint32(ae.ErrorCode), ae.ErrorMessage, true
	}
	return 0, "", false
}

func (l quicLink) closeCause() error { return context.Cause(l.qc.Context()) }

// wtLink is a WebTransport session; the Transport (and its QUIC
// connection) closes with it.
type wtLink struct {
	tr   *webtransport.Transport
	qc   *quic.Conn // set by the Transport's dial, before Dial returns
	sess *webtransport.Session
}

// WebTransportPath is the relay's WebTransport endpoint.
const WebTransportPath = "/relay"

func dialWebTransport(ctx context.Context, addr string, tc *tls.Config, qconf *quic.Config, header http.Header) (link, error) {
	tc = tc.Clone()
	tc.NextProtos = nil // the Transport offers h3
	qconf = qconf.Clone()
	qconf.EnableStreamResetPartialDelivery = true
	l := &wtLink{}
	l.tr = &webtransport.Transport{TLSClientConfig: tc, QUICConfig: qconf,
		DialAddr: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			conn, err := quic.DialAddrEarly(ctx, addr, tc, qc)
			l.qc = conn
			return conn, err
		}}
	rsp, sess, err := l.tr.Dial(ctx, "https://"+addr+WebTransportPath, header)
	if err != nil {
		_ = l.tr.Close()
		if rsp != nil && rsp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("refused with HTTP %d: %w", rsp.StatusCode, err)
		}
		return nil, err
	}
	l.sess = sess
	return l, nil
}

func (l *wtLink) openControl(ctx context.Context) (controlStream, error) {
	return l.sess.OpenStreamSync(ctx)
}

func (l *wtLink) acceptUni(ctx context.Context) (io.Reader, error) {
	return l.sess.AcceptUniStream(ctx)
}

func (l *wtLink) openUni(ctx context.Context) (io.Writer, error) {
	return l.sess.OpenUniStreamSync(ctx)
}

func (l *wtLink) receiveDatagram(ctx context.Context) ([]byte, error) {
	return l.sess.ReceiveDatagram(ctx)
}

func (l *wtLink) sendDatagram(b []byte) error { return l.sess.SendDatagram(b) }

// close ends the session with code and returns once the relay has been
// told (the CONNECTION_CLOSE sent), so a program may exit right after.
// A non-zero code closes the QUIC connection itself with it (as a lost
// connection would end): the library closes the connection as soon as
// the session is closed, which can overtake the session's close message.
// Code 0 closes the session, then the connection with H3_NO_ERROR (a
// leave to the relay, as a closing page's): the library's own close of
// the connection runs after the session's in a goroutine of its own, and
// the session's close capsule may not have left yet.
func (l *wtLink) close(code uint32, msg string) {
	switch {
	case code != 0 && l.qc != nil:
		_ = l.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
	default:
		_ = l.sess.CloseWithError(webtransport.SessionErrorCode(code), msg)
		if l.qc != nil {
			_ = l.qc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
		}
	}
	_ = l.tr.Close()
}

func (l *wtLink) refusal(err error) (uint32, string, bool) {
	var se *webtransport.SessionError
	if errors.As(err, &se) && se.Remote {
		return uint32(se.ErrorCode), se.Message, true
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return uint32(ae.ErrorCode), ae.ErrorMessage, true
	}
	return 0, "", false
}

// closeCause reports the session's close code as the connection's: a
// closed session's accept returns its close error at once.
func (l *wtLink) closeCause() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.sess.AcceptStream(ctx)
	var se *webtransport.SessionError
	if errors.As(err, &se) {
		return &quic.ApplicationError{Remote: se.Remote, ErrorCode: quic.ApplicationErrorCode(se.ErrorCode), ErrorMessage: se.Message}
	}
	if l.qc != nil {
		return context.Cause(l.qc.Context())
	}
	return nil
}
