package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/centrifugal/centrifuge-go"

	"github.com/switchboard-rt/switchboard/internal/auth"
)

// SchedulerCmd is `switchboard bench scheduler`: it registers a node with
// a fresh Ed25519 key, claims it for --user (a connect token signed with
// --hmac-secret), connects the node to the hub with its own token, and then
// times, job after job, POST /jobs until the job's chunk arrives at the
// node over the hub; the node completes each chunk before the next job.
type SchedulerCmd struct {
	Server  string        `default:"http://127.0.0.1:8000" help:"Switchboard base URL (serve --scheduler)."`
	Secret  string        `name:"hmac-secret" required:"" help:"client.token.hmac_secret_key of the server, to sign the user's token."`
	User    string        `default:"bench" help:"User id that owns the node and the jobs."`
	Jobs    int           `default:"200" help:"Jobs to time (one chunk each)."`
	Timeout time.Duration `default:"10s" help:"Longest wait for one step (a request, a chunk)."`
}

// Validate checks the flags.
func (c *SchedulerCmd) Validate() error { return c.validate() }

func (c *SchedulerCmd) validate() error {
	u, err := url.Parse(c.Server)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("--server must be an http(s) URL, got %q", c.Server)
	case c.Secret == "":
		return errors.New("--hmac-secret must not be empty")
	case c.User == "":
		return errors.New("--user must not be empty")
	case c.Jobs < 1:
		return errors.New("--jobs must be at least 1")
	case c.Timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

// schedBench is one run's node and user.
type schedBench struct {
	c      *SchedulerCmd
	http   *http.Client
	priv   ed25519.PrivateKey
	bearer string
}

// Run executes the benchmark and prints percentiles of the latency.
func (c *SchedulerCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	tok, err := auth.NewTokenSigner(c.Secret, "", "").SignConnect(auth.ConnectClaims{User: c.User, ExpireAt: time.Now().Add(time.Hour).Unix()}, time.Now())
	if err != nil {
		return fmt.Errorf("--hmac-secret: %w", err)
	}
	b := &schedBench{c: c, http: &http.Client{Timeout: c.Timeout}, priv: priv, bearer: "Bearer " + tok}
	defer b.http.CloseIdleConnections()

	var reg struct {
		ID        string  `json:"id"`
		ClaimCode *string `json:"claimCode"`
	}
	if err := b.signed(ctx, "/nodes/register", map[string]any{"hostname": "bench", "totalCores": 1, "enabledCores": 1, "platform": "bench", "version": "bench"}, &reg); err != nil {
		return err
	}
	if reg.ClaimCode == nil {
		return errors.New("register: the fresh node came back claimed")
	}
	if err := b.user(ctx, http.MethodPost, "/nodes/claim", map[string]any{"code": *reg.ClaimCode, "name": "bench", "maxParallel": 1}, nil); err != nil {
		return err
	}
	var nt struct {
		Token string `json:"token"`
		URL   string `json:"url"`
	}
	if err := b.signed(ctx, "/nodes/token", nil, &nt); err != nil {
		return err
	}
	chunks := make(chan map[string]any, 16)
	client := centrifuge.NewJsonClient(nt.URL, centrifuge.Config{Token: nt.Token})
	defer client.Close()
	client.OnPublication(func(e centrifuge.ServerPublicationEvent) {
		if strings.HasPrefix(e.Channel, "chunks:") {
			var a map[string]any
			if json.Unmarshal(e.Data, &a) == nil {
				select {
				case chunks <- a:
				default:
				}
			}
		}
	})
	if err := client.Connect(); err != nil {
		return fmt.Errorf("connect %s: %w", nt.URL, err)
	}
	if err := b.waitOnline(ctx, reg.ID); err != nil {
		return err
	}

	lat := make([]time.Duration, 0, c.Jobs)
	for i := range c.Jobs {
		start := time.Now()
		if err := b.user(ctx, http.MethodPost, "/jobs", map[string]any{"config": map[string]any{"bench": i}, "iterations": 1, "accessType": "private"}, nil); err != nil {
			return err
		}
		var a map[string]any
		select {
		case a = <-chunks:
		case <-time.After(c.Timeout):
			return fmt.Errorf("job %d: no chunk at the node within %v", i, c.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		lat = append(lat, time.Since(start))
		result := map[string]any{"iterations": 1, "meanDps": 1, "stdDps": 0, "minDps": 1, "maxDps": 1}
		if err := b.signed(ctx, "/chunks/complete", map[string]any{"chunkId": a["id"], "leaseId": a["leaseId"], "result": result}, nil); err != nil {
			return err
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	_, err = fmt.Fprintf(output, "scheduler: %d jobs, POST /jobs → chunk at the node: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		len(lat), q(.5), q(.9), q(.99), q(1))
	return err
}

// waitOnline polls GET /nodes until the node shows online (its hub
// connection is in nodes:online).
func (b *schedBench) waitOnline(ctx context.Context, id string) error {
	deadline := time.Now().Add(b.c.Timeout)
	for {
		var list struct {
			Nodes []struct {
				ID     string `json:"id"`
				Online bool   `json:"online"`
			} `json:"nodes"`
		}
		if err := b.user(ctx, http.MethodGet, "/nodes", nil, &list); err != nil {
			return err
		}
		for _, n := range list.Nodes {
			if n.ID == id && n.Online {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not online within %v", id, b.c.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *schedBench) signed(ctx context.Context, path string, body any, out any) error {
	data := []byte{}
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
	}
	h := auth.SignNodeRequest(b.priv, time.Now().Unix(), http.MethodPost, path, data)
	return b.do(ctx, http.MethodPost, path, data, out, map[string]string{"X-Node-Key": h.Key, "X-Node-Sig": h.Sig, "X-Node-Ts": h.Ts})
}

func (b *schedBench) user(ctx context.Context, method, path string, body any, out any) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
	}
	return b.do(ctx, method, path, data, out, map[string]string{"Authorization": b.bearer})
}

func (b *schedBench) do(ctx context.Context, method, path string, body []byte, out any, headers map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(b.c.Server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}
