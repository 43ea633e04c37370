package relay

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// The listener's TLS configuration is the native profile's: a native
// ClientHello keeps it (GetConfigForClient answers nil, so quic-go keeps
// no clone of a second config per native connection); ISSUN (no ALPN)
// and WebTransport get their own, and anything else is refused.
func TestTLSConfigServesNativeWithoutASecondConfig(t *testing.T) {
	s := newTestServer(t, nil)
	conf := s.tlsConfig()
	require.Equal(t, []string{wire.ALPNNative}, conf.NextProtos)
	require.True(t, conf.SessionTicketsDisabled)
	require.Equal(t, uint16(tls.VersionTLS13), conf.MinVersion)
	pick := func(protos ...string) (*tls.Config, error) {
		return conf.GetConfigForClient(&tls.ClientHelloInfo{SupportedProtos: protos})
	}

	c, err := pick(wire.ALPNWebTransport, wire.ALPNNative)
	require.NoError(t, err)
	require.Nil(t, c, "native: the listener's own config")

	c, err = pick()
	require.NoError(t, err)
	require.Empty(t, c.NextProtos, "ISSUN")
	require.True(t, c.SessionTicketsDisabled)
	require.Equal(t, conf.Certificates, c.Certificates)

	c, err = pick(wire.ALPNWebTransport)
	require.NoError(t, err)
	require.Equal(t, []string{wire.ALPNWebTransport}, c.NextProtos)
	require.True(t, c.SessionTicketsDisabled)

	_, err = pick("h2")
	require.Error(t, err)

	off := newTestServer(t, func(c *Config) { c.DisableISSUN = true })
	_, err = off.tlsConfig().GetConfigForClient(&tls.ClientHelloInfo{})
	require.Error(t, err, "ISSUN disabled")
}
