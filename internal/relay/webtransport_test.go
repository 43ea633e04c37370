package relay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/stretchr/testify/require"

	clientrelay "github.com/switchboard-rt/switchboard/client/relay"
	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

func dialWT(t *testing.T, s *testServer, o clientrelay.Options) (*clientrelay.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	cert := s.Certificate()
	o.WebTransport = true
	o.CertHashes = [][32]byte{sha256.Sum256(cert.Certificate[0])}
	c, err := clientrelay.Dial(ctx, s.Addr().String(), o)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// A WebTransport member is a hub presence of transport "webtransport",
// counted under that transport.
func TestWebTransportPresenceAndMetrics(t *testing.T) {
	s := newTestServer(t, nil)
	c, err := dialWT(t, s, clientrelay.Options{NodeID: 9})
	require.NoError(t, err)
	_, err = c.Join(context.Background(), "match-1", clientrelay.JoinOptions{Create: true})
	require.NoError(t, err)
	pres, err := s.hub.Presence(context.Background(), "relay:match-1")
	require.NoError(t, err)
	require.Len(t, pres, 1)
	for _, p := range pres {
		require.JSONEq(t, `{"node_id":"9","transport":"webtransport"}`, string(p.ChanInfo))
	}
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.connections.WithLabelValues(transportWebTransport)))
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.metrics.connections.WithLabelValues(transportWebTransport)) == 0
	}, testenv.Wait, testenv.Tick)
}

// A WebTransport session lost (closed with a non-zero code) is resumed,
// over WebTransport, within the grace window; Shutdown sends GOAWAY.
func TestWebTransportResumeAndGoAway(t *testing.T) {
	s := newTestServer(t, nil)
	a, err := dialWT(t, s, clientrelay.Options{NodeID: 5})
	require.NoError(t, err)
	_, err = a.Join(context.Background(), "r", clientrelay.JoinOptions{Create: true})
	require.NoError(t, err)
	token := a.ResumeToken()
	a.Abandon()
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.metrics.parked) == 1 }, testenv.Wait, testenv.Tick)
	b, err := dialWT(t, s, clientrelay.Options{ResumeToken: token})
	require.NoError(t, err)
	require.True(t, b.Resumed())
	require.Equal(t, wire.NodeID(5), b.NodeID())

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	<-b.Done()
	var g *clientrelay.GoAwayError
	require.ErrorAs(t, b.Err(), &g)
	require.Equal(t, "shutdown", g.GoAway.Reason)
}

// Requests that are not a WebTransport session get an HTTP error; an
// h3 connection that asks for no session is closed after the handshake
// timeout.
func TestWebTransportBadRequests(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.Close()
	get := func(path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "https://"+s.Addr().String()+path, nil)
		require.NoError(t, err)
		rsp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		defer rsp.Body.Close()
		body, _ := io.ReadAll(rsp.Body)
		return rsp.StatusCode, string(body)
	}
	status, body := get(WebTransportPath)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "expected CONNECT")
	status, _ = get("/elsewhere")
	require.Equal(t, http.StatusNotFound, status)

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Wait)
	defer cancel()
	qc, err := quic.DialAddr(ctx, s.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{EnableDatagrams: true})
	require.NoError(t, err)
	select {
	case <-qc.Context().Done():
		var ae *quic.ApplicationError
		require.ErrorAs(t, context.Cause(qc.Context()), &ae)
		require.Contains(t, ae.ErrorMessage, "no WebTransport session")
	case <-time.After(testenv.Wait):
		t.Fatal("an idle h3 connection stays open")
	}
}

// The origin policy: refused origins get 403 and are counted.
func TestWebTransportOriginRefused(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Origins = origin.MustNew("https://game.example") })
	_, err := dialWT(t, s, clientrelay.Options{Header: http.Header{"Origin": {"https://evil.example"}}})
	require.ErrorContains(t, err, "HTTP 403")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.handshakes.WithLabelValues(handshakeOrigin)))
	_, err = dialWT(t, s, clientrelay.Options{Header: http.Header{"Origin": {"https://game.example"}}})
	require.NoError(t, err)
}

// /relay/info names the WebTransport URL on the page's host and the
// development certificate's hash; the demo page is self-contained.
func TestDemoInfoAndPage(t *testing.T) {
	s := newTestServer(t, nil)
	rec := httptest.NewRecorder()
	s.InfoHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost:8000"+InfoPath, nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var in Info
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &in))
	_, port, _ := strings.Cut(s.Addr().String(), "127.0.0.1:")
	require.Equal(t, Info{URL: "https://localhost:" + port + "/relay", CertHash: Fingerprint(&s.cert)}, in)

	rec = httptest.NewRecorder()
	s.InfoHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, InfoPath, nil))
	require.Equal(t, http.StatusBadRequest, rec.Code)

	rec = httptest.NewRecorder()
	DemoHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DemoPath, nil))
	require.Equal(t, http.StatusOK, rec.Code)
	page := rec.Body.String()
	require.Contains(t, page, "new WebTransport(")
	require.NotContains(t, page, "<script src", "no external scripts")
}
