package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/config"
	"github.com/switchboard-rt/switchboard/internal/relay"
)

// Development mode (`serve --dev`): a server a first-time user can connect
// to at once. Every value below fills only what the configuration lacks.
const (
	devUser     = "dev"
	devTokenTTL = 24 * time.Hour
	// devChannel is the channel of the printed curl line and the README.
	devChannel = "chat:index"
)

// devNamespaces are added when the configuration does not define them:
// "chat" grants subscribers everything and keeps history for recovery;
// "bench" is what `switchboard bench` uses by default (bench:ch0, bench:rpc),
// kept cheap: no presence, join/leave or history.
var devNamespaces = []config.Namespace{
	{Name: "chat", NamespaceOptions: config.NamespaceOptions{
		Presence: true, JoinLeave: true, ForcePushJoinLeave: true,
		HistorySize: 100, HistoryTTL: config.Duration(5 * time.Minute), ForceRecovery: true,
		AllowSubscribeForClient: true, AllowPublishForSubscriber: true, AllowPublishForClient: true,
		AllowPresenceForSubscriber: true, AllowHistoryForSubscriber: true,
	}},
	{Name: "bench", NamespaceOptions: config.NamespaceOptions{
		AllowSubscribeForClient: true, AllowPublishForClient: true,
	}},
}

// devRelayNamespace is added, when the relay is on, in place of the one
// the relay adds by itself (presence and join/leave for the server API):
// spectators may subscribe to relay:R and read its presence, as to the
// other development channels; only the relay publishes there.
var devRelayNamespace = config.Namespace{Name: relayNamespaceName, NamespaceOptions: config.NamespaceOptions{
	Presence: true, JoinLeave: true, AllowSubscribeForClient: true, AllowPresenceForSubscriber: true,
}}

// devRelayHost is the relay's host under --dev when relay.address names
// none: the loopback interface, like the HTTP server's default.
const devRelayHost = "127.0.0.1"

// devInfo is what development mode generated, for the start banner.
type devInfo struct {
	secretGenerated, keyGenerated bool
	namespaces                    []string // names added
	originsOpened                 bool
	// relayLocal: the relay was bound to devRelayHost.
	relayLocal bool
	// schedulerOn: development mode switched the scheduler on; console:
	// it switched the console on; passwordGenerated: with a new password.
	schedulerOn, consoleOn, passwordGenerated bool
}

// applyDev fills what cfg lacks for development: random HMAC secret and API
// key (random reads 32 bytes each), the devNamespaces and any browser
// origin; it switches the compute scheduler (SQLite in circles.data_dir)
// and the console on, with a random admin password and session secret
// when the configuration has none. An enabled relay whose address names
// no host listens on devRelayHost, and its namespace (unless configured)
// is devRelayNamespace.
func applyDev(cfg *config.Config, random io.Reader) (devInfo, error) {
	var info devInfo
	gen := func() (string, error) { return genHex(random, 32) }
	var err error
	if err := devDefaults(cfg, &info, gen); err != nil {
		return info, err
	}
	if cfg.Relay.Enabled {
		if host, port, err := net.SplitHostPort(cfg.Relay.Address); err == nil && host == "" {
			cfg.Relay.Address, info.relayLocal = net.JoinHostPort(devRelayHost, port), true
		}
		if _, ok := cfg.Namespace(relayNamespaceName); !ok {
			cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, devRelayNamespace)
			info.namespaces = append(info.namespaces, relayNamespaceName)
		}
	}
	if !cfg.Scheduler.Enabled {
		cfg.Scheduler.Enabled, info.schedulerOn = true, true
	}
	if !cfg.Admin.Enabled {
		cfg.Admin.Enabled, info.consoleOn = true, true
	}
	if cfg.Admin.Password == "" {
		if cfg.Admin.Password, err = genHex(random, 12); err != nil {
			return info, err
		}
		info.passwordGenerated = true
	}
	if len(cfg.Admin.Secret) < config.MinAdminSecret {
		if cfg.Admin.Secret, err = gen(); err != nil {
			return info, err
		}
	}
	return info, nil
}

// genHex reads n random bytes and returns them in hex.
func genHex(random io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("--dev: generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// devDefaults fills the hub's development values: secret, API key,
// namespaces, origins.
func devDefaults(cfg *config.Config, info *devInfo, gen func() (string, error)) error {
	var err error
	if cfg.Client.Token.HMACSecretKey == "" {
		if cfg.Client.Token.HMACSecretKey, err = gen(); err != nil {
			return err
		}
		info.secretGenerated = true
	}
	if cfg.HTTPAPI.Key == "" && !cfg.HTTPAPI.Insecure {
		if cfg.HTTPAPI.Key, err = gen(); err != nil {
			return err
		}
		info.keyGenerated = true
	}
	for _, d := range devNamespaces {
		if _, ok := cfg.Namespace(d.Name); !ok {
			cfg.Channel.Namespaces = append(cfg.Channel.Namespaces, d)
			info.namespaces = append(info.namespaces, d.Name)
		}
	}
	if len(cfg.Client.AllowedOrigins) == 0 {
		cfg.Client.AllowedOrigins = []string{"*"}
		info.originsOpened = true
	}
	return nil
}

// devRelay is the running relay, for the banner.
type devRelay struct {
	addr   string // UDP host:port it listens on
	sha256 string // its certificate's SHA-256 (hex)
}

// printDevBanner writes the development banner: a warning, the secrets, an
// example connection token and a curl line publishing to devChannel; with
// rl (the relay is on) its address, certificate hash and demo page. Each
// value sits on its own "  name: value" line so scripts can read it.
func printDevBanner(w io.Writer, cfg config.Config, info devInfo, baseURL, wsURL string, rl *devRelay, now time.Time) error {
	tok, err := auth.SignConnect(cfg.Client.Token.HMACSecretKey, devUser, devTokenTTL, now)
	if err != nil {
		return fmt.Errorf("--dev: sign example token: %w", err)
	}
	origin := func(generated bool) string {
		if generated {
			return "generated for this run"
		}
		return "from your configuration"
	}
	body, _ := json.Marshal(map[string]any{"channel": devChannel, "data": map[string]string{"text": "hello"}})
	var b strings.Builder
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(&b, "\n%s\n", bar)
	fmt.Fprintf(&b, "!! DEVELOPMENT MODE (--dev): NOT FOR PRODUCTION. Secrets are printed in clear,\n")
	fmt.Fprintf(&b, "!! channels are open to any token holder, any browser origin may connect.\n")
	fmt.Fprintf(&b, "%s\n", bar)
	fmt.Fprintf(&b, "  websocket: %s\n", wsURL)
	fmt.Fprintf(&b, "  hmac_secret_key: %s  (%s)\n", cfg.Client.Token.HMACSecretKey, origin(info.secretGenerated))
	if cfg.HTTPAPI.Key != "" {
		fmt.Fprintf(&b, "  api_key: %s  (%s)\n", cfg.HTTPAPI.Key, origin(info.keyGenerated))
	}
	if len(info.namespaces) > 0 {
		fmt.Fprintf(&b, "  namespaces added: %s (chat: subscribe, publish, presence, history, recovery)\n", strings.Join(info.namespaces, ", "))
	}
	if rl != nil {
		where := ""
		if info.relayLocal {
			where = "; loopback only: name a host in relay.address to listen elsewhere"
		}
		fmt.Fprintf(&b, "  relay: %s  (UDP, QUIC and WebTransport; auth %s%s)\n", rl.addr, cfg.Relay.Auth, where)
		fmt.Fprintf(&b, "  relay_sha256: %s  (pin it: examples/pong -pin, bench relay --pin)\n", rl.sha256)
		fmt.Fprintf(&b, "  relay_demo: %s%s\n", baseURL, relay.DemoPath)
	}
	fmt.Fprintf(&b, "  token: %s  (user %q, valid %s)\n", tok, devUser, devTokenTTL)
	if cfg.Admin.Enabled {
		fmt.Fprintf(&b, "  console: %s/console  (sign in with the admin password)\n", baseURL)
		if info.passwordGenerated {
			fmt.Fprintf(&b, "  admin_password: %s  (generated for this run)\n", cfg.Admin.Password)
		} else {
			fmt.Fprintf(&b, "  admin_password: (from your configuration)\n")
		}
	}
	if cfg.Scheduler.Enabled {
		store := "SQLite in " + cfg.Circles.DataDir
		if cfg.Scheduler.DatabaseURL != "" {
			store = "PostgreSQL"
		}
		fmt.Fprintf(&b, "  scheduler: %s/jobs  (%s; docs/scheduler.md)\n", baseURL, store)
		fmt.Fprintf(&b, "  node: switchboard node --server %s --worker \"python3 examples/workers/sim.py\"  (claim its code in the console)\n", baseURL)
	}
	header := ""
	if cfg.HTTPAPI.Key != "" { // empty only with http_api.insecure
		header = " -H 'X-API-Key: " + cfg.HTTPAPI.Key + "'"
	}
	fmt.Fprintf(&b, "  publish: curl -s -X POST %s/api/publish%s -d '%s'\n", baseURL, header, body)
	apiKeyFlag := ""
	if cfg.HTTPAPI.Key != "" {
		apiKeyFlag = " --api-key " + cfg.HTTPAPI.Key
	}
	fmt.Fprintf(&b, "  bench: switchboard bench fanout --url %s --secret %s%s -s 100\n",
		wsURL, cfg.Client.Token.HMACSecretKey, apiKeyFlag)
	fmt.Fprintf(&b, "%s\n\n", bar)
	_, err = io.WriteString(w, b.String())
	return err
}
