package schedapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// The user API. GET requests name a backend's user in the query (?user=),
// POST requests in the body's "user" field.

func (h *Handler) createJob(ctx context.Context, c caller, _ *http.Request, body []byte) (int, any, error) {
	var req createJobRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, nil, err
	}
	owner, err := c.ownerAs(req.User)
	if err != nil {
		return 0, nil, err
	}
	// The scheduler validates the spec; its errors name the field.
	out, err := h.cfg.Service.CreateJob(ctx, owner, scheduler.JobSpec{Config: req.Config, Iterations: req.Iterations,
		AccessType: scheduler.AccessType(req.AccessType), Priority: req.Priority})
	if err != nil {
		return 0, nil, err
	}
	return statusCreated, out, nil
}

// queryUser applies the ?user= of a GET request; other query parameters
// than allowed are refused by name.
func queryUser(c caller, q url.Values, allowed ...string) (caller, error) {
	for k := range q {
		if k != "user" && !contains(allowed, k) {
			return c, invalid(k, "unknown query parameter")
		}
	}
	return c.as(q.Get("user"))
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// jobsReply answers GET /jobs.
type jobsReply struct {
	Jobs []scheduler.Job `json:"jobs"`
}

func (h *Handler) listJobs(ctx context.Context, c caller, r *http.Request, _ []byte) (int, any, error) {
	q := r.URL.Query()
	c, err := queryUser(c, q, "status", "limit")
	if err != nil {
		return 0, nil, err
	}
	jq := scheduler.JobQuery{Status: scheduler.JobStatus(q.Get("status"))}
	switch jq.Status {
	case "", scheduler.JobPending, scheduler.JobRunning, scheduler.JobCompleted, scheduler.JobFailed, scheduler.JobCancelled:
	default:
		return 0, nil, invalid("status", "must be pending, running, completed, failed or cancelled")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > scheduler.MaxListLimit {
			return 0, nil, invalid("limit", "must be an integer from 1 to "+strconv.Itoa(scheduler.MaxListLimit))
		}
		jq.Limit = n
	}
	jobs, err := h.cfg.Service.Jobs(ctx, c.viewer, jq)
	if err != nil {
		return 0, nil, err
	}
	if jobs == nil {
		jobs = []scheduler.Job{}
	}
	return 0, jobsReply{Jobs: jobs}, nil
}

func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || strings.ContainsAny(id, "/ ") {
		return "", invalid("id", "missing or malformed in the path")
	}
	return id, nil
}

func (h *Handler) getJob(ctx context.Context, c caller, r *http.Request, _ []byte) (int, any, error) {
	c, err := queryUser(c, r.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(r)
	if err != nil {
		return 0, nil, err
	}
	j, err := h.cfg.Service.Job(ctx, c.viewer, id)
	return 0, j, err
}

func (h *Handler) cancelJob(ctx context.Context, c caller, r *http.Request, body []byte) (int, any, error) {
	var req userOnly
	if err := decodeBody(body, &req); err != nil {
		return 0, nil, err
	}
	c, err := c.as(req.User)
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(r)
	if err != nil {
		return 0, nil, err
	}
	j, err := h.cfg.Service.CancelJob(ctx, c.viewer, id)
	return 0, j, err
}

// subscriptionReply answers POST /jobs/{id}/subscription.
type subscriptionReply struct {
	Token     string    `json:"token"`
	Channel   string    `json:"channel"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// jobSubscription mints a subscription token to jobs:{id} for the caller's
// hub connection (the jobs namespace lets no client subscribe on its own),
// if the caller may see the job. With the API key the user field names the
// connection's user.
func (h *Handler) jobSubscription(ctx context.Context, c caller, r *http.Request, body []byte) (int, any, error) {
	var req userOnly
	if err := decodeBody(body, &req); err != nil {
		return 0, nil, err
	}
	c, err := c.as(req.User)
	if err != nil {
		return 0, nil, err
	}
	user, err := c.owner() // c.viewer below is the named user's
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(r)
	if err != nil {
		return 0, nil, err
	}
	if _, err := h.cfg.Service.Job(ctx, c.viewer, id); err != nil {
		return 0, nil, err
	}
	now := h.clock.Now()
	exp := now.Add(h.cfg.NodeTokenTTL).Truncate(time.Second)
	ch := scheduler.JobChannel(id)
	tok, err := h.cfg.Signer.SignSubscribe(auth.SubscribeClaims{User: user, Channel: ch, ExpireAt: exp.Unix()}, now)
	if err != nil {
		return 0, nil, err
	}
	return 0, subscriptionReply{Token: tok, Channel: ch, ExpiresAt: exp.UTC()}, nil
}

func (h *Handler) claim(ctx context.Context, c caller, _ *http.Request, body []byte) (int, any, error) {
	var req claimRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, nil, err
	}
	owner, err := c.ownerAs(req.User)
	if err != nil {
		return 0, nil, err
	}
	n, err := h.cfg.Service.ClaimNode(ctx, owner, req.Code, req.Name, req.MaxParallel)
	return 0, n, err
}

// nodesReply answers GET /nodes.
type nodesReply struct {
	Nodes []scheduler.Node `json:"nodes"`
}

func (h *Handler) listNodes(ctx context.Context, c caller, r *http.Request, _ []byte) (int, any, error) {
	c, err := queryUser(c, r.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	ns, err := h.cfg.Service.Nodes(ctx, c.viewer)
	if err != nil {
		return 0, nil, err
	}
	if ns == nil {
		ns = []scheduler.Node{}
	}
	return 0, nodesReply{Nodes: ns}, nil
}

// grantReply answers POST /nodes/{id}/permissions.
type grantReply struct {
	Success bool   `json:"success"`
	NodeID  string `json:"nodeId"`
	UserID  string `json:"userId"`
}

func (h *Handler) grant(ctx context.Context, c caller, r *http.Request, body []byte) (int, any, error) {
	var req grantRequest
	if err := decodeBody(body, &req); err != nil {
		return 0, nil, err
	}
	c, err := c.as(req.User)
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(r)
	if err != nil {
		return 0, nil, err
	}
	if err := h.cfg.Service.GrantNode(ctx, c.viewer, id, req.UserID); err != nil {
		return 0, nil, err
	}
	return 0, grantReply{Success: true, NodeID: id, UserID: req.UserID}, nil
}
