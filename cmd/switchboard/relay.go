package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay"
)

// relayNamespaceName is the hub namespace of relay rooms ("relay:R").
const relayNamespaceName = "relay"

// relayNamespace adds the relay's namespace (presence and join/leave, so
// the server API shows players) unless the configuration declares one.
func relayNamespace(cfg config.Config, ns *hub.Namespaces) {
	if !cfg.Relay.Enabled {
		return
	}
	if _, ok := ns.Named[relayNamespaceName]; !ok {
		ns.Named[relayNamespaceName] = hub.ChannelOptions{Presence: true, JoinLeave: true}
	}
}

// relayPort applies `serve --relay-port`: it turns the relay on, on that
// UDP port of relay.address's host.
func relayPort(cfg *config.Config, port int) error {
	if port < 0 {
		return nil
	}
	if port > 65535 {
		return fmt.Errorf("--relay-port: %d is out of range 0-65535", port)
	}
	host, _, err := net.SplitHostPort(cfg.Relay.Address)
	if err != nil {
		return fmt.Errorf("relay.address: %q is not host:port: %w", cfg.Relay.Address, err)
	}
	cfg.Relay.Enabled = true
	cfg.Relay.Address = net.JoinHostPort(host, strconv.Itoa(port))
	return nil
}

// startRelay starts the game relay when relay.enabled, on the shared
// delivery pool and the hub's presence; Shutdown stops it with the other
// realtime servers.
func (m *Main) startRelay(cfg config.Config, h *hub.Hub, tokens *auth.TokenVerifier, pool *delivery.Pool,
	reg prometheus.Registerer, log *slog.Logger) error {
	if !cfg.Relay.Enabled {
		return nil
	}
	rc := cfg.Relay.RelayConfig()
	if cfg.Relay.CertFile != "" {
		certPEM, err := os.ReadFile(cfg.Relay.CertFile)
		if err != nil {
			return usageError(fmt.Errorf("relay.cert_file: %w", err))
		}
		keyPEM, err := os.ReadFile(cfg.Relay.KeyFile)
		if err != nil {
			return usageError(fmt.Errorf("relay.key_file: %w", err))
		}
		cert, err := relay.LoadCertificate(certPEM, keyPEM)
		if err != nil {
			return usageError(fmt.Errorf("relay.cert_file/relay.key_file: %w", err))
		}
		rc.Certificate = &cert
	}
	if cfg.Client.Token.HMACSecretKey != "" {
		rc.Verifier = tokens
	}
	rc.Pool, rc.Presence, rc.Sessions, rc.Logger, rc.Registerer, rc.Clock = pool, h, h, log, reg, h.Clock()
	if t := h.Topics(); t != nil { // the Redis engine: rooms span the processes
		rc.Bus = t
	}
	rc.MirrorTo = h        // relay.mirror: spectators on relay:R
	rc.Origins = m.origins // WebTransport sessions: client.allowed_origins
	s, err := relay.New(rc)
	if err != nil {
		return err
	}
	s.Start()
	m.relay = s
	m.realtime = append(m.realtime, s.Shutdown)
	return nil
}

// relayRoutes are the relay's HTTP routes: the WebTransport demo page
// and the endpoint telling it the relay's URL and certificate hash.
func (m *Main) relayRoutes() []route {
	if m.relay == nil {
		return nil
	}
	return []route{{relay.DemoPath, relay.DemoHandler()}, {relay.InfoPath, m.relay.InfoHandler()}}
}

// relayPagePort tells the relay the HTTP server's port once it listens:
// its pages (the demo) are same-origin for WebTransport.
func (m *Main) relayPagePort() {
	if m.relay == nil {
		return
	}
	if a, ok := m.ln.Addr().(*net.TCPAddr); ok {
		m.relay.SetPagePort(a.Port)
	}
}

// RelayAddr is the relay's UDP address after Run ("" when it is off).
func (m *Main) RelayAddr() string {
	if m.relay == nil {
		return ""
	}
	return m.relay.Addr().String()
}

// RelayCertCmd writes a self-signed ECDSA P-256 certificate for the relay,
// valid under the 14 days browsers accept for certificates pinned by hash
// (WebTransport's serverCertificateHashes), and prints its SHA-256.
type RelayCertCmd struct {
	Cert  string        `default:"relay.crt" help:"Certificate file to write (PEM)."`
	Key   string        `default:"relay.key" help:"Private key file to write (PEM, PKCS#8, mode 0600)."`
	Hosts []string      `name:"host" default:"localhost,127.0.0.1,::1" help:"DNS names and IP addresses the certificate is for."`
	Valid time.Duration `default:"312h" help:"Validity (at most 336h, 14 days)."`
	Force bool          `help:"Overwrite existing files."`
}

// Run writes the certificate and key.
func (c *RelayCertCmd) Run(out *output) error {
	if c.Valid <= 0 || c.Valid > relay.MaxBrowserCertValidity {
		return usageError(fmt.Errorf("--valid: %s is not within 0s..%s (browsers refuse longer for pinned certificates)", c.Valid, relay.MaxBrowserCertValidity))
	}
	if len(c.Hosts) == 0 {
		return usageError(errors.New("--host: at least one name or address"))
	}
	certPEM, keyPEM, err := relay.GenerateCertificate(c.Hosts, time.Now(), c.Valid)
	if err != nil {
		return err
	}
	cert, err := relay.LoadCertificate(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := writeNew(c.Key, keyPEM, c.Force); err != nil {
		return err
	}
	if err := writeNew(c.Cert, certPEM, c.Force); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out.stdout, "wrote %s and %s, valid for %s\nsha256: %s\nuse: relay.cert_file = %q, relay.key_file = %q\n",
		c.Cert, c.Key, c.Valid, relay.Fingerprint(&cert), c.Cert, c.Key)
	return err
}
