package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

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
	rc.Pool, rc.Presence, rc.Logger, rc.Registerer, rc.Clock = pool, h, log, reg, h.Clock()
	s, err := relay.New(rc)
	if err != nil {
		return err
	}
	s.Start()
	m.relay = s
	m.realtime = append(m.realtime, s.Shutdown)
	return nil
}

// RelayAddr is the relay's UDP address after Run ("" when it is off).
func (m *Main) RelayAddr() string {
	if m.relay == nil {
		return ""
	}
	return m.relay.Addr().String()
}
