package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/ratelimit"
)

// Prefix is the console's URL path.
const Prefix = "/console"

// Defaults of Config's zero fields.
const (
	DefaultSessionTTL    = 12 * time.Hour
	DefaultHubTokenTTL   = 10 * time.Minute
	DefaultFeedInterval  = 2 * time.Second
	DefaultLoginFailures = 5
	DefaultLoginWindow   = time.Minute
	// DefaultLoginAddresses is how many client addresses the sign-in
	// limiter tracks apart; beyond, they share one limit.
	DefaultLoginAddresses = 10000
)

// MinSecret is the shortest Config.Secret New accepts.
const MinSecret = 16

// MinHubTokenTTL is the shortest Config.HubTokenTTL New accepts: the page
// refreshes its hub token 15 s before it expires.
const MinHubTokenTTL = 10 * time.Second

// CookieName is the session cookie's name.
const CookieName = "switchboard_console"

//go:embed assets
var assets embed.FS

// TokenVerifier checks users' hub tokens at sign-in.
type TokenVerifier interface {
	VerifyConnect(token string) (auth.ConnectClaims, error)
}

// Config configures the console. Password, Secret, Signer, Tokens and Hub
// are required.
type Config struct {
	// Password signs in as administrator (admin.password).
	Password string
	// Secret keys the session cookies (admin.secret), at least MinSecret
	// bytes.
	Secret string
	// Signer mints the hub and API tokens the console hands to the page;
	// it must match the hub's verifier (client.token.*), so the hub and
	// the scheduler's user API accept them.
	Signer *auth.TokenSigner
	// Tokens verifies users' hub tokens at sign-in.
	Tokens TokenVerifier
	// Hub gives the figures of the hub feed and publishes them.
	Hub Hub
	// Scheduler lists every job and node for the administrator; nil =
	// the scheduler is off (the page shows hub figures only).
	Scheduler Scheduler
	// SessionTTL is a session's lifetime (default 12h); a user's session
	// also ends when the token it signed in with expires.
	SessionTTL time.Duration
	// HubTokenTTL is the lifetime of the hub and API tokens handed to the
	// page (default 10m, at least MinHubTokenTTL); the page fetches new
	// ones before they expire.
	HubTokenTTL time.Duration
	// FeedInterval between hub figures (default 2s).
	FeedInterval time.Duration
	// LoginFailures within LoginWindow (defaults 5 per minute) lock a
	// client address out of sign-in until the window ends.
	LoginFailures int
	LoginWindow   time.Duration
	// LoginAddresses bounds the addresses tracked (default 10000).
	LoginAddresses int
	// Clock drives sessions, tokens and the feed (default the wall clock).
	Clock  clock.Clock
	Logger *slog.Logger
	// Registerer receives the console's metrics (nil = not registered).
	Registerer prometheus.Registerer
}

// Console is the /console handler. It is safe for concurrent use.
type Console struct {
	cfg    Config
	clock  clock.Clock
	log    *slog.Logger
	seal   sealer
	limit  *limiter
	feed   *feed
	static http.Handler
	index  []byte
	logins *prometheus.CounterVec
	apiMux map[string]map[string]func(http.ResponseWriter, *http.Request) error
}

// New validates cfg, fills in defaults and returns the console; Start
// begins the hub feed.
func New(cfg Config) (*Console, error) {
	switch {
	case cfg.Password == "":
		return nil, errors.New("console: admin password is empty")
	case len(cfg.Secret) < MinSecret:
		return nil, fmt.Errorf("console: admin secret must be at least %d bytes", MinSecret)
	case cfg.Signer == nil || cfg.Tokens == nil || cfg.Hub == nil:
		return nil, errors.New("console: Signer, Tokens and Hub are required")
	case cfg.HubTokenTTL != 0 && cfg.HubTokenTTL < MinHubTokenTTL:
		return nil, fmt.Errorf("console: hub token TTL %s: must be at least %s", cfg.HubTokenTTL, MinHubTokenTTL)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.HubTokenTTL <= 0 {
		cfg.HubTokenTTL = DefaultHubTokenTTL
	}
	if cfg.FeedInterval <= 0 {
		cfg.FeedInterval = DefaultFeedInterval
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = DefaultLoginFailures
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = DefaultLoginWindow
	}
	if cfg.LoginAddresses <= 0 {
		cfg.LoginAddresses = DefaultLoginAddresses
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, clock: clock.OrReal(cfg.Clock), log: cfg.Logger.With("component", "console"),
		seal: sealer{key: []byte(cfg.Secret)}, limit: newLimiter(cfg.LoginFailures, cfg.LoginWindow, cfg.LoginAddresses)}
	c.feed = &feed{hub: cfg.Hub, clock: c.clock, interval: cfg.FeedInterval, timeout: cfg.FeedInterval, log: c.log}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	if c.index, err = fs.ReadFile(sub, "index.html"); err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	c.static = http.StripPrefix(Prefix+"/assets/", http.FileServerFS(sub))
	c.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "console",
		Name: "logins_total", Help: "Console sign-in attempts by role and result (ok, failed, limited)."}, []string{"role", "result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.logins); err != nil {
			return nil, fmt.Errorf("console: metrics: %w", err)
		}
	}
	type h = func(http.ResponseWriter, *http.Request) error
	c.apiMux = map[string]map[string]h{
		"login":   {http.MethodPost: c.login},
		"logout":  {http.MethodPost: c.logout},
		"session": {http.MethodGet: c.sessionInfo},
		"token":   {http.MethodPost: c.apiToken},
		"jobs":    {http.MethodGet: c.adminJobs},
		"nodes":   {http.MethodGet: c.adminNodes},
		"cancel":  {http.MethodPost: c.adminCancel},
		"hub":     {http.MethodGet: c.hubFigures},
	}
	return c, nil
}

// Start begins publishing the hub figures. Calling it again does nothing.
func (c *Console) Start() { c.feed.start() }

// Shutdown stops the hub feed and waits for a publish in progress (which
// ctx's end cancels). It is idempotent.
func (c *Console) Shutdown(ctx context.Context) error { return c.feed.stop(ctx) }

// ServeHTTP serves the page, its assets and the console API.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == Prefix || p == Prefix+"/" || p == Prefix+"/index.html":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			c.fail(w, r, errMethodNotAllowed)
			return
		}
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(c.index)
	case strings.HasPrefix(p, Prefix+"/assets/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			c.fail(w, r, errMethodNotAllowed)
			return
		}
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
	case strings.HasPrefix(p, Prefix+"/api/"):
		c.serveAPI(w, r, strings.TrimPrefix(p, Prefix+"/api/"))
	default:
		c.fail(w, r, errs.New(errs.NotFound, "not found"))
	}
}

// securityHeaders: the page loads nothing from elsewhere and talks only
// to its own origin (HTTP and WebSocket).
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (c *Console) serveAPI(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	methods, ok := c.apiMux[name]
	if !ok {
		c.fail(w, r, errs.New(errs.NotFound, "no console API "+strconv.Quote(name)))
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		for m := range methods {
			w.Header().Set("Allow", m)
		}
		c.fail(w, r, errMethodNotAllowed)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := sameOrigin(r); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	if err := h(w, r); err != nil {
		c.fail(w, r, err)
	}
}

// sameOrigin refuses state-changing requests from other origins (with
// SameSite=Strict cookies and the JSON content type this is defence in
// depth against cross-site requests).
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return errs.New(errs.PermissionDenied, "cross-origin request refused")
	}
	return nil
}

// fail writes err as {"error": message} with its status, logging
// internal errors.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	st, msg, internal := status(err)
	if internal {
		c.log.Error("console request failed", "path", r.URL.Path, "error", err)
	}
	writeJSON(w, st, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = encodingFailed, []byte(`{"error":"internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readJSON reads a JSON request body of at most limit bytes.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, errUnsupportedType
		}
	} else {
		return nil, errUnsupportedType
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, errs.Wrap(errs.Invalid, err, "reading the body failed")
	}
	return b, nil
}

// clientAddr is the limiter's key: the peer's IP (no forwarding headers
// are trusted).
func clientAddr(r *http.Request) string { return ratelimit.Host(r.RemoteAddr) }
