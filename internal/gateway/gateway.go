package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultBasePath    = "/__runner"
	DefaultTokenHeader = "x-runner-token"
	DefaultMaxBody     = 1 << 20
	DefaultRetryAfter  = time.Second
	preflightMaxAge    = "600"
)

// Config configures the Handler. Zero values mean the documented default.
type Config struct {
	// BasePath is the URL prefix (default "/__runner"); no trailing slash.
	BasePath string
	// Token, when set, must be sent in TokenHeader by every request except
	// CORS preflights; empty disables auth (New logs a warning).
	Token string
	// TokenHeader is the auth header (default "x-runner-token"). It is
	// never forwarded to workers.
	TokenHeader string
	// Origins decides which browser origins get CORS headers; nil allows
	// any origin ("*").
	Origins *origin.Checker
	// MaxBody bounds a request body in bytes (default 1 MiB); larger
	// bodies get 413 PAYLOAD_TOO_LARGE.
	MaxBody int64
	// RetryAfter is sent in Retry-After with 503 answers (default 1 s).
	RetryAfter time.Duration
	// Logger receives request errors (nil: discard).
	Logger *slog.Logger
}

// Pool is what the Handler needs from the worker pool; *worker.Pool
// implements it.
type Pool interface {
	Do(ctx context.Context, req worker.Request) (json.RawMessage, error)
	Exposed(kind worker.Kind, id string) bool
	Discovery() worker.Discovery
}

var _ Pool = (*worker.Pool)(nil)

// Handler serves the worker gateway routes under Config.BasePath. It is
// safe for concurrent use; mount it with mux.Handle(h.BasePath()+"/", h).
type Handler struct {
	cfg         Config
	pool        Pool
	log         *slog.Logger
	tokenSum    [32]byte
	tokenHeader string // canonical form
	tokenLower  string
	origins     *origin.Checker
	retryAfter  string
}

// New validates cfg, fills in defaults and returns the handler.
func New(cfg Config, pool Pool) (*Handler, error) {
	if pool == nil {
		return nil, errors.New("gateway: nil pool")
	}
	if cfg.BasePath == "" {
		cfg.BasePath = DefaultBasePath
	}
	cfg.BasePath = strings.TrimRight(cfg.BasePath, "/")
	if cfg.BasePath != "" && !strings.HasPrefix(cfg.BasePath, "/") {
		return nil, fmt.Errorf("gateway: base path %q must start with /", cfg.BasePath)
	}
	if cfg.TokenHeader == "" {
		cfg.TokenHeader = DefaultTokenHeader
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBody < 0 {
		return nil, errors.New("gateway: max body must not be negative")
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Origins == nil {
		cfg.Origins = origin.MustNew("*")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg:         cfg,
		pool:        pool,
		log:         cfg.Logger.With("component", "gateway"),
		tokenHeader: http.CanonicalHeaderKey(cfg.TokenHeader),
		tokenLower:  strings.ToLower(cfg.TokenHeader),
		origins:     cfg.Origins,
		retryAfter:  strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
	}
	if cfg.Token == "" {
		h.log.Warn("worker gateway has no token: anyone who can reach it may call the exposed tasks and events",
			"base_path", cfg.BasePath)
	} else {
		h.tokenSum = sha256.Sum256([]byte(cfg.Token))
	}
	return h, nil
}

// BasePath returns the configured prefix, e.g. "/__runner".
func (h *Handler) BasePath() string { return h.cfg.BasePath }

type route uint8

const (
	routeUnknown route = iota
	routeTask
	routeEvent
	routeDiscovery
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, id, ok := h.parsePath(r)
	originOK := h.cors(w, r)
	if r.Method == http.MethodOptions {
		h.preflight(w, r, rt, originOK)
		return
	}
	if !h.authorized(r) {
		h.writeError(w, r, errUnauthorized)
		return
	}
	if !ok || rt == routeUnknown {
		h.writeError(w, r, &worker.Error{Code: worker.CodeNotFound, Message: "no such route"})
		return
	}
	switch rt {
	case routeDiscovery:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			h.writeError(w, r, errMethodNotAllowed("use GET or POST"))
			return
		}
		h.discovery(w)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		h.writeError(w, r, errMethodNotAllowed("use POST"))
		return
	}
	kind, key := worker.KindTask, "input"
	if rt == routeEvent {
		kind, key = worker.KindEvent, "payload"
	}
	if id == "" || !h.pool.Exposed(kind, id) {
		h.writeError(w, r, &worker.Error{Code: worker.CodeNotExposed, Message: kind.String() + " not exposed"})
		return
	}
	input, err := h.readInput(w, r, key)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	res, err := h.pool.Do(r.Context(), worker.Request{Kind: kind, ID: id, Input: input, Context: h.requestContext(r)})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if kind == worker.KindEvent || len(res) == 0 {
		_, _ = w.Write([]byte(`{"ok":true}`))
		return
	}
	buf := make([]byte, 0, len(res)+len(`{"ok":true,"result":}`))
	buf = append(buf, `{"ok":true,"result":`...)
	buf = append(buf, res...)
	buf = append(buf, '}')
	_, _ = w.Write(buf)
}

// parsePath splits {base}/task/{id}, {base}/event/{id} and
// {base}/discovery; ids are URL-decoded and may contain "/".
func (h *Handler) parsePath(r *http.Request) (route, string, bool) {
	p := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(p, h.cfg.BasePath+"/")
	if !ok {
		return routeUnknown, "", false
	}
	switch {
	case rest == "discovery":
		return routeDiscovery, "", true
	case strings.HasPrefix(rest, "task/"):
		id, err := url.PathUnescape(rest[len("task/"):])
		return routeTask, id, err == nil
	case strings.HasPrefix(rest, "event/"):
		id, err := url.PathUnescape(rest[len("event/"):])
		return routeEvent, id, err == nil
	}
	return routeUnknown, "", false
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	got := r.Header.Get(h.tokenHeader)
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1 && got != ""
}

// cors sets the allow-origin header on w when the request has an Origin
// the policy allows and reports whether it has.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	if h.origins.Any() {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		return true
	}
	w.Header().Add("Vary", "Origin")
	if h.origins.Allowed(o, r.Host) {
		w.Header().Set("Access-Control-Allow-Origin", o)
		return true
	}
	return false
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, rt route, originOK bool) {
	hd := w.Header()
	if originOK {
		if rt == routeDiscovery {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		} else {
			hd.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		}
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			hd.Set("Access-Control-Allow-Headers", req)
		} else {
			hd.Set("Access-Control-Allow-Headers", "content-type, "+h.tokenLower)
		}
		hd.Set("Access-Control-Max-Age", preflightMaxAge)
		hd.Add("Vary", "Access-Control-Request-Headers")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) discovery(w http.ResponseWriter) {
	d := h.pool.Discovery()
	type allowList struct {
		Enabled bool     `json:"enabled"`
		Tasks   []string `json:"tasks"`
		Events  []string `json:"events"`
	}
	type result struct {
		AllowList allowList `json:"allowList"`
	}
	body, _ := json.Marshal(struct {
		OK     bool   `json:"ok"`
		Result result `json:"result"`
	}{true, result{allowList{d.Enabled, nonNil(d.Tasks), nonNil(d.Events)}}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// readInput reads the body and extracts key ("input" or "payload") from a
// top-level object; a body without that key is the input itself.
func (h *Handler) readInput(w http.ResponseWriter, r *http.Request, key string) (json.RawMessage, error) {
	if r.ContentLength > h.cfg.MaxBody {
		return nil, errPayloadTooLarge("body exceeds " + strconv.FormatInt(h.cfg.MaxBody, 10) + " bytes")
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errPayloadTooLarge("body exceeds " + strconv.FormatInt(h.cfg.MaxBody, 10) + " bytes")
		}
		return nil, &worker.Error{Code: worker.CodeInvalidInput, Message: "cannot read body", Err: err}
	}
	body := bytes.TrimSpace(buf.Bytes())
	if len(body) == 0 {
		return nil, nil
	}
	if !json.Valid(body) {
		return nil, &worker.Error{Code: worker.CodeInvalidInput, Message: "body is not valid JSON"}
	}
	if body[0] == '{' {
		if v, ok := topLevelValue(body, key); ok {
			return v, nil
		}
	}
	return body, nil
}

// requestContext builds the context sent to the worker: method, path,
// query (first value per key) and lower-cased headers without the token.
func (h *Handler) requestContext(r *http.Request) *worker.RequestContext {
	c := &worker.RequestContext{Method: r.Method, Path: r.URL.Path}
	if len(r.URL.RawQuery) > 0 {
		q := r.URL.Query()
		c.Query = make(map[string]string, len(q))
		for k, v := range q {
			if len(v) > 0 {
				c.Query[k] = v[0]
			}
		}
	}
	c.Headers = make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		if k == h.tokenHeader || len(v) == 0 {
			continue
		}
		c.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return c
}
