//go:build !js

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
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
	// refusal describes err when it is the relay closing the connection
	// (code and reason), else returns nil.
	refusal(err error) error
}

type controlStream interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
}

var quicConfig = &quic.Config{EnableDatagrams: true, MaxIdleTimeout: 30 * time.Second}

type quicLink struct{ qc *quic.Conn }

func dialQUIC(ctx context.Context, addr string, tc *tls.Config) (link, error) {
	qc, err := quic.DialAddr(ctx, addr, tc, quicConfig)
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

func (l quicLink) refusal(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return fmt.Errorf("relay: refused (%d): %s", ae.ErrorCode, ae.ErrorMessage)
	}
	return nil
}

// wtLink is a WebTransport session; the Transport (and its QUIC
// connection) closes with it.
type wtLink struct {
	tr   *webtransport.Transport
	qc   *quic.Conn // set by the Transport's dial, before Dial returns
	sess *webtransport.Session
}

// WebTransportPath is the relay's WebTransport endpoint.
const WebTransportPath = "/relay"

func dialWebTransport(ctx context.Context, addr string, tc *tls.Config, header http.Header) (link, error) {
	tc = tc.Clone()
	tc.NextProtos = nil // the Transport offers h3
	qconf := quicConfig.Clone()
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

// close ends the session with code. A non-zero code closes the QUIC
// connection itself with it (as a lost connection would end): the
// library closes the connection as soon as the session is closed, which
// can overtake the session's close message.
func (l *wtLink) close(code uint32, msg string) {
	if code != 0 && l.qc != nil {
		_ = l.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
	} else {
		_ = l.sess.CloseWithError(webtransport.SessionErrorCode(code), msg)
	}
	_ = l.tr.Close()
}

func (l *wtLink) refusal(err error) error {
	var se *webtransport.SessionError
	if errors.As(err, &se) && se.Remote {
		return fmt.Errorf("relay: refused (%d): %s", se.ErrorCode, se.Message)
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return fmt.Errorf("relay: refused (%d): %s", ae.ErrorCode, ae.ErrorMessage)
	}
	return nil
}
