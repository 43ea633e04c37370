package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/clock"
)

// maxResponse bounds a node API response body.
const maxResponse = 16 << 20

// ID is a scheduler identifier (node, job, chunk, lease) as the server
// sends it: a JSON string or number, kept verbatim so it goes back exactly
// as received.
type ID struct{ raw string }

// String returns the id's text (a string's contents or a number's digits).
func (id ID) String() string {
	var s string
	if json.Unmarshal([]byte(id.raw), &s) == nil {
		return s
	}
	return id.raw
}

// IsZero reports whether the id is absent.
func (id ID) IsZero() bool { return id.raw == "" || id.raw == "null" || id.raw == `""` }

// UnmarshalJSON accepts a string or a number.
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || (b[0] != '"' && (b[0] < '0' || b[0] > '9') && b[0] != 'n') {
		return fmt.Errorf("id must be a string or a number, got %.20s", b)
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else if b[0] != 'n' {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
	}
	id.raw = string(b)
	return nil
}

// MarshalJSON writes the id as received.
func (id ID) MarshalJSON() ([]byte, error) {
	if id.raw == "" {
		return []byte("null"), nil
	}
	return []byte(id.raw), nil
}

// api is the signed HTTP client of the node API. It is safe for concurrent
// use.
type api struct {
	base   *url.URL
	key    ed25519.PrivateKey
	hc     *http.Client
	clock  clock.Clock
	stamps stamper
}

func newAPI(server string, key ed25519.PrivateKey, hc *http.Client, clk clock.Clock) (*api, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", server, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://HOST:PORT or https://HOST", server)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: no query or fragment allowed", server)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &api{base: u, key: key, hc: hc, clock: clk}, nil
}

// call sends a signed request (in marshalled as the JSON body; nil sends
// an empty body) and decodes a 2xx answer into out (when not nil). A
// non-2xx answer is an *APIError.
func (a *api) call(ctx context.Context, method, path string, in, out any) error {
	err := a.send(ctx, method, path, in, out)
	if replayed(err) {
		// The same request was signed in this second by an earlier run of
		// this node (a restart): the next second gives a new signature.
		err = a.send(ctx, method, path, in, out)
	}
	return err
}

func (a *api) send(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
	}
	u := *a.base
	u.Path = a.base.Path + path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	ts, wait := a.stamps.reserve(a.clock.Now(), method, u.Path, body)
	// (a retry after a replay reserves the next second: the stamper has
	// this one.)
	if wait > 0 && !sleepClock(ctx, a.clock, wait) {
		return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
	}
	Sign(req.Header, a.key, ts, method, u.Path, body)
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: response over %d bytes", method, path, maxResponse)
	}
	if !success(resp.StatusCode) {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return fmt.Errorf("%s %s: %w", method, path, &APIError{Status: resp.StatusCode, Message: msg})
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Wire types of the node API (issue 11, SCHED.md).

type registerRequest struct {
	Hostname     string `json:"hostname"`
	TotalCores   int    `json:"totalCores"`
	EnabledCores int    `json:"enabledCores"`
	Platform     string `json:"platform"`
	Version      string `json:"version"`
	// Instance names this process (Node.instance): the scheduler ignores
	// a late draining heartbeat of an older process of the same key.
	Instance string `json:"instance"`
}

type registerResponse struct {
	ID        ID      `json:"id"`
	ClaimCode *string `json:"claimCode"`
	Claimed   bool    `json:"claimed"`
}

// nodeInfo is the answer of /nodes/verify and /nodes/heartbeat.
type nodeInfo struct {
	ID          ID     `json:"id"`
	Name        string `json:"name"`
	MaxParallel int    `json:"maxParallel"`
	Status      string `json:"status"`
}

// heartbeatRequest is a heartbeat; Draining says the process is shutting
// down (the scheduler assigns the node no more chunks until it registers
// again).
type heartbeatRequest struct {
	Status   string `json:"status,omitempty"`
	Draining bool   `json:"draining,omitempty"`
	Instance string `json:"instance,omitempty"`
}

type tokenResponse struct {
	Token     string    `json:"token"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expiresAt"`
	Channels  []string  `json:"channels"`
}

type completeRequest struct {
	ChunkID ID              `json:"chunkId"`
	LeaseID ID              `json:"leaseId"`
	Result  json.RawMessage `json:"result"`
}

type completeResponse struct {
	Success          bool `json:"success"`
	JobComplete      bool `json:"jobComplete"`
	AlreadyCompleted bool `json:"alreadyCompleted"`
}

type chunkError struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
}

type failRequest struct {
	ChunkID   ID         `json:"chunkId"`
	LeaseID   ID         `json:"leaseId"`
	Error     chunkError `json:"error"`
	Retryable bool       `json:"retryable"`
}

type progressRequest struct {
	ChunkID ID    `json:"chunkId"`
	LeaseID ID    `json:"leaseId"`
	Done    int64 `json:"done"`
}

// progressResponse is decoded leniently: a server may send the lease's new
// deadline.
type progressResponse struct {
	Deadline time.Time `json:"deadline"`
}

// sleepClock waits d on clk; false when ctx ended first.
func sleepClock(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	ch := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(ch) })
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
