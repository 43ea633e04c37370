package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// Scheduler is what the administrator's views need of the scheduler;
// *scheduler.Service implements it. The console calls it with an admin
// viewer only: users go to the scheduler's user API with their token.
type Scheduler interface {
	Jobs(ctx context.Context, v scheduler.Viewer, q scheduler.JobQuery) ([]scheduler.Job, error)
	Nodes(ctx context.Context, v scheduler.Viewer) ([]scheduler.Node, error)
	CancelJob(ctx context.Context, v scheduler.Viewer, id string) (scheduler.Job, error)
}

var _ Scheduler = (*scheduler.Service)(nil)

var adminViewer = scheduler.Viewer{UserID: AdminUser, Admin: true}

// HubPath is the hub's WebSocket endpoint the page connects to.
const HubPath = "/connection/websocket"

var (
	errNotSignedIn = errs.New(errs.Unauthorized, "not signed in")
	errAdminOnly   = errs.New(errs.PermissionDenied, "administrator only")
	errNoScheduler = errs.New(errs.Unavailable, "the scheduler is not enabled (scheduler.enabled)")
)

// equalPassword compares in constant time, also for different lengths
// (the digests have one length).
func equalPassword(want, got string) bool {
	a, b := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
	return want != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// loginReply answers a sign-in and describes a session.
type loginReply struct {
	Role      string    `json:"role"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) error {
	addr := clientAddr(r)
	now := c.clock.Now()
	if d := c.limit.retryAfter(addr, now); d > 0 {
		secs := int(math.Ceil(d.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.logins.WithLabelValues("", "limited").Inc()
		return errs.New(errs.LimitExceeded, fmt.Sprintf("too many failed sign-ins from this address; try again in %d s", secs))
	}
	body, err := readJSON(w, r, maxLoginBody)
	if err != nil {
		return err
	}
	req, err := decodeLogin(body)
	if err != nil {
		return err
	}
	var ss session
	if req.Password != "" {
		if !equalPassword(c.cfg.Password, req.Password) {
			c.limit.fail(addr, now)
			c.logins.WithLabelValues(RoleAdmin, "failed").Inc()
			c.log.Warn("console sign-in failed", "addr", addr, "reason", "wrong password")
			return errs.New(errs.Unauthorized, "wrong password")
		}
		ss = session{Role: RoleAdmin, User: AdminUser, Exp: now.Add(c.cfg.SessionTTL).Unix()}
	} else {
		claims, err := c.cfg.Tokens.VerifyConnect(req.Token)
		if err == nil && claims.User == "" {
			err = errs.New(errs.Unauthorized, "the token names no user (sub claim)")
		}
		if err != nil {
			c.limit.fail(addr, now)
			c.logins.WithLabelValues(RoleUser, "failed").Inc()
			c.log.Warn("console sign-in failed", "addr", addr, "reason", err)
			switch {
			case errors.Is(err, auth.ErrTokenExpired):
				return errs.New(errs.Unauthorized, "token expired")
			case errs.CodeOf(err) == errs.Unauthorized && !errors.Is(err, auth.ErrTokenInvalid):
				return err
			}
			return errs.New(errs.Unauthorized, "invalid token")
		}
		exp := now.Add(c.cfg.SessionTTL).Unix()
		if claims.ExpireAt > 0 && claims.ExpireAt < exp {
			exp = claims.ExpireAt
		}
		ss = session{Role: RoleUser, User: claims.User, Exp: exp}
	}
	c.logins.WithLabelValues(ss.Role, "ok").Inc()
	http.SetCookie(w, c.cookie(r, c.seal.seal(ss), int(ss.Exp-now.Unix())))
	writeJSON(w, http.StatusOK, loginReply{Role: ss.Role, User: ss.User, ExpiresAt: time.Unix(ss.Exp, 0).UTC()})
	return nil
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, c.cookie(r, "", -1))
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// cookie builds the session cookie (maxAge < 0 deletes it).
func (c *Console) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)}
}

// secure: the page was loaded over HTTPS (directly or behind a proxy).
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// current returns the request's session.
func (c *Console) current(r *http.Request) (session, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, errNotSignedIn
	}
	ss, err := c.seal.open(ck.Value, c.clock.Now())
	if err != nil {
		return session{}, errNotSignedIn
	}
	return ss, nil
}

// channels are the feeds a session's hub connection is subscribed to.
func (c *Console) channels(ss session) []string {
	if ss.Role == RoleAdmin {
		if c.cfg.Scheduler == nil {
			return []string{FeedChannel}
		}
		return []string{JobsChannel, NodesChannel, FeedChannel}
	}
	if c.cfg.Scheduler == nil {
		return []string{}
	}
	return []string{JobsChannel + hub.UserBoundary + ss.User, NodesChannel + hub.UserBoundary + ss.User}
}

// issued is a token handed to the page.
type issued struct {
	Token     string    `json:"token"`
	User      string    `json:"user,omitempty"`
	URL       string    `json:"url,omitempty"`
	ExpiresAt time.Time `json:"expiresAt"`
	Channels  []string  `json:"channels,omitempty"`
}

// sessionReply describes the session with a fresh hub token (and, for a
// user, a fresh API token).
type sessionReply struct {
	loginReply
	Scheduler bool    `json:"scheduler"`
	Hub       issued  `json:"hub"`
	API       *issued `json:"api,omitempty"`
}

// issue signs a token for user with channels, valid for the token TTL but
// not beyond the session.
func (c *Console) issue(ss session, user string, channels []string) (issued, error) {
	now := c.clock.Now()
	exp := min(now.Add(c.cfg.HubTokenTTL).Unix(), ss.Exp)
	tok, err := c.cfg.Signer.SignConnect(auth.ConnectClaims{User: user, ExpireAt: exp, Channels: channels}, now)
	if err != nil {
		return issued{}, fmt.Errorf("console: sign token: %w", err)
	}
	return issued{Token: tok, User: user, ExpiresAt: time.Unix(exp, 0).UTC(), Channels: channels}, nil
}

func (c *Console) sessionInfo(w http.ResponseWriter, r *http.Request) error {
	ss, err := c.current(r)
	if err != nil {
		return err
	}
	hubTok, err := c.issue(ss, ss.User, c.channels(ss))
	if err != nil {
		return err
	}
	scheme := "ws"
	if secure(r) {
		scheme = "wss"
	}
	hubTok.URL = scheme + "://" + r.Host + HubPath
	rep := sessionReply{loginReply: loginReply{Role: ss.Role, User: ss.User, ExpiresAt: time.Unix(ss.Exp, 0).UTC()},
		Scheduler: c.cfg.Scheduler != nil, Hub: hubTok}
	if ss.Role == RoleUser {
		api, err := c.issue(ss, ss.User, nil)
		if err != nil {
			return err
		}
		rep.API = &api
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// apiToken signs a user API token: a user's own, or (administrator) any
// user's, with which the page calls the scheduler's user API as that user.
func (c *Console) apiToken(w http.ResponseWriter, r *http.Request) error {
	ss, err := c.current(r)
	if err != nil {
		return err
	}
	body, err := readJSON(w, r, maxLoginBody)
	if err != nil {
		return err
	}
	req, err := decodeTokenRequest(body)
	if err != nil {
		return err
	}
	user := req.User
	switch {
	case ss.Role == RoleUser && user == "":
		user = ss.User
	case ss.Role == RoleUser && user != ss.User:
		return errs.New(errs.PermissionDenied, "user: a user session signs tokens for itself only")
	case user == "":
		return errs.New(errs.Invalid, "user: required")
	}
	tok, err := c.issue(ss, user, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tok)
	return nil
}

// admin returns the session when it is the administrator's and the
// scheduler runs.
func (c *Console) admin(r *http.Request) error {
	ss, err := c.current(r)
	if err != nil {
		return err
	}
	if ss.Role != RoleAdmin {
		return errAdminOnly
	}
	if c.cfg.Scheduler == nil {
		return errNoScheduler
	}
	return nil
}

func (c *Console) adminJobs(w http.ResponseWriter, r *http.Request) error {
	if err := c.admin(r); err != nil {
		return err
	}
	q, err := jobQuery(r.URL.Query())
	if err != nil {
		return err
	}
	jobs, err := c.cfg.Scheduler.Jobs(r.Context(), adminViewer, q)
	if err != nil {
		return err
	}
	if jobs == nil {
		jobs = []scheduler.Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs})
	return nil
}

// jobQuery reads ?status= and ?limit= as GET /jobs does.
func jobQuery(v url.Values) (scheduler.JobQuery, error) {
	var q scheduler.JobQuery
	for k := range v {
		if k != "status" && k != "limit" {
			return q, errs.New(errs.Invalid, k+": unknown query parameter")
		}
	}
	q.Status = scheduler.JobStatus(v.Get("status"))
	switch q.Status {
	case "", scheduler.JobPending, scheduler.JobRunning, scheduler.JobCompleted, scheduler.JobFailed, scheduler.JobCancelled:
	default:
		return q, errs.New(errs.Invalid, "status: must be pending, running, completed, failed or cancelled")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > scheduler.MaxListLimit {
			return q, errs.New(errs.Invalid, fmt.Sprintf("limit: must be an integer from 1 to %d", scheduler.MaxListLimit))
		}
		q.Limit = n
	}
	return q, nil
}

func (c *Console) adminNodes(w http.ResponseWriter, r *http.Request) error {
	if err := c.admin(r); err != nil {
		return err
	}
	if len(r.URL.Query()) > 0 {
		return errs.New(errs.Invalid, "query: GET /console/api/nodes takes no parameters")
	}
	nodes, err := c.cfg.Scheduler.Nodes(r.Context(), adminViewer)
	if err != nil {
		return err
	}
	if nodes == nil {
		nodes = []scheduler.Node{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
	return nil
}

// cancelRequest is the body of POST /console/api/cancel.
type cancelRequest struct {
	JobID string `json:"jobId"`
}

// adminCancel cancels any job (the administrator; users cancel their own
// through POST /jobs/{id}/cancel).
func (c *Console) adminCancel(w http.ResponseWriter, r *http.Request) error {
	if err := c.admin(r); err != nil {
		return err
	}
	body, err := readJSON(w, r, maxLoginBody)
	if err != nil {
		return err
	}
	var req cancelRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if req.JobID == "" {
		return errs.New(errs.Invalid, "jobId: required")
	}
	j, err := c.cfg.Scheduler.CancelJob(r.Context(), adminViewer, req.JobID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// hubFigures answers the current hub figures (administrator), as the
// feed publishes them.
func (c *Console) hubFigures(w http.ResponseWriter, r *http.Request) error {
	ss, err := c.current(r)
	if err != nil {
		return err
	}
	if ss.Role != RoleAdmin {
		return errAdminOnly
	}
	writeJSON(w, http.StatusOK, figures(c.cfg.Hub, c.clock.Now()))
	return nil
}
