package schedapi

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
)

// The node API. Each handler gets the key the signature was verified with.

func (h *Handler) register(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	var req registerRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	return h.cfg.Service.RegisterNode(ctx, key, scheduler.NodeInfo{Hostname: req.Hostname, TotalCores: req.TotalCores,
		EnabledCores: req.EnabledCores, Platform: req.Platform, Version: req.Version, Instance: req.Instance})
}

func (h *Handler) heartbeat(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	var req heartbeatRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	return h.cfg.Service.Heartbeat(ctx, key, scheduler.HeartbeatInfo{Status: req.Status, Draining: req.Draining, Instance: req.Instance})
}

func (h *Handler) verify(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	if err := decodeBody(body, &struct{}{}); err != nil {
		return nil, err
	}
	return h.cfg.Service.Verify(ctx, key)
}

// tokenReply answers POST /nodes/token.
type tokenReply struct {
	Token     string    `json:"token"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expiresAt"`
	Channels  []string  `json:"channels"`
}

// NodeChannels are the server-side subscriptions of a node's hub token.
func NodeChannels(nodeID string) []string {
	return []string{scheduler.NodeChannel(nodeID), scheduler.ChunksChannel(nodeID), scheduler.ChannelOnline}
}

func (h *Handler) token(ctx context.Context, key ed25519.PublicKey, r *http.Request, body []byte) (any, error) {
	if err := decodeBody(body, &struct{}{}); err != nil {
		return nil, err
	}
	n, err := h.cfg.Service.NodeForToken(ctx, key)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	exp := now.Add(h.cfg.NodeTokenTTL).Truncate(time.Second)
	chans := NodeChannels(n.ID)
	tok, err := h.cfg.Signer.SignConnect(auth.ConnectClaims{User: n.ID, ExpireAt: exp.Unix(), Channels: chans}, now)
	if err != nil {
		return nil, err
	}
	return tokenReply{Token: tok, URL: h.hubURL(r), ExpiresAt: exp.UTC(), Channels: chans}, nil
}

// hubURL is Config.HubURL, or the WebSocket URL of this server as the node
// reached it: wss when the request came over TLS (or through a proxy that
// says X-Forwarded-Proto: https), ws otherwise.
func (h *Handler) hubURL(r *http.Request) string {
	if h.cfg.HubURL != "" {
		return h.cfg.HubURL
	}
	scheme := "ws"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "wss"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: WebSocketPath}).String()
}

func leaseOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (h *Handler) complete(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	var req completeRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req.ChunkID == "" {
		return nil, invalid("chunkId", "required")
	}
	if len(req.Result) == 0 || string(req.Result) == "null" {
		return nil, invalid("result", "required")
	}
	return h.cfg.Service.CompleteChunk(ctx, key, req.ChunkID, leaseOf(req.LeaseID), req.Result)
}

// successReply answers /chunks/fail and /chunks/progress.
type successReply struct {
	Success  bool       `json:"success"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

func (h *Handler) fail(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	var req failRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req.ChunkID == "" {
		return nil, invalid("chunkId", "required")
	}
	if req.Error == nil || strings.TrimSpace(req.Error.Message) == "" {
		return nil, invalid("error.message", "required")
	}
	f := scheduler.Failure{Message: req.Error.Message, Code: req.Error.Code, Retryable: req.Retryable}
	if err := h.cfg.Service.FailChunk(ctx, key, req.ChunkID, leaseOf(req.LeaseID), f); err != nil {
		return nil, err
	}
	return successReply{Success: true}, nil
}

func (h *Handler) progress(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	var req progressRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	if req.ChunkID == "" {
		return nil, invalid("chunkId", "required")
	}
	dl, err := h.cfg.Service.ProgressChunk(ctx, key, req.ChunkID, leaseOf(req.LeaseID), req.Done)
	if err != nil {
		return nil, err
	}
	dl = dl.UTC()
	return successReply{Success: true, Deadline: &dl}, nil
}

// assignedReply answers GET /chunks/assigned.
type assignedReply struct {
	Chunks []scheduler.Assignment `json:"chunks"`
}

func (h *Handler) assigned(ctx context.Context, key ed25519.PublicKey, _ *http.Request, body []byte) (any, error) {
	if len(strings.TrimSpace(string(body))) > 0 {
		return nil, invalid("body", "GET /chunks/assigned takes none")
	}
	cs, err := h.cfg.Service.AssignedChunks(ctx, key)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		cs = []scheduler.Assignment{}
	}
	return assignedReply{Chunks: cs}, nil
}
