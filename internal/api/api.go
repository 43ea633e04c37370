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
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// DefaultMaxBody caps request bodies.
const DefaultMaxBody = 1 << 20

// DefaultTimeout bounds one request's work (a batch's as a whole).
const DefaultTimeout = 5 * time.Second

// Idempotent publish limits (Centrifugo keeps results 5 minutes).
const (
	DefaultIdempotentResultTTL = 5 * time.Minute
	DefaultMaxIdempotencyKey   = 256 // bytes
)

// Config configures a Handler.
type Config struct {
	Hub *hub.Hub // required
	// Key is the API key; requests must carry it in X-API-Key or
	// "Authorization: apikey KEY". Empty Key with Insecure false rejects
	// every request.
	Key      string
	Insecure bool
	// TransportErrors answers every method error with an HTTP status and
	// the error object as the body, as Centrifugo's http_api.error_mode
	// "transport"; without it, a request can ask for that with the header
	// X-Centrifugo-Error-Mode: transport.
	TransportErrors bool
	// RPC serves the rpc method; nil answers method not found.
	RPC     hub.RPCHandler
	MaxBody int64
	// Timeout is the deadline of a request's context (default
	// DefaultTimeout); the context also ends when the client goes.
	Timeout time.Duration
	// IdempotentResultTTL is how long a publish with an idempotency_key
	// answers repeats with its first result; MaxIdempotencyKey bounds the
	// key's length (defaults above).
	IdempotentResultTTL time.Duration
	MaxIdempotencyKey   int
	Logger              *slog.Logger
	Registerer          prometheus.Registerer
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
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.IdempotentResultTTL <= 0 {
		cfg.IdempotentResultTTL = DefaultIdempotentResultTTL
	}
	if cfg.MaxIdempotencyKey <= 0 {
		cfg.MaxIdempotencyKey = DefaultMaxIdempotencyKey
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Insecure {
		return true
	}
	return auth.EqualSecret(h.cfg.Key, auth.PresentedAPIKey(r.Header.Get("X-API-Key"), r.Header.Get("Authorization")))
}

// ServeHTTP dispatches POST /api/{method}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api"), "/")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, errMethodNotAllowed)
		return
	}
	if !h.authorized(r) {
		h.requests.WithLabelValues("unauthorized", "error").Inc()
		writeHTTPError(w, errUnauthorized)
		return
	}
	m, ok := h.methods[name]
	if !ok {
		h.requests.WithLabelValues("unknown", "error").Inc()
		writeHTTPError(w, errUnknownMethod(fmt.Sprintf("method %q not found", name)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeHTTPError(w, errBodyTooLarge(fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBody)))
			return
		}
		writeHTTPError(w, errBodyUnreadable)
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) || body[0] != '{' {
		h.requests.WithLabelValues(name, "error").Inc()
		writeHTTPError(w, errBodyNotObject)
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	res, err := m(ctx, body)
	h.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		h.requests.WithLabelValues(name, "error").Inc()
		var be *badBody
		if errors.As(err, &be) {
			writeHTTPError(w, errBadBody(be.msg))
			return
		}
		if hub.IsInternal(err) {
			h.log.Error("api method failed", "method", name, "error", err)
		}
		e := toAPIError(err)
		if h.cfg.TransportErrors || strings.EqualFold(r.Header.Get("X-Centrifugo-Error-Mode"), "transport") {
			writeJSON(w, transportStatus(e.Code), e)
			return
		}
		writeJSON(w, http.StatusOK, response{Error: e})
		return
	}
	h.requests.WithLabelValues(name, "ok").Inc()
	if br, ok := res.(*BatchResponse); ok {
		writeJSON(w, http.StatusOK, br) // no result wrapper, as in Centrifugo
		return
	}
	writeJSON(w, http.StatusOK, response{Result: res})
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

func badRequest(msg string) error {
	return hub.ErrBadRequest.With("bad request: " + msg)
}

func required(field, v string) error {
	if v == "" {
		return badRequest(field + " required")
	}
	return nil
}

// unsupported rejects a Centrifugo request field that asks for a feature
// Switchboard does not have, rather than silently acting without it.
func unsupported(fields ...unsupportedField) error {
	for _, f := range fields {
		if f.set {
			return badRequest(f.name + " is not supported by Switchboard")
		}
	}
	return nil
}

type unsupportedField struct {
	name string
	set  bool
}

// jsonField checks a raw JSON request field that will be relayed to
// clients (data, info): it must be UTF-8 text, or it would poison every
// JSON connection it reaches.
func jsonField(name string, v json.RawMessage) error {
	if len(v) > 0 && !utf8.Valid(v) {
		return badRequest(name + " is not valid UTF-8")
	}
	return nil
}

// publishOptions are the fields publish and broadcast share.
type publishOptions struct {
	Data           json.RawMessage   `json:"data"`
	B64Data        string            `json:"b64data"`
	SkipHistory    bool              `json:"skip_history"`
	Tags           map[string]string `json:"tags"`
	IdempotencyKey string            `json:"idempotency_key"`
	Delta          bool              `json:"delta"`
	Version        uint64            `json:"version"`
	VersionEpoch   string            `json:"version_epoch"`
}

func (r *publishOptions) unsupported() error {
	return unsupported(
		unsupportedField{"delta", r.Delta},
		unsupportedField{"version", r.Version != 0},
		unsupportedField{"version_epoch", r.VersionEpoch != ""})
}

type publishRequest struct {
	Channel string `json:"channel"`
	publishOptions
}

// payload returns the publication data of a publish or broadcast: the
// b64data bytes (binary, for Protobuf subscribers) or the data JSON, which
// must be UTF-8 text; nil when neither is given. Whether that data suits a
// channel is its namespace's CheckPublicationData.
func payload(data json.RawMessage, b64 string) ([]byte, error) {
	if b64 != "" {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, badRequest("b64data is not base64")
		}
		return b, nil
	}
	if !isSet(data) {
		return nil, nil
	}
	if err := jsonField("data", data); err != nil {
		return nil, err
	}
	return append([]byte(nil), data...), nil
}

// checkIdempotencyKey bounds idempotency_key (empty: not idempotent).
func (h *Handler) checkIdempotencyKey(key string) error {
	if len(key) > h.cfg.MaxIdempotencyKey {
		return badRequest(fmt.Sprintf("idempotency_key is longer than %d bytes", h.cfg.MaxIdempotencyKey))
	}
	return nil
}

func (h *Handler) publishOne(ctx context.Context, ch string, data []byte, skipHistory bool, tags map[string]string, key string) (*PublishResult, error) {
	if err := required("channel", ch); err != nil {
		return nil, err
	}
	opts, err := h.cfg.Hub.ChannelOptions(ch)
	if err != nil {
		return nil, err
	}
	if err := opts.CheckPublicationData(data); err != nil {
		return nil, err
	}
	pub := &hub.Publication{Data: data, Tags: tags, Time: time.Now().UnixMilli()}
	sp, err := h.cfg.Hub.PublishIdempotent(ctx, ch, pub, opts, skipHistory, key, h.cfg.IdempotentResultTTL)
	if err != nil {
		return nil, err
	}
	return &PublishResult{Offset: sp.Offset, Epoch: sp.Epoch}, nil
}

func (h *Handler) publish(ctx context.Context, body json.RawMessage) (any, error) {
	var req publishRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	if err := req.unsupported(); err != nil {
		return nil, err
	}
	if err := h.checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return nil, err
	}
	data, err := payload(req.Data, req.B64Data)
	if err != nil {
		return nil, err
	}
	return h.publishOne(ctx, req.Channel, data, req.SkipHistory, req.Tags, req.IdempotencyKey)
}

type broadcastRequest struct {
	Channels []string `json:"channels"`
	publishOptions
}

func (h *Handler) broadcast(ctx context.Context, body json.RawMessage) (any, error) {
	var req broadcastRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Channels) == 0 {
		return nil, badRequest("channels required")
	}
	if err := req.unsupported(); err != nil {
		return nil, err
	}
	if err := h.checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return nil, err
	}
	if req.B64Data != "" {
		if _, err := base64.StdEncoding.DecodeString(req.B64Data); err != nil {
			return nil, badRequest("b64data is not base64")
		}
	}
	// Data problems are reported per channel, where Centrifugo reports them.
	data, dataErr := payload(req.Data, req.B64Data)
	out := make([]*PublishResponse, len(req.Channels))
	for i, ch := range req.Channels {
		pr, err := (*PublishResult)(nil), dataErr
		if err == nil {
			pr, err = h.publishOne(ctx, ch, data, req.SkipHistory, req.Tags, req.IdempotencyKey)
		}
		if err != nil {
			out[i] = &PublishResponse{Error: toAPIError(err)}
			continue
		}
		out[i] = &PublishResponse{Result: pr}
	}
	return &BroadcastResult{Responses: out}, nil
}

type subscribeRequest struct {
	User         string          `json:"user"`
	Channel      string          `json:"channel"`
	Client       string          `json:"client"`
	Session      string          `json:"session"`
	Info         json.RawMessage `json:"info"`
	B64Info      string          `json:"b64info"`
	RecoverSince *StreamPosition `json:"recover_since"`
	ExpireAt     int64           `json:"expire_at"`
	Data         json.RawMessage `json:"data"`
	B64Data      string          `json:"b64data"`
	Override     json.RawMessage `json:"override"`
	LabelFilter  json.RawMessage `json:"label_filter"`
	AllUsers     bool            `json:"all_users"`
}

func isSet(v json.RawMessage) bool { return len(v) > 0 && string(v) != "null" }

func (h *Handler) subscribe(ctx context.Context, body json.RawMessage) (any, error) {
	var req subscribeRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := unsupported(
		unsupportedField{"session", req.Session != ""},
		unsupportedField{"expire_at", req.ExpireAt != 0},
		unsupportedField{"data", isSet(req.Data)},
		unsupportedField{"b64data", req.B64Data != ""},
		unsupportedField{"override", isSet(req.Override)},
		unsupportedField{"label_filter", isSet(req.LabelFilter)},
		unsupportedField{"all_users", req.AllUsers}); err != nil {
		return nil, err
	}
	if err := jsonField("info", req.Info); err != nil {
		return nil, err
	}
	if _, err := h.cfg.Hub.ChannelOptions(req.Channel); err != nil {
		return nil, err
	}
	opts := hub.ServerSubscribe{}
	if isSet(req.Info) {
		opts.ChanInfo = req.Info
	}
	if req.B64Info != "" {
		b, err := base64.StdEncoding.DecodeString(req.B64Info)
		if err != nil {
			return nil, badRequest("b64info is not base64")
		}
		opts.ChanInfo = b
	}
	if req.RecoverSince != nil {
		opts.RecoverSince = &hub.StreamPosition{Offset: req.RecoverSince.Offset, Epoch: req.RecoverSince.Epoch}
	}
	if err := h.cfg.Hub.SubscribeUser(ctx, req.User, req.Client, req.Channel, opts); err != nil {
		return nil, err
	}
	return &EmptyResult{}, nil
}

type unsubscribeRequest struct {
	User        string          `json:"user"`
	Channel     string          `json:"channel"`
	Client      string          `json:"client"`
	Session     string          `json:"session"`
	LabelFilter json.RawMessage `json:"label_filter"`
	AllUsers    bool            `json:"all_users"`
}

func (h *Handler) unsubscribe(ctx context.Context, body json.RawMessage) (any, error) {
	var req unsubscribeRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	// Centrifugo's empty channel (all channels) is not supported.
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := unsupported(
		unsupportedField{"session", req.Session != ""},
		unsupportedField{"label_filter", isSet(req.LabelFilter)},
		unsupportedField{"all_users", req.AllUsers}); err != nil {
		return nil, err
	}
	if _, err := h.cfg.Hub.ChannelOptions(req.Channel); err != nil {
		return nil, err
	}
	if err := h.cfg.Hub.UnsubscribeUser(ctx, req.User, req.Client, req.Channel); err != nil {
		return nil, err
	}
	return &EmptyResult{}, nil
}

type disconnectObject struct {
	Code   uint32 `json:"code"`
	Reason string `json:"reason"`
}

type disconnectRequest struct {
	User        string            `json:"user"`
	Client      string            `json:"client"`
	Session     string            `json:"session"`
	Whitelist   []string          `json:"whitelist"`
	Disconnect  *disconnectObject `json:"disconnect"`
	LabelFilter json.RawMessage   `json:"label_filter"`
	AllUsers    bool              `json:"all_users"`
}

func (h *Handler) disconnect(ctx context.Context, body json.RawMessage) (any, error) {
	var req disconnectRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := unsupported(
		unsupportedField{"session", req.Session != ""},
		unsupportedField{"label_filter", isSet(req.LabelFilter)},
		unsupportedField{"all_users", req.AllUsers}); err != nil {
		return nil, err
	}
	d := hub.DisconnectForceNoReconnect
	if req.Disconnect != nil {
		if req.Disconnect.Code < hub.MinDisconnectCode || req.Disconnect.Code > hub.MaxDisconnectCode {
			return nil, badRequest(fmt.Sprintf("disconnect code must be in %d-%d", hub.MinDisconnectCode, hub.MaxDisconnectCode))
		}
		d = hub.Disconnect{Code: req.Disconnect.Code, Reason: req.Disconnect.Reason}
	}
	if err := h.cfg.Hub.DisconnectUser(ctx, req.User, req.Client, d, req.Whitelist); err != nil {
		return nil, err
	}
	return &EmptyResult{}, nil
}

type refreshRequest struct {
	User        string          `json:"user"`
	Client      string          `json:"client"`
	Session     string          `json:"session"`
	Expired     bool            `json:"expired"`
	ExpireAt    int64           `json:"expire_at"`
	Info        json.RawMessage `json:"info"`
	LabelFilter json.RawMessage `json:"label_filter"`
	AllUsers    bool            `json:"all_users"`
}

func (h *Handler) refresh(ctx context.Context, body json.RawMessage) (any, error) {
	var req refreshRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("user", req.User); err != nil {
		return nil, err
	}
	if err := unsupported(
		unsupportedField{"session", req.Session != ""},
		unsupportedField{"label_filter", isSet(req.LabelFilter)},
		unsupportedField{"all_users", req.AllUsers}); err != nil {
		return nil, err
	}
	if err := jsonField("info", req.Info); err != nil {
		return nil, err
	}
	var info []byte
	if isSet(req.Info) {
		info = req.Info
	}
	if err := h.cfg.Hub.RefreshUser(ctx, req.User, req.Client, req.ExpireAt, req.Expired, info); err != nil {
		return nil, err
	}
	return &EmptyResult{}, nil
}

type channelRequest struct {
	Channel string `json:"channel"`
}

func toClientInfo(i *hub.ClientInfo) *ClientInfo {
	if i == nil {
		return nil
	}
	return &ClientInfo{User: i.UserID, Client: i.ClientID, ConnInfo: rawJSON(i.ConnInfo), ChanInfo: rawJSON(i.ChanInfo)}
}

// rawJSON returns b when it is JSON text, else nil: binary infos are not
// shown (they cannot travel in a JSON reply).
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 || !hub.IsJSONText(b) {
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
	out := make(map[string]*ClientInfo, len(p))
	for id, info := range p {
		out[id] = toClientInfo(info)
	}
	return &PresenceResult{Presence: out}, nil
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
	return &PresenceStatsResult{NumClients: uint32(st.NumClients), NumUsers: uint32(st.NumUsers)}, nil
}

type historyRequest struct {
	Channel string          `json:"channel"`
	Limit   int32           `json:"limit"`
	Since   *StreamPosition `json:"since"`
	Reverse bool            `json:"reverse"`
}

func (h *Handler) history(ctx context.Context, body json.RawMessage) (any, error) {
	var req historyRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := required("channel", req.Channel); err != nil {
		return nil, err
	}
	opts := hub.HistoryOptions{Limit: int(req.Limit), Reverse: req.Reverse}
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
	pubs := make([]*Publication, len(hr.Publications))
	for i, p := range hr.Publications {
		pubs[i] = &Publication{Info: toClientInfo(p.Info), Offset: p.Offset, Tags: p.Tags}
		if hub.IsJSONText(p.Data) {
			pubs[i].Data = p.Data
		} else {
			pubs[i].B64Data = base64.StdEncoding.EncodeToString(p.Data)
		}
	}
	return &HistoryResult{Publications: pubs, Offset: hr.Position.Offset, Epoch: hr.Position.Epoch}, nil
}

func (h *Handler) historyRemove(ctx context.Context, body json.RawMessage) (any, error) {
	ch, err := h.channelArg(body)
	if err != nil {
		return nil, err
	}
	if err := h.cfg.Hub.RemoveHistory(ctx, ch); err != nil {
		return nil, err
	}
	return &EmptyResult{}, nil
}

type channelsRequest struct {
	Pattern string `json:"pattern"`
}

// channels covers every live node: nodes that do not answer before the
// request's deadline are left out (the hub logs them).
func (h *Handler) channels(ctx context.Context, body json.RawMessage) (any, error) {
	var req channelsRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	var g *glob
	if req.Pattern != "" {
		var err error
		if g, err = compileGlob(req.Pattern); err != nil {
			return nil, badRequest("invalid pattern: " + err.Error())
		}
	}
	out := map[string]*ChannelInfo{}
	for ch, n := range h.cfg.Hub.ClusterChannels(ctx) {
		if n > 0 && (g == nil || g.match(ch)) {
			out[ch] = &ChannelInfo{NumClients: uint32(n)}
		}
	}
	return &ChannelsResult{Channels: out}, nil
}

func (h *Handler) info(_ context.Context, body json.RawMessage) (any, error) {
	if err := decode(body, &struct{}{}); err != nil {
		return nil, err
	}
	nodes := h.cfg.Hub.Nodes()
	out := make([]*NodeResult, len(nodes))
	for i, n := range nodes {
		out[i] = &NodeResult{UID: n.ID, Name: n.Name, Version: n.Version,
			NumClients: uint32(n.NumClients), NumUsers: uint32(n.NumUsers), NumChannels: uint32(n.NumChannels),
			NumSubs: uint32(n.NumSubs), Uptime: uint32(n.Uptime / time.Second)}
	}
	return &InfoResult{Nodes: out}, nil
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
	if err := jsonField("params", req.Params); err != nil {
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
	if len(data) > 0 && !hub.IsJSONText(data) {
		return nil, fmt.Errorf("api: rpc %q: result is not JSON text", req.Method)
	}
	return &RPCResult{Data: data}, nil
}

type batchRequest struct {
	Commands []json.RawMessage `json:"commands"`
	Parallel bool              `json:"parallel"`
}

// batch runs commands in order (parallel is accepted: the replies are the
// same) and answers {"replies": […]}, one {"<method>": result} or
// {"error": …} per command, as Centrifugo v6 does.
func (h *Handler) batch(ctx context.Context, body json.RawMessage) (any, error) {
	var req batchRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	out := &BatchResponse{Replies: make([]map[string]any, len(req.Commands))}
	for i, raw := range req.Commands {
		out.Replies[i] = h.batchCommand(ctx, raw)
	}
	return out, nil
}

func (h *Handler) batchCommand(ctx context.Context, raw json.RawMessage) map[string]any {
	var cmd map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cmd); err != nil || cmd == nil {
		return map[string]any{"error": toAPIError(hub.ErrBadRequest.With("bad request: each command is an object"))}
	}
	if len(cmd) == 0 {
		return map[string]any{"error": toAPIError(hub.ErrMethodNotFound)}
	}
	if len(cmd) > 1 {
		return map[string]any{"error": toAPIError(hub.ErrBadRequest.With("bad request: each command holds exactly one method"))}
	}
	for name, params := range cmd {
		m, ok := h.methods[name]
		if !ok || name == "batch" {
			return map[string]any{"error": toAPIError(hub.ErrMethodNotFound)}
		}
		if string(params) == "null" {
			params = json.RawMessage("{}")
		}
		res, err := m(ctx, params)
		if err != nil {
			if hub.IsInternal(err) {
				h.log.Error("api batch command failed", "method", name, "error", err)
			}
			return map[string]any{"error": toAPIError(err)}
		}
		return map[string]any{name: res}
	}
	return nil
}
