// Package schedapi is the HTTP adapter of the compute scheduler: the node
// API (Ed25519-signed requests, verified by package auth) and the user API
// (a hub connection JWT, or the server API key with a user field). Every
// answer is JSON; errors are {"error": "…"} with the status of the one table
// in errors.go. See docs/scheduler.md.
package schedapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/ratelimit"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// Defaults of Config.
const (
	DefaultNodeTokenTTL = 10 * time.Minute
	DefaultMaxBody      = 1 << 20
	DefaultTimeout      = 10 * time.Second
	// DefaultRegisterRate and DefaultRegisterBurst bound POST
	// /nodes/register per client address: 1 a second, 20 at once.
	DefaultRegisterRate  = 1.0
	DefaultRegisterBurst = 20
	// WebSocketPath is the hub endpoint a node dials with its token.
	WebSocketPath = "/connection/websocket"
)

// Service is what the adapter needs of the scheduler; *scheduler.Service
// implements it. Node methods take the verified public key.
type Service interface {
	RegisterNode(ctx context.Context, key ed25519.PublicKey, info scheduler.NodeInfo) (scheduler.Registration, error)
	Heartbeat(ctx context.Context, key ed25519.PublicKey, hb scheduler.HeartbeatInfo) (scheduler.NodeStatus, error)
	Verify(ctx context.Context, key ed25519.PublicKey) (scheduler.NodeStatus, error)
	NodeForToken(ctx context.Context, key ed25519.PublicKey) (scheduler.Node, error)
	CompleteChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, result json.RawMessage) (scheduler.Completion, error)
	FailChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, f scheduler.Failure) error
	ProgressChunk(ctx context.Context, key ed25519.PublicKey, chunkID, leaseID string, done int64) (time.Time, error)
	AssignedChunks(ctx context.Context, key ed25519.PublicKey) ([]scheduler.Assignment, error)

	CreateJob(ctx context.Context, owner string, spec scheduler.JobSpec) (scheduler.Created, error)
	Job(ctx context.Context, v scheduler.Viewer, id string) (scheduler.Job, error)
	Jobs(ctx context.Context, v scheduler.Viewer, q scheduler.JobQuery) ([]scheduler.Job, error)
	CancelJob(ctx context.Context, v scheduler.Viewer, id string) (scheduler.Job, error)
	ClaimNode(ctx context.Context, user, code, name string, maxParallel int) (scheduler.Node, error)
	Nodes(ctx context.Context, v scheduler.Viewer) ([]scheduler.Node, error)
	GrantNode(ctx context.Context, v scheduler.Viewer, nodeID, userID string) error
}

var _ Service = (*scheduler.Service)(nil)

// Config configures a Handler.
type Config struct {
	Service Service // required
	// Tokens verifies the user API's bearer tokens (the hub's connection
	// tokens: sub = user id); required.
	Tokens *auth.TokenVerifier
	// Signer mints the nodes' hub connection tokens; required. It must
	// match the hub's verifier (same secret, audience, issuer).
	Signer *auth.TokenSigner
	// APIKey is the server API key; requests carrying it act as a backend:
	// with a user field for that user, without one as admin. Empty = no
	// API key access.
	APIKey string
	// Nodes verifies signed node requests; nil = auth.NewNodeVerifier with
	// the defaults and Clock.
	Nodes *auth.NodeVerifier
	// NodeTokenTTL is the lifetime of the hub tokens the API mints: a
	// node's connection token and a user's subscription token to a job's
	// events (default 10m).
	NodeTokenTTL time.Duration
	// HubURL is the WebSocket URL given to nodes; "" = ws(s)://{request
	// Host}/connection/websocket.
	HubURL string
	// MaxBody bounds user API request bodies in bytes (default 1 MiB);
	// node bodies are bounded by Nodes.MaxBody.
	MaxBody int64
	// Timeout bounds one request's work (default 10s).
	Timeout time.Duration
	// RegisterRate (per second) and RegisterBurst bound POST
	// /nodes/register per client address, each of which can create a node
	// row; beyond them 429. 0 = the defaults; RegisterRate < 0 = no limit.
	RegisterRate  float64
	RegisterBurst int
	Clock         clock.Clock  // nil = wall clock
	Logger        *slog.Logger // nil = discard
	// Registerer receives switchboard_scheduler_http_requests_total; nil =
	// none.
	Registerer prometheus.Registerer
}

// Handler serves the scheduler's routes. It is safe for concurrent use and
// owns no goroutine. Mount it on every pattern of Patterns.
type Handler struct {
	cfg      Config
	clock    clock.Clock
	log      *slog.Logger
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	refused  *prometheus.CounterVec
	regLimit *ratelimit.Keyed // per client address
}

// Patterns are the ServeMux patterns the handler answers under.
func Patterns() []string { return []string{"/nodes", "/nodes/", "/jobs", "/jobs/", "/chunks/"} }

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil || cfg.Tokens == nil || cfg.Signer == nil {
		return nil, errors.New("schedapi: Service, Tokens and Signer are required")
	}
	c := clock.OrReal(cfg.Clock)
	if cfg.Nodes == nil {
		cfg.Nodes = auth.NewNodeVerifier(auth.NodeVerifierConfig{Now: c.Now})
	}
	if cfg.NodeTokenTTL <= 0 {
		cfg.NodeTokenTTL = DefaultNodeTokenTTL
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RegisterRate == 0 {
		cfg.RegisterRate = DefaultRegisterRate
	}
	if cfg.RegisterBurst <= 0 {
		cfg.RegisterBurst = DefaultRegisterBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{regLimit: ratelimit.NewKeyed(cfg.RegisterRate, cfg.RegisterBurst, 0), cfg: cfg, clock: c, log: cfg.Logger.With("component", "schedapi"), mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_scheduler_http_requests_total",
			Help: "Scheduler API requests by route and status class.",
		}, []string{"route", "status"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_scheduler_signature_failures_total",
			Help: "Signed node requests refused, by reason (the message sent to the node).",
		}, []string{"reason"})}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{h.requests, h.refused} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("schedapi: metrics: %w", err)
			}
		}
	}
	h.routes()
	return h, nil
}

// route is one endpoint: its method and the function serving it.
type route struct {
	method string
	serve  func(w http.ResponseWriter, r *http.Request)
}

func (h *Handler) routes() {
	add := func(path string, rts ...route) {
		h.mux.HandleFunc(path, h.instrument(path, rts...))
	}
	add("/nodes/register", route{http.MethodPost, h.limitRegister(h.node(h.register))})
	add("/nodes/heartbeat", route{http.MethodPost, h.node(h.heartbeat)})
	add("/nodes/verify", route{http.MethodPost, h.node(h.verify)})
	add("/nodes/token", route{http.MethodPost, h.node(h.token)})
	add("/chunks/complete", route{http.MethodPost, h.node(h.complete)})
	add("/chunks/fail", route{http.MethodPost, h.node(h.fail)})
	add("/chunks/progress", route{http.MethodPost, h.node(h.progress)})
	add("/chunks/assigned", route{http.MethodGet, h.node(h.assigned)})

	add("/jobs", route{http.MethodPost, h.user(h.createJob)}, route{http.MethodGet, h.user(h.listJobs)})
	add("/jobs/{id}", route{http.MethodGet, h.user(h.getJob)})
	add("/jobs/{id}/cancel", route{http.MethodPost, h.user(h.cancelJob)})
	add("/jobs/{id}/subscription", route{http.MethodPost, h.user(h.jobSubscription)})
	add("/nodes/claim", route{http.MethodPost, h.user(h.claim)})
	add("/nodes", route{http.MethodGet, h.user(h.listNodes)})
	add("/nodes/{id}/permissions", route{http.MethodPost, h.user(h.grant)})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.writeError(sw, r, errRouteNotFound.With("no such endpoint: "+r.Method+" "+r.URL.Path))
		h.count("unknown", sw.status)
	})
}

// instrument dispatches by method among routes (405 with Allow
// otherwise), bounds the request's context and counts the answer by name.
func (h *Handler) instrument(name string, routes ...route) http.HandlerFunc {
	var allow []string
	for _, x := range routes {
		allow = append(allow, x.method)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { h.count(name, sw.status) }()
		for _, x := range routes {
			if r.Method == x.method || (x.method == http.MethodGet && r.Method == http.MethodHead) {
				ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
				defer cancel()
				x.serve(sw, r.WithContext(ctx))
				return
			}
		}
		sw.Header().Set("Allow", strings.Join(allow, ", "))
		h.writeError(sw, r, errMethodNotAllowed(strings.Join(allow, " or ")))
	}
}

func (h *Handler) count(route string, status int) {
	h.requests.WithLabelValues(route, strconv.Itoa(status/100)+"xx").Inc()
}

// ServeHTTP serves the scheduler API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// readBody reads at most limit bytes; more is errBodyTooLarge (tooLarge
// as its message).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, tooLarge *errs.Error) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, errs.Wrap(errs.Invalid, err, "body: cannot read it")
	}
	return body, nil
}

// nodeHandler serves a verified node request.
type nodeHandler func(ctx context.Context, key ed25519.PublicKey, r *http.Request, body []byte) (any, error)

// node wraps a node API endpoint: read at most the verifier's limit, verify
// the signature (every failure 401 with the origin's message, an oversize
// body 413 "Body too large"), then serve.
func (h *Handler) node(fn nodeHandler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r, int64(h.cfg.Nodes.MaxBody()), auth.ErrNodeBodyTooLarge)
		if err != nil {
			if errors.Is(err, auth.ErrNodeBodyTooLarge) {
				h.refused.WithLabelValues(auth.ReasonBodyTooLarge).Inc()
			}
			h.writeError(w, r, err)
			return
		}
		hd := auth.NodeHeaders{Key: r.Header.Get(auth.HeaderNodeKey), Sig: r.Header.Get(auth.HeaderNodeSig), Ts: r.Header.Get(auth.HeaderNodeTs)}
		key, err := h.cfg.Nodes.Verify(hd, r.Method, r.URL.Path, body)
		if err != nil {
			if e := errs.Find(err); e != nil {
				h.refused.WithLabelValues(e.Reason).Inc() // one of auth's fixed reasons
			}
			h.writeError(w, r, err)
			return
		}
		out, err := fn(r.Context(), key, r, body)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, statusOK, out)
	}
}

// limitRegister refuses a registration beyond the client address's
// RegisterRate with 429 and Retry-After, before the body is read or the
// signature checked.
func (h *Handler) limitRegister(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := h.regLimit.Allow(ratelimit.Host(r.RemoteAddr), h.clock.Now()); !ok {
			secs := int((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			h.writeError(w, r, errRegisterLimited(secs))
			return
		}
		next(w, r)
	}
}

// caller is who makes a user API request.
type caller struct {
	viewer scheduler.Viewer
	// backend is set for API key requests (their user field names the
	// user; without it they act as admin).
	backend bool
}

// userHandler serves an authenticated user request; it returns the status
// (0 = 200) and the reply.
type userHandler func(ctx context.Context, c caller, r *http.Request, body []byte) (int, any, error)

// user wraps a user API endpoint: read the body (at most MaxBody),
// authenticate, serve.
func (h *Handler) user(fn userHandler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r, h.cfg.MaxBody, errBodyTooLarge(fmt.Sprintf("body: larger than %d bytes", h.cfg.MaxBody)))
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		c, err := h.authenticate(r)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		status, out, err := fn(r.Context(), c, r, body)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if status == 0 {
			status = statusOK
		}
		writeJSON(w, status, out)
	}
}

// authenticate accepts "Authorization: Bearer <JWT>" (the hub's
// connection tokens; sub is the user) or the server API key.
func (h *Handler) authenticate(r *http.Request) (caller, error) {
	authz := r.Header.Get("Authorization")
	if tok := auth.BearerToken(authz); tok != "" {
		claims, err := h.cfg.Tokens.VerifyConnect(tok)
		if err != nil {
			if errors.Is(err, auth.ErrTokenExpired) {
				return caller{}, errs.New(errs.Unauthorized, "token expired")
			}
			return caller{}, errs.Wrap(errs.Unauthorized, err, "invalid token")
		}
		if claims.User == "" {
			return caller{}, errs.New(errs.Unauthorized, "token has no sub: the user API needs a user")
		}
		return caller{viewer: scheduler.Viewer{UserID: claims.User}}, nil
	}
	key := auth.PresentedAPIKey(r.Header.Get("X-API-Key"), authz)
	if key == "" {
		return caller{}, errUnauthorized
	}
	if !auth.EqualSecret(h.cfg.APIKey, key) {
		return caller{}, errBadAPIKey
	}
	return caller{viewer: scheduler.Viewer{Admin: true}, backend: true}, nil
}

// as applies a request's user field: a backend acts for that user; a
// token's holder may not name another user.
func (c caller) as(user string) (caller, error) {
	if user == "" {
		return c, nil
	}
	if !c.backend {
		return c, invalid("user", "only requests with the API key may name a user")
	}
	return caller{viewer: scheduler.Viewer{UserID: user}, backend: true}, nil
}

// owner is the user a creating call acts for; an API key request without
// a user field has none.
func (c caller) owner() (string, error) {
	if c.viewer.UserID == "" {
		return "", invalid("user", "required with the API key (the user the call is for)")
	}
	return c.viewer.UserID, nil
}

// ownerAs is owner after as(user): the user a creating call acts for.
func (c caller) ownerAs(user string) (string, error) {
	c, err := c.as(user)
	if err != nil {
		return "", err
	}
	return c.owner()
}
