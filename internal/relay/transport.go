package relay

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// nativeTransport is what a native session uses of its connection: a
// bidirectional control stream opened by the client, unidirectional
// streams for reliable events, datagrams for unreliable ones. A QUIC
// connection with ALPN switchboard-relay/1 (quicTransport) and a
// WebTransport session (wtTransport) carry the same frames.
type nativeTransport interface {
	// acceptControl waits for the client's control stream.
	acceptControl(ctx context.Context) (controlStream, error)
	acceptUni(ctx context.Context) (recvStream, error)
	openUni(ctx context.Context) (sendStream, error)
	receiveDatagram(ctx context.Context) ([]byte, error)
	sendDatagram(b []byte) error
	// done is closed when the connection has ended.
	done() <-chan struct{}
	// peerLeft reports whether the client closed the connection with
	// code 0 (leaving: no resume). Called when the session's streams
	// ended, it waits a moment for the connection's end to be known.
	peerLeft() bool
	// close ends the connection with d's code and reason.
	close(d hub.Disconnect)
}

// controlStream is the native control stream.
type controlStream interface {
	io.ReadWriteCloser
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// cancelRead stops reading (writes still go out).
	cancelRead()
}

// recvStream is a client's event stream.
type recvStream interface {
	io.Reader
	cancelRead()
}

// sendStream is the relay's event stream to a client.
type sendStream interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// quicTransport is a native session on its own QUIC connection.
type quicTransport struct{ qc *quic.Conn }

type quicControl struct{ *quic.Stream }

func (s quicControl) cancelRead() { s.Stream.CancelRead(0) }

type quicRecv struct{ *quic.ReceiveStream }

func (s quicRecv) cancelRead() { s.ReceiveStream.CancelRead(0) }

func (t quicTransport) acceptControl(ctx context.Context) (controlStream, error) {
	st, err := t.qc.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicControl{st}, nil
}

func (t quicTransport) acceptUni(ctx context.Context) (recvStream, error) {
	st, err := t.qc.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicRecv{st}, nil
}

func (t quicTransport) openUni(ctx context.Context) (sendStream, error) {
	st, err := t.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (t quicTransport) receiveDatagram(ctx context.Context) ([]byte, error) {
	return t.qc.ReceiveDatagram(ctx)
}

func (t quicTransport) sendDatagram(b []byte) error { return t.qc.SendDatagram(b) }

func (t quicTransport) done() <-chan struct{} { return t.qc.Context().Done() }

func (t quicTransport) peerLeft() bool {
	awaitEnd(t.done())
	var ae *quic.ApplicationError
	return errors.As(context.Cause(t.qc.Context()), &ae) && ae.Remote && ae.ErrorCode == 0
}

func (t quicTransport) close(d hub.Disconnect) { closeQUIC(t.qc, d) }

// transportWebTransport labels native sessions over WebTransport.
const transportWebTransport = "webtransport"

// presenceTransport is the transport a member's hub presence names:
// quic-issun, quic-native or webtransport.
func presenceTransport(label string) string {
	if label == transportWebTransport {
		return label
	}
	return "quic-" + label
}

// awaitEnd waits for done, at most goAwayLinger: a stream can fail
// before its connection's close reason is recorded.
func awaitEnd(done <-chan struct{}) {
	t := time.NewTimer(goAwayLinger)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
