package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	cert, err := cfg.RelayCertificate()
	if err != nil {
		return usageError(err)
	}
	rc.Certificate = cert
	if cfg.Client.Token.HMACSecretKey != "" {
		rc.Verifier = tokens
	}
	rc.Pool, rc.Presence, rc.Sessions, rc.Logger, rc.Registerer, rc.Clock = pool, h, h, log, reg, h.Clock()
	if t := h.Topics(); t != nil { // the Redis engine: rooms span the processes
		rc.Bus = t
		rc.Nodes = h // the hub's node registry tells which processes died
	}
	rc.MirrorTo = h        // relay.mirror: spectators on relay:R
	rc.Origins = m.origins // WebTransport sessions: client.allowed_origins
	s, err := relay.New(rc)
	var fe *relay.FieldError
	if errors.As(err, &fe) {
		return usageError(err) // a setting (or its dependency): a configuration error
	}
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

// devRelay describes the running relay for the dev banner (nil when off).
func (m *Main) devRelay() *devRelay {
	if m.relay == nil {
		return nil
	}
	cert := m.relay.Certificate()
	return &devRelay{addr: m.RelayAddr(), sha256: relay.Fingerprint(&cert)}
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
	Cert  string        `default:"relay.crt" help:"Certificate file to write (PEM, mode 0644)."`
	Key   string        `default:"relay.key" help:"Private key file to write (PEM, PKCS#8, mode 0600)."`
	Hosts []string      `name:"host" default:"localhost,127.0.0.1,::1" help:"DNS names and IP addresses the certificate is for."`
	Valid time.Duration `default:"312h" help:"Validity (at most 336h, 14 days)."`
	Force bool          `help:"Replace existing files: new ones (certificate 0644, key 0600, owned by whoever runs this) are renamed over them, so a symlink is replaced rather than followed."`
}

// Run writes the certificate and key. Without --force it refuses, before
// writing anything, when either file exists; a failure part way leaves
// neither new file, so the two files on disk always belong together.
func (c *RelayCertCmd) Run(out *output) error {
	switch {
	case c.Valid <= 0:
		return usageError(fmt.Errorf("--valid: %s: must be positive, at most %s", c.Valid, relay.MaxBrowserCertValidity))
	case c.Valid > relay.MaxBrowserCertValidity:
		return usageError(fmt.Errorf("--valid: %s is over %s (browsers refuse longer for pinned certificates)", c.Valid, relay.MaxBrowserCertValidity))
	}
	if len(c.Hosts) == 0 {
		return usageError(errors.New("--host: at least one name or address"))
	}
	for _, h := range c.Hosts {
		if err := certHost(h); err != nil {
			return usageError(fmt.Errorf("--host: %w", err))
		}
	}
	if sameFile(c.Cert, c.Key) {
		return usageError(fmt.Errorf("--cert and --key name the same file (%s, %s)", c.Cert, c.Key))
	}
	if !c.Force {
		for _, p := range []string{c.Cert, c.Key} {
			if _, err := os.Lstat(p); err == nil {
				return existsError(p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	certPEM, keyPEM, err := relay.GenerateCertificate(c.Hosts, time.Now(), c.Valid)
	if err != nil {
		return err
	}
	cert, err := relay.LoadCertificate(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := writePair(c.Cert, certPEM, c.Key, keyPEM, c.Force); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out.stdout, "wrote %s and %s, valid for %s\nsha256: %s\nuse: relay.cert_file = %q, relay.key_file = %q\n",
		c.Cert, c.Key, c.Valid, relay.Fingerprint(&cert), c.Cert, c.Key)
	return err
}

// certHost checks a name of the certificate: an IP address or a DNS name
// (letters, digits and hyphens in dot-separated labels of 1 to 63
// characters, none starting or ending with a hyphen, 253 at most; "*."
// first for a wildcard).
func certHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not an IP address or a DNS name", h)
	}
	for _, label := range strings.Split(name, ".") {
		ok := len(label) >= 1 && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for _, r := range label {
			ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
		}
		if !ok {
			return fmt.Errorf("%q is not an IP address or a DNS name (letters, digits, hyphens and dots)", h)
		}
	}
	return nil
}

// writePair writes a certificate (publicMode) and its key (privateMode).
// Without force both must be new: when the second cannot be written the
// first is removed again. With force each is written beside its target
// and renamed over it, the key last; when that rename fails the new
// certificate is removed, so no certificate is left with a key it does not
// match.
func writePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte, force bool) error {
	if !force {
		if err := writeNew(certPath, certPEM, false, publicMode); err != nil {
			return err
		}
		if err := writeNew(keyPath, keyPEM, false, privateMode); err != nil {
			os.Remove(certPath)
			return err
		}
		return nil
	}
	certTmp, err := writeBeside(certPath, certPEM, publicMode)
	if err != nil {
		return err
	}
	defer os.Remove(certTmp) // gone already once renamed
	keyTmp, err := writeBeside(keyPath, keyPEM, privateMode)
	if err != nil {
		return err
	}
	defer os.Remove(keyTmp)
	// The old certificate stays reachable until the key is in place: if
	// the key cannot replace its target, the old pair is put back.
	backup := ""
	if _, err := os.Lstat(certPath); err == nil {
		backup = certTmp + ".old"
		if err := os.Link(certPath, backup); err != nil {
			return fmt.Errorf("keep %s while replacing it: %w", certPath, err)
		}
		defer os.Remove(backup)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		return err
	}
	if err := os.Rename(keyTmp, keyPath); err != nil {
		if backup != "" {
			if rerr := os.Rename(backup, certPath); rerr == nil {
				return fmt.Errorf("%w (%s and %s are left as they were)", err, certPath, keyPath)
			}
		}
		os.Remove(certPath)
		return fmt.Errorf("%w (removed the new %s, which needs the new key)", err, certPath)
	}
	return nil
}

// sameFile reports whether paths a and b name one file: the same path
// once absolute, or (when both exist) the same file through a link.
func sameFile(a, b string) bool {
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	if errA == nil && errB == nil && aa == ab {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// writeBeside writes data to a new temporary file in path's directory
// and returns its name.
func writeBeside(path string, data []byte, perm os.FileMode) (string, error) {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(suffix[:]))
	if err := writeNew(tmp, data, false, perm); err != nil {
		return "", err
	}
	return tmp, nil
}
