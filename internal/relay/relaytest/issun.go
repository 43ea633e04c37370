// Package relaytest holds relay clients for tests: an ISSUN 0.10 client
// double that behaves on the wire exactly as the real one does.
package relaytest

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// ISSUN behaves exactly as an ISSUN 0.10 client: no ALPN, SNI
// localhost, any certificate, quinn's limits (idle timeout 30 s, 100
// concurrent uni streams, no keep-alive); the NodeId on its first uni
// stream; one event per stream out, waiting for stream credit; it reads
// one frame per server stream and drops the stream. Events holds what it
// received.
type ISSUN struct {
	t      testing.TB
	QC     *quic.Conn
	ID     wire.NodeID
	Echo   wire.NodeID // what the server echoed
	Events chan wire.Event
	done   chan struct{}
	err    error // why the reader stopped
}

// DialQUIC connects to addr as the ISSUN client does, offering protos
// as ALPN (none for ISSUN).
func DialQUIC(ctx context.Context, addr string, protos []string) (*quic.Conn, error) {
	return quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: protos},
		&quic.Config{MaxIdleTimeout: 30 * time.Second, MaxIncomingUniStreams: 100, EnableDatagrams: len(protos) > 0})
}

// DialISSUN connects and completes the NodeId handshake, failing t
// otherwise. The connection closes with the test.
func DialISSUN(t testing.TB, addr string, id wire.NodeID) *ISSUN {
	t.Helper()
	c, err := TryISSUN(t, addr, id)
	require.NoError(t, err)
	return c
}

// TryISSUN is DialISSUN returning the error.
func TryISSUN(t testing.TB, addr string, id wire.NodeID) (*ISSUN, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	qc, err := DialQUIC(ctx, addr, nil)
	if err != nil {
		return nil, err
	}
	c := &ISSUN{t: t, QC: qc, ID: id, Events: make(chan wire.Event, 4096), done: make(chan struct{})}
	started := false
	t.Cleanup(func() {
		if !started {
			close(c.done)
		}
		c.Close()
	})
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(id))
	if err := c.SendRaw(b[:]); err != nil {
		return nil, err
	}
	rs, err := qc.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rs, b[:]); err != nil {
		return nil, err
	}
	c.Echo = wire.NodeID(binary.LittleEndian.Uint64(b[:]))
	started = true
	go c.read()
	return c, nil
}

// SendRaw writes b on a new uni stream and finishes it, waiting for
// stream credit as quinn's open_uni does.
func (c *ISSUN) SendRaw(b []byte) error {
	st, err := c.QC.OpenUniStreamSync(context.Background())
	if err != nil {
		return err
	}
	if _, err := st.Write(b); err != nil {
		return err
	}
	return st.Close()
}

// Send sends ev as one event frame on its own stream.
func (c *ISSUN) Send(ev *wire.Event) {
	c.t.Helper()
	require.NoError(c.t, c.SendRaw(wire.AppendEventFrame(nil, ev)))
}

func (c *ISSUN) read() {
	defer close(c.done)
	for {
		rs, err := c.QC.AcceptUniStream(context.Background())
		if err != nil {
			c.err = err
			return
		}
		_, body, err := wire.ReadFrame(rs, 0, 1<<20, nil)
		rs.CancelRead(0) // one frame per stream, then quinn drops it
		if err != nil {
			c.err = err
			return
		}
		ev, err := wire.DecodeEvent(body, 0)
		if err != nil {
			c.err = err
			return
		}
		c.Events <- ev
	}
}

// Close closes the connection and waits for the reader.
func (c *ISSUN) Close() {
	_ = c.QC.CloseWithError(0, "")
	select {
	case <-c.done:
	case <-time.After(testenv.Wait):
		c.t.Errorf("reader of %d did not stop", c.ID)
	}
}

// Next returns the next event received, failing after testenv.Wait.
func (c *ISSUN) Next() wire.Event {
	c.t.Helper()
	select {
	case ev := <-c.Events:
		return ev
	case <-c.done:
		c.t.Fatalf("connection of %d ended: %v", c.ID, c.err)
	case <-time.After(testenv.Wait):
		c.t.Fatalf("no event for %d", c.ID)
	}
	return wire.Event{}
}

// ClosedWith waits for the server to close the connection and returns
// its application error.
func (c *ISSUN) ClosedWith() *quic.ApplicationError {
	c.t.Helper()
	select {
	case <-c.QC.Context().Done():
	case <-time.After(testenv.Wait):
		c.t.Fatalf("connection of %d not closed", c.ID)
	}
	var ae *quic.ApplicationError
	require.ErrorAs(c.t, context.Cause(c.QC.Context()), &ae)
	require.True(c.t, ae.Remote, "closed by the server")
	return ae
}
