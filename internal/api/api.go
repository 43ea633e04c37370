// Package api is the Centrifugo-compatible server HTTP API: POST
// /api/{method} with an API key, Centrifugo's request and reply shapes.
package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// DefaultMaxBody caps request bodies.
const DefaultMaxBody = 1 << 20

// Config configures a Handler.
type Config struct {
	Hub *hub.Hub // required
	// Key is the API key; requests must carry it in X-API-Key or
	// "Authorization: apikey KEY". Empty Key with Insecure false rejects
	// every request.
	Key      string
	Insecure bool
	// RPC serves the rpc method; nil answers method not found.
	RPC        hub.RPCHandler
	MaxBody    int64
	NodeName   string
	Version    string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Handler serves /api/{method}.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	methods  map[string]method
}

type method func(ctx context.Context, body json.RawMessage) (any, error)

// New returns the API handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Hub == nil {
		return nil, errors.New("api: hub is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "api"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_api_requests_total", Help: "Server API requests by method and result.",
		}, []string{"method", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchboard_api_request_duration_seconds", Help: "Server API latency by method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method"}),
	}
	h.methods = map[string]method{
		"publish": h.publish, "broadcast": h.broadcast, "subscribe": h.subscribe, "unsubscribe": h.unsubscribe,
		"disconnect": h.disconnect, "refresh": h.refresh, "presence": h.presence, "presence_stats": h.presenceStats,
		"history": h.history, "history_remove": h.historyRemove, "channels": h.channels, "info": h.info,
		"batch": h.batch, "rpc": h.rpc,
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{h.requests, h.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// apiError is the wire error object.
type apiError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

func toAPIError(err error) *apiError {
	he := hub.AsError(err)
	return &apiError{Code: he.Code, Message: he.Message}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeHTTPError answers a request rejected before any method ran.
func writeHTTPError(w http.ResponseWriter, status int, code uint32, msg string) {
	writeJSON(w, status, map[string]any{"error": apiError{Code: code, Message: msg}})
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Insecure {
		return true
	}
	key := r.Header.Get("X-API-Key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "apikey ") {
			key = strings.TrimSpace(a[7:])
		}
	}
	return auth.EqualSecret(h.cfg.Key, key)
}

// ServeHTTP dispatches POST /api/{method}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api"), "/")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, http.StatusMethodNotAllowed, 107, "method not allowed, use POST")
		return
	}
	if !h.authorized(r) {
		h.requests.WithLabelValues("unauthorized", "error").Inc()
		writeHTTPError(w, http.StatusUnauthorized, 101, "unauthorized")
		return
	}
	m, ok := h.methods[name]
	if !ok {
		h.requests.WithLabelValues("unknown", "error").Inc()
		writeHTTPError(w, http.StatusNotFound, 104, fmt.Sprintf("method %q not found", name))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeHTTPError(w, http.StatusRequestEntityTooLarge, 107, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody))
			return
		}
		writeHTTPError(w, http.StatusBadRequest, 107, "cannot read body")
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) || body[0] != '{' {
		h.requests.WithLabelValues(name, "error").Inc()
		writeHTTPError(w, http.StatusBadRequest, 107, "body must be a JSON object")
		return
	}
	start := time.Now()
	res, err := m(r.Context(), body)
	h.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		var be *badBody
		if errors.As(err, &be) {
			h.requests.WithLabelValues(name, "error").Inc()
			writeHTTPError(w, http.StatusBadRequest, 107, be.msg)
			return
		}
		h.requests.WithLabelValues(name, "error").Inc()
		if hub.AsError(err) == hub.ErrInternal {
			h.log.Error("api method failed", "method", name, "error", err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"error": toAPIError(err)})
		return
	}
	h.requests.WithLabelValues(name, "ok").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"result": res})
}

// badBody is a request body that does not match the method's shape: HTTP
// 400 rather than an error object.
type badBody struct{ msg string }

func (e *badBody) Error() string { return e.msg }

// decode reads a method's request; unknown fields are ignored so that
// requests of newer Centrifugo clients still work.
func decode(body json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return &badBody{msg: "malformed request: " + err.Error()}
	}
	return nil
}

func required(field, v string) error {
	if v == "" {
		return &hub.Error{Code: 107, Message: "bad request: " + field + " required"}
	}
	return nil
}

type publishRequest struct {
	Channel        string            `json:"channel"`
	Data           json.RawMessage   `json:"data"`
	B64Data        string            `json:"b64data"`
	SkipHistory    bool              `json:"skip_history"`
	Tags           map[string]string `json:"tags"`
	IdempotencyKey string            `json:"idempotency_key"`
}

type publishResult struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

func payload(data json.RawMessage, b64 string) ([]byte, error) {
	if b64 != "" {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, &hub.Error{Code: 107, Message: "bad request: b64data is not base64"}
		}
		return b, nil
	}
	if len(data) == 0 || string(data) == "null" {
		return nil, &hub.Error{Code: 107, Message: "bad request: data required"}
	}
	return append([]byte(nil), data...), nil
}

func (h *Handler) publishOne(ctx context.Context, ch string, data []byte, skipHistory bool, tags map[string]string) (publishResult, error) {
	opts, err := h.cfg.Hub.ChannelOptions(ch)
	if err != nil {
		return publishResult{}, err
	}
	sp, err := h.cfg.Hub.PublishWithOptions(ctx, ch, &hub.Publication{Data: data, Tags: tags, Time: time.Now().UnixMilli()}, opts, skipHistory)
	if err != nil {
		return publishResult{}, err
	}
	return publishResult{Offset: sp.Offset, Epoch: sp.Epoch}, nil
}

func (h *Handler) publish(ctx context.Context, body json.RawMessage) (any, error) {
	var req publishRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	data, err := payload(req.Data, req.B64Data)
	if err != nil {
		return nil, err
	}
	return h.publishOne(ctx, req.Channel, data, req.SkipHistory, req.Tags)
}

type broadcastRequest struct {
	Channels       []string          `json:"channels"`
	Data           json.RawMessage   `json:"data"`
	B64Data        string            `json:"b64data"`
	SkipHistory    bool              `json:"skip_history"`
	Tags           map[string]string `json:"tags"`
	IdempotencyKey string            `json:"idempotency_key"`
}

type itemResponse struct {
	Result any       `json:"result,omitempty"`
	Error  *apiError `json:"error,omitempty"`
}

func (h *Handler) broadcast(ctx context.Context, body json.RawMessage) (any, error) {
	var req broadcastRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Channels) == 0 {
		return nil, &hub.Error{Code: 107, Message: "bad request: channels required"}
	}
	data, err := payload(req.Data, req.B64Data)
	if err != nil {
		return nil, err
	}
	out := make([]itemResponse, len(req.Channels))
	for i, ch := range req.Channels {
		res, err := h.publishOne(ctx, ch, data, req.SkipHistory, req.Tags)
		if err != nil {
			out[i].Error = toAPIError(err)
			continue
		}
		out[i].Result = res
	}
	return map[string]any{"responses": out}, nil
}

type streamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

type subscribeRequest struct {
	User         string          `json:"user"`
	Channel      string          `json:"channel"`
	Client       string          `json:"client"`
	Session      string          `json:"session"`
	Info         json.RawMessage `json:"info"`
	B64Info      string          `json:"b64info"`
	RecoverSince *streamPosition `json:"recover_since"`
}

func (h *Handler) subscribe(ctx context.Context, body json.RawMessage) (any, error) {
	var req subscribeRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	if _, err := h.cfg.Hub.ChannelOptions(req.Channel); err != nil {
		return nil, err
	}
	opts := hub.ServerSubscribe{ChanInfo: req.Info}
	if req.B64Info != "" {
		b, err := base64.StdEncoding.DecodeString(req.B64Info)
		if err != nil {
			return nil, &hub.Error{Code: 107, Message: "bad request: b64info is not base64"}
		}
		opts.ChanInfo = b
	}
	if req.RecoverSince != nil {
		opts.RecoverSince = &hub.StreamPosition{Offset: req.RecoverSince.Offset, Epoch: req.RecoverSince.Epoch}
	}
	for _, c := range h.cfg.Hub.UserClients(req.User, req.Client) {
		if err := c.ServerSubscribe(ctx, req.Channel, opts); err != nil && !errors.Is(err, hub.ErrAlreadySubscribed) {
			return nil, err
		}
	}
	return struct{}{}, nil
}

type unsubscribeRequest struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
	Client  string `json:"client"`
	Session string `json:"session"`
}

func (h *Handler) unsubscribe(ctx context.Context, body json.RawMessage) (any, error) {
	var req unsubscribeRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	for _, c := range h.cfg.Hub.UserClients(req.User, req.Client) {
		c.ServerUnsubscribe(ctx, req.Channel, 0, "")
	}
	return struct{}{}, nil
}

type disconnectObject struct {
	Code   uint32 `json:"code"`
	Reason string `json:"reason"`
}

type disconnectRequest struct {
	User       string            `json:"user"`
	Client     string            `json:"client"`
	Session    string            `json:"session"`
	Whitelist  []string          `json:"whitelist"`
	Disconnect *disconnectObject `json:"disconnect"`
}

func (h *Handler) disconnect(_ context.Context, body json.RawMessage) (any, error) {
	var req disconnectRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	d := hub.DisconnectForceNoReconnect
	if req.Disconnect != nil {
		if req.Disconnect.Code < 3000 || req.Disconnect.Code > 4999 {
			return nil, &hub.Error{Code: 107, Message: "bad request: disconnect code must be in 3000-4999"}
		}
		d = hub.Disconnect{Code: req.Disconnect.Code, Reason: req.Disconnect.Reason}
	}
	keep := map[string]bool{}
	for _, id := range req.Whitelist {
		keep[id] = true
	}
	for _, c := range h.cfg.Hub.UserClients(req.User, req.Client) {
		if !keep[c.ID()] {
			c.Disconnect(d)
		}
	}
	return struct{}{}, nil
}

type refreshRequest struct {
	User     string          `json:"user"`
	Client   string          `json:"client"`
	Session  string          `json:"session"`
	Expired  bool            `json:"expired"`
	ExpireAt int64           `json:"expire_at"`
	Info     json.RawMessage `json:"info"`
}

func (h *Handler) refresh(_ context.Context, body json.RawMessage) (any, error) {
	var req refreshRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	for _, c := range h.cfg.Hub.UserClients(req.User, req.Client) {
		c.Refresh(req.ExpireAt, req.Expired, req.Info)
	}
	return struct{}{}, nil
}

type channelRequest struct {
	Channel string `json:"channel"`
}

type clientInfo struct {
	User     string          `json:"user"`
	Client   string          `json:"client"`
	ConnInfo json.RawMessage `json:"conn_info,omitempty"`
	ChanInfo json.RawMessage `json:"chan_info,omitempty"`
}

func toClientInfo(i *hub.ClientInfo) *clientInfo {
	if i == nil {
		return nil
	}
	return &clientInfo{User: i.UserID, Client: i.ClientID, ConnInfo: rawJSON(i.ConnInfo), ChanInfo: rawJSON(i.ChanInfo)}
}

// rawJSON returns b when it is JSON, else nil (binary infos are not shown).
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 || !json.Valid(b) {
		return nil
	}
	return b
}

func (h *Handler) channelArg(body json.RawMessage) (string, error) {
	var req channelRequest
	if err := decode(body, &req); err != nil {
		return "", err
	}
	return req.Channel, required("channel", req.Channel)
}

func (h *Handler) presence(ctx context.Context, body json.RawMessage) (any, error) {
	ch, err := h.channelArg(body)
	if err != nil {
		return nil, err
	}
	p, err := h.cfg.Hub.Presence(ctx, ch)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*clientInfo, len(p))
	for id, info := range p {
		out[id] = toClientInfo(info)
	}
	return map[string]any{"presence": out}, nil
}

func (h *Handler) presenceStats(ctx context.Context, body json.RawMessage) (any, error) {
	ch, err := h.channelArg(body)
	if err != nil {
		return nil, err
	}
	st, err := h.cfg.Hub.PresenceStats(ctx, ch)
	if err != nil {
		return nil, err
	}
	return map[string]int{"num_clients": st.NumClients, "num_users": st.NumUsers}, nil
}

type historyRequest struct {
	Channel string          `json:"channel"`
	Limit   *int            `json:"limit"`
	Since   *streamPosition `json:"since"`
	Reverse bool            `json:"reverse"`
}

type publication struct {
	Data   json.RawMessage   `json:"data,omitempty"`
	B64    string            `json:"b64data,omitempty"`
	Info   *clientInfo       `json:"info,omitempty"`
	Offset uint64            `json:"offset,omitempty"`
	Tags   map[string]string `json:"tags,omitempty"`
}

func (h *Handler) history(ctx context.Context, body json.RawMessage) (any, error) {
	var req historyRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	opts := hub.HistoryOptions{Limit: 0, Reverse: req.Reverse}
	if req.Limit != nil {
		opts.Limit = *req.Limit
	}
	if req.Since != nil {
		opts.Since = &hub.StreamPosition{Offset: req.Since.Offset, Epoch: req.Since.Epoch}
	}
	hr, err := h.cfg.Hub.History(ctx, req.Channel, opts)
	if err != nil {
		return nil, err
	}
	if req.Since != nil && req.Since.Epoch != "" && req.Since.Epoch != hr.Position.Epoch {
		return nil, hub.ErrUnrecoverablePosition
	}
	pubs := make([]publication, len(hr.Publications))
	for i, p := range hr.Publications {
		pubs[i] = publication{Info: toClientInfo(p.Info), Offset: p.Offset, Tags: p.Tags}
		if json.Valid(p.Data) {
			pubs[i].Data = p.Data
		} else {
			pubs[i].B64 = base64.StdEncoding.EncodeToString(p.Data)
		}
	}
	return map[string]any{"publications": pubs, "offset": hr.Position.Offset, "epoch": hr.Position.Epoch}, nil
}

func (h *Handler) historyRemove(ctx context.Context, body json.RawMessage) (any, error) {
	ch, err := h.channelArg(body)
	if err != nil {
		return nil, err
	}
	if err := h.cfg.Hub.RemoveHistory(ctx, ch); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

type channelsRequest struct {
	Pattern string `json:"pattern"`
}

func (h *Handler) channels(_ context.Context, body json.RawMessage) (any, error) {
	var req channelsRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Pattern != "" {
		if _, err := path.Match(req.Pattern, ""); err != nil {
			return nil, &hub.Error{Code: 107, Message: "bad request: invalid pattern"}
		}
	}
	out := map[string]map[string]int{}
	for ch, n := range h.cfg.Hub.Channels() {
		if req.Pattern != "" {
			if ok, _ := path.Match(req.Pattern, ch); !ok {
				continue
			}
		}
		out[ch] = map[string]int{"num_clients": n}
	}
	return map[string]any{"channels": out}, nil
}

func (h *Handler) info(_ context.Context, body json.RawMessage) (any, error) {
	if err := decode(body, &struct{}{}); err != nil {
		return nil, err
	}
	hb := h.cfg.Hub
	node := map[string]any{
		"uid": h.cfg.NodeName, "name": h.cfg.NodeName, "version": h.cfg.Version,
		"num_clients": hb.NumClients(), "num_users": hb.NumUsers(), "num_channels": hb.NumChannels(),
		"num_subs": hb.NumSubscriptions(), "uptime": int64(hb.Uptime() / time.Second),
	}
	return map[string]any{"nodes": []any{node}}, nil
}

type rpcRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func (h *Handler) rpc(ctx context.Context, body json.RawMessage) (any, error) {
	var req rpcRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("method", req.Method); err != nil {
		return nil, err
	}
	if h.cfg.RPC == nil {
		return nil, hub.ErrMethodNotFound
	}
	params := req.Params
	if len(params) == 0 {
		params = json.RawMessage("null")
	}
	data, err := h.cfg.RPC.HandleRPC(ctx, hub.RPCRequest{Method: req.Method, Data: params})
	if err != nil {
		return nil, err
	}
	return map[string]any{"data": rawJSON(data)}, nil
}

type batchRequest struct {
	Commands []map[string]json.RawMessage `json:"commands"`
	Parallel bool                         `json:"parallel"`
}

func (h *Handler) batch(ctx context.Context, body json.RawMessage) (any, error) {
	var req batchRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	replies := make([]map[string]any, len(req.Commands))
	for i, cmd := range req.Commands {
		if len(cmd) != 1 {
			replies[i] = map[string]any{"error": apiError{Code: 107, Message: "bad request: each command holds exactly one method"}}
			continue
		}
		for name, params := range cmd {
			m, ok := h.methods[name]
			if !ok || name == "batch" {
				replies[i] = map[string]any{"error": apiError{Code: 104, Message: "method not found"}}
				continue
			}
			res, err := m(ctx, params)
			if err != nil {
				var be *badBody
				if errors.As(err, &be) {
					replies[i] = map[string]any{"error": apiError{Code: 107, Message: be.msg}}
				} else {
					replies[i] = map[string]any{"error": toAPIError(err)}
				}
				continue
			}
			replies[i] = map[string]any{name: res}
		}
	}
	return map[string]any{"replies": replies}, nil
}
