package config

import (
	"log/slog"
	"math"
	"time"

	"github.com/switchboard-rt/switchboard/internal/api"
	"github.com/switchboard-rt/switchboard/internal/auth"
	redisbroker "github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/clientproto"
	"github.com/switchboard-rt/switchboard/internal/console"
	"github.com/switchboard-rt/switchboard/internal/dispatch"
	"github.com/switchboard-rt/switchboard/internal/gateway"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/sandbox"
	"github.com/switchboard-rt/switchboard/internal/schedapi"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/script"
	"github.com/switchboard-rt/switchboard/internal/store/postgres"
	"github.com/switchboard-rt/switchboard/internal/transport/ws"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// Defaults owned by the server process itself. Every other default is the
// component's own constant (hub, api, clientproto, transport/ws, worker,
// gateway, script, dispatch), which Default refers to.
const (
	DefaultHTTPAddress = "127.0.0.1"
	DefaultHTTPPort    = 8080

	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"

	DefaultBrokerType          = BrokerMemory
	DefaultRedisAddress        = "redis://127.0.0.1:6379"
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultCirclesDataDir      = "./data"
	DefaultGeneratedOriginHTTP = "http://localhost:8080"
)

// Broker types accepted in broker.type and engine.type.
const (
	BrokerMemory = "memory"
	BrokerRedis  = "redis"
)

// Fixed channel name syntax. Centrifugo makes these configurable; Switchboard
// fixes them to Centrifugo's defaults and accepts the corresponding Centrifugo
// keys only with exactly these values.
const (
	NamespaceBoundary = hub.NamespaceSeparator
	UserBoundary      = hub.UserBoundary
	UserSeparator     = hub.UserSeparator
)

// Config is the whole server configuration. JSON, YAML and TOML files use the
// json tag names. Obtain one with Default, Load or Parse; a Config built by
// hand should start from Default and be checked with Validate.
type Config struct {
	HTTPServer HTTPServer  `json:"http_server" yaml:"http_server" toml:"http_server"`
	Log        Log         `json:"log" yaml:"log" toml:"log"`
	Client     Client      `json:"client" yaml:"client" toml:"client"`
	HTTPAPI    HTTPAPI     `json:"http_api" yaml:"http_api" toml:"http_api"`
	Admin      Admin       `json:"admin" yaml:"admin" toml:"admin"`
	Channel    Channel     `json:"channel" yaml:"channel" toml:"channel"`
	WebSocket  WebSocket   `json:"websocket" yaml:"websocket" toml:"websocket"`
	Broker     Broker      `json:"broker" yaml:"broker" toml:"broker"`
	Engine     Engine      `json:"engine" yaml:"engine" toml:"engine"`
	Shutdown   ShutdownCfg `json:"shutdown" yaml:"shutdown" toml:"shutdown"`
	Runner     Runner      `json:"runner" yaml:"runner" toml:"runner"`
	Circles    Circles     `json:"circles" yaml:"circles" toml:"circles"`
	Scheduler  Scheduler   `json:"scheduler" yaml:"scheduler" toml:"scheduler"`
	Relay      Relay       `json:"relay" yaml:"relay" toml:"relay"`

	// NoEffect lists the keys (and CENTRIFUGO_* variables) that were
	// accepted but change nothing in Switchboard: Centrifugo options of
	// features it lacks, switched off or tuned. Load fills it; the server
	// logs it once at startup. It is not a configuration key.
	NoEffect []string `json:"-" yaml:"-" toml:"-"`

	// sources names, by key path, the environment variable that set each
	// key (Load fills it), for errors found after Load.
	sources map[string]string
}

// HTTPServer is the main listener.
type HTTPServer struct {
	// Address is the interface to listen on (default "127.0.0.1"; "" or
	// "0.0.0.0" = all interfaces).
	Address string `json:"address" yaml:"address" toml:"address"`
	// Port is the TCP port (default 8080; 0 = pick a free port, for tests).
	Port int `json:"port" yaml:"port" toml:"port"`
}

// Log configures the process logger.
type Log struct {
	// Level is one of debug, info (default), warn, error; Centrifugo's
	// trace, fatal and none are accepted too (see SlogLevel).
	Level string `json:"level" yaml:"level" toml:"level"`
	// Format is text (default) or json.
	Format string `json:"format" yaml:"format" toml:"format"`
}

// LogLevels lists the accepted log.level values.
var LogLevels = []string{"trace", "debug", "info", "warn", "error", "fatal", "none"}

// SlogLevel maps Level to a slog level: trace is below debug, fatal above
// error, and none above everything (nothing is logged). An unknown level
// (which Validate rejects) maps to info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "trace":
		return slog.LevelDebug - 4
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	case "fatal":
		return slog.LevelError + 4
	case "none":
		return slog.Level(math.MaxInt32)
	default:
		return slog.LevelInfo
	}
}

// TokenCfg verifies client connection JWTs (HS256).
type TokenCfg struct {
	// HMACSecretKey is the HS256 secret; empty = token auth disabled.
	HMACSecretKey string `json:"hmac_secret_key" yaml:"hmac_secret_key" toml:"hmac_secret_key"`
	// Audience, when set, must equal the token's aud claim.
	Audience string `json:"audience" yaml:"audience" toml:"audience"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer" yaml:"issuer" toml:"issuer"`
}

// Client configures realtime client connections.
type Client struct {
	Token TokenCfg `json:"token" yaml:"token" toml:"token"`
	// AllowedOrigins lists the Origin header values accepted on WebSocket
	// upgrade; "*" accepts any. Empty = only same-origin / no Origin header.
	AllowedOrigins []string `json:"allowed_origins" yaml:"allowed_origins" toml:"allowed_origins"`
	// PingInterval between server pings (default 25s; negative = no pings).
	PingInterval Duration `json:"ping_interval" yaml:"ping_interval" toml:"ping_interval"`
	// PongTimeout for the client's pong after a ping (default 8s; negative =
	// pongs not checked). Must be below PingInterval when both are positive.
	PongTimeout Duration `json:"pong_timeout" yaml:"pong_timeout" toml:"pong_timeout"`
	// ExpiredCloseDelay before closing a connection whose token expired and
	// was not refreshed (default 25s).
	ExpiredCloseDelay Duration `json:"expired_close_delay" yaml:"expired_close_delay" toml:"expired_close_delay"`
	// StaleCloseDelay before closing a connection that sent no connect
	// command (default 10s).
	StaleCloseDelay Duration `json:"stale_close_delay" yaml:"stale_close_delay" toml:"stale_close_delay"`
	// ChannelLimit is the maximum subscriptions per connection (default 128,
	// 0 = unlimited).
	ChannelLimit int `json:"channel_limit" yaml:"channel_limit" toml:"channel_limit"`
	// UserConnectionLimit is the maximum connections per user ID (0 = unlimited).
	UserConnectionLimit int `json:"user_connection_limit" yaml:"user_connection_limit" toml:"user_connection_limit"`
	// ConnectionLimit is the maximum connections per node (0 = unlimited).
	ConnectionLimit int `json:"connection_limit" yaml:"connection_limit" toml:"connection_limit"`
	// QueueMaxSize is the byte size of a connection's outgoing queue; a
	// client whose queue overflows is disconnected (default 1048576).
	QueueMaxSize int `json:"queue_max_size" yaml:"queue_max_size" toml:"queue_max_size"`
	// CommandRateLimit is commands per second per connection (0 = unlimited).
	// Switchboard extension.
	CommandRateLimit int `json:"command_rate_limit" yaml:"command_rate_limit" toml:"command_rate_limit"`
	// CommandTimeout is the deadline of one client command, broker round
	// trips included (default 4s). Switchboard extension.
	CommandTimeout Duration `json:"command_timeout" yaml:"command_timeout" toml:"command_timeout"`
	// ChannelPositionCheckDelay is how often positioned subscriptions are
	// compared with their stream's top (default 40s; negative = never).
	ChannelPositionCheckDelay Duration `json:"channel_position_check_delay" yaml:"channel_position_check_delay" toml:"channel_position_check_delay"`
	// AllowAnonymousConnectWithoutToken accepts connect commands without a
	// token as anonymous (empty user ID).
	AllowAnonymousConnectWithoutToken bool `json:"allow_anonymous_connect_without_token" yaml:"allow_anonymous_connect_without_token" toml:"allow_anonymous_connect_without_token"`
}

// HTTPAPI configures the server HTTP API (/api).
type HTTPAPI struct {
	// Key is the API key expected in X-API-Key or "Authorization: apikey K".
	Key string `json:"key" yaml:"key" toml:"key"`
	// Insecure disables the key check. Never in production.
	Insecure bool `json:"insecure" yaml:"insecure" toml:"insecure"`
	// ErrorMode is "" (errors in the reply body with HTTP 200) or
	// "transport" (method errors as HTTP statuses), as Centrifugo.
	ErrorMode string `json:"error_mode" yaml:"error_mode" toml:"error_mode"`
	// Timeout is the deadline of one request (a batch as a whole),
	// commands to other nodes and surveys included (default 5s).
	// Switchboard extension.
	Timeout Duration `json:"timeout" yaml:"timeout" toml:"timeout"`
}

// Admin configures the web console at /console (the keys of Centrifugo's
// admin web UI).
type Admin struct {
	// Enabled serves the console; Password and Secret are then required.
	Enabled bool `json:"enabled" yaml:"enabled" toml:"enabled"`
	// Password signs in as administrator (compared in constant time).
	Password string `json:"password" yaml:"password" toml:"password"`
	// Secret signs the console's session cookies (HMAC-SHA256); changing
	// it signs every session out.
	Secret string `json:"secret" yaml:"secret" toml:"secret"`
	// SessionTTL is a console session's lifetime (default 12h).
	// Switchboard extension, as the keys below.
	SessionTTL Duration `json:"session_ttl" yaml:"session_ttl" toml:"session_ttl"`
	// TokenTTL is the lifetime of the hub and API tokens the console hands
	// to its page, which refreshes them (default 10m, at least 10s).
	TokenTTL Duration `json:"token_ttl" yaml:"token_ttl" toml:"token_ttl"`
	// LoginFailures within LoginWindow lock a client address out of
	// sign-in until the window ends (defaults 5 and 1m).
	LoginFailures int      `json:"login_failures" yaml:"login_failures" toml:"login_failures"`
	LoginWindow   Duration `json:"login_window" yaml:"login_window" toml:"login_window"`
}

// Channel configures channels and namespaces. The namespace boundary ":",
// user boundary "#" and user separator "," are fixed.
type Channel struct {
	// WithoutNamespace applies to channels without a namespace prefix.
	WithoutNamespace NamespaceOptions `json:"without_namespace" yaml:"without_namespace" toml:"without_namespace"`
	// Namespaces apply to channels "name:..." by their prefix.
	Namespaces []Namespace `json:"namespaces" yaml:"namespaces" toml:"namespaces"`
	// MaxLength is the maximum channel name length in bytes (default 255).
	MaxLength int `json:"max_length" yaml:"max_length" toml:"max_length"`
	// HistoryMetaTTL is how long a channel's history epoch and offset
	// outlive its last publication (default 720h, both engines).
	HistoryMetaTTL Duration `json:"history_meta_ttl" yaml:"history_meta_ttl" toml:"history_meta_ttl"`
}

// Namespace is a named set of channel options. In files, the options sit
// beside "name" in the same object.
type Namespace struct {
	// Name must match ^[-a-zA-Z0-9_.]{2,}$ and be unique.
	Name             string `json:"name" yaml:"name" toml:"name"`
	NamespaceOptions `yaml:",inline"`
}

// NamespaceOptions are the per-channel behaviours (Centrifugo v6 channel
// options). The zero value is "everything off": no presence, no history, no
// client-side subscribe/publish permissions.
type NamespaceOptions struct {
	Presence           bool     `json:"presence" yaml:"presence" toml:"presence"`
	JoinLeave          bool     `json:"join_leave" yaml:"join_leave" toml:"join_leave"`
	ForcePushJoinLeave bool     `json:"force_push_join_leave" yaml:"force_push_join_leave" toml:"force_push_join_leave"`
	HistorySize        int      `json:"history_size" yaml:"history_size" toml:"history_size"`
	HistoryTTL         Duration `json:"history_ttl" yaml:"history_ttl" toml:"history_ttl"`
	ForceRecovery      bool     `json:"force_recovery" yaml:"force_recovery" toml:"force_recovery"`
	ForcePositioning   bool     `json:"force_positioning" yaml:"force_positioning" toml:"force_positioning"`

	AllowSubscribeForClient    bool `json:"allow_subscribe_for_client" yaml:"allow_subscribe_for_client" toml:"allow_subscribe_for_client"`
	AllowSubscribeForAnonymous bool `json:"allow_subscribe_for_anonymous" yaml:"allow_subscribe_for_anonymous" toml:"allow_subscribe_for_anonymous"`

	AllowPublishForSubscriber bool `json:"allow_publish_for_subscriber" yaml:"allow_publish_for_subscriber" toml:"allow_publish_for_subscriber"`
	AllowPublishForClient     bool `json:"allow_publish_for_client" yaml:"allow_publish_for_client" toml:"allow_publish_for_client"`
	AllowPublishForAnonymous  bool `json:"allow_publish_for_anonymous" yaml:"allow_publish_for_anonymous" toml:"allow_publish_for_anonymous"`

	AllowPresenceForSubscriber bool `json:"allow_presence_for_subscriber" yaml:"allow_presence_for_subscriber" toml:"allow_presence_for_subscriber"`
	AllowPresenceForClient     bool `json:"allow_presence_for_client" yaml:"allow_presence_for_client" toml:"allow_presence_for_client"`
	AllowPresenceForAnonymous  bool `json:"allow_presence_for_anonymous" yaml:"allow_presence_for_anonymous" toml:"allow_presence_for_anonymous"`

	AllowHistoryForSubscriber bool `json:"allow_history_for_subscriber" yaml:"allow_history_for_subscriber" toml:"allow_history_for_subscriber"`
	AllowHistoryForClient     bool `json:"allow_history_for_client" yaml:"allow_history_for_client" toml:"allow_history_for_client"`
	AllowHistoryForAnonymous  bool `json:"allow_history_for_anonymous" yaml:"allow_history_for_anonymous" toml:"allow_history_for_anonymous"`

	AllowUserLimitedChannels bool `json:"allow_user_limited_channels" yaml:"allow_user_limited_channels" toml:"allow_user_limited_channels"`

	// PublicationDataFormat is "" (any), "json", "json_object" or "binary",
	// as Centrifugo; publications of another shape are refused with 107.
	PublicationDataFormat string `json:"publication_data_format" yaml:"publication_data_format" toml:"publication_data_format"`
}

// WebSocket configures the Centrifugo-protocol WebSocket transport.
type WebSocket struct {
	// MessageSizeLimit is the maximum incoming message size in bytes
	// (default 65536).
	MessageSizeLimit int `json:"message_size_limit" yaml:"message_size_limit" toml:"message_size_limit"`
	// ReadBufferSize in bytes (default 512; 0 = transport default). Centrifugo's
	// write_buffer_size is accepted without effect: gws sizes its own
	// write buffers and ignores a configured size.
	ReadBufferSize int `json:"read_buffer_size" yaml:"read_buffer_size" toml:"read_buffer_size"`
}

// Broker selects how publications travel between nodes.
type Broker struct {
	// Type is "memory" (default, single process) or "redis".
	Type string `json:"type" yaml:"type" toml:"type"`
	// RedisURL is a redis:// or rediss:// URL, required when Type is redis.
	RedisURL string `json:"redis_url" yaml:"redis_url" toml:"redis_url"`
}

// Engine selects where history, presence and PUB/SUB live (Centrifugo v6
// engine section).
type Engine struct {
	// Type is "memory" (default, one process) or "redis" (N processes
	// sharing one Redis). broker.type "redis" selects Redis too.
	Type  string      `json:"type" yaml:"type" toml:"type"`
	Redis EngineRedis `json:"redis" yaml:"redis" toml:"redis"`
}

// EngineRedis configures the Redis engine.
type EngineRedis struct {
	// Address is redis://, rediss://, unix:// or
	// redis+sentinel://host:port[,host:port]?sentinel_master_name=NAME
	// (default "redis://127.0.0.1:6379"; broker.redis_url, when set, is used
	// instead).
	Address string `json:"address" yaml:"address" toml:"address"`
	// Prefix starts every Redis key and PUB/SUB channel (default
	// "switchboard", not Centrifugo's: the formats differ).
	Prefix string `json:"prefix" yaml:"prefix" toml:"prefix"`
	// PresenceTTL: a presence entry not refreshed within it disappears
	// (default 60s).
	PresenceTTL Duration `json:"presence_ttl" yaml:"presence_ttl" toml:"presence_ttl"`
}

// ShutdownCfg configures graceful shutdown.
type ShutdownCfg struct {
	// Timeout for draining on shutdown (default 30s).
	Timeout Duration `json:"timeout" yaml:"timeout" toml:"timeout"`
}

// Runner configures the worker gateway (HTTP tasks/events executed by worker
// processes over stdin/stdout). It is disabled while Command is empty.
type Runner struct {
	// Command is the worker argv. In files a list, or a single string split
	// like a shell would (whitespace, single and double quotes, backslash).
	Command []string `json:"command" yaml:"command" toml:"command" cfg:"argv"`
	// Workers is the number of worker processes (default 1).
	Workers int `json:"workers" yaml:"workers" toml:"workers"`
	// BasePath of the HTTP endpoints (default "/__runner"); starts with "/",
	// no trailing slash.
	BasePath string `json:"base_path" yaml:"base_path" toml:"base_path"`
	// Token, when set, is required in the TokenHeader header.
	Token string `json:"token" yaml:"token" toml:"token"`
	// TokenHeader names the auth header (default "x-runner-token").
	TokenHeader string `json:"token_header" yaml:"token_header" toml:"token_header"`
	// Allow lists the exposed task and event IDs.
	Allow RunnerAllow `json:"allow" yaml:"allow" toml:"allow"`
	// Timeout per task or event (default 30s).
	Timeout Duration `json:"timeout" yaml:"timeout" toml:"timeout"`
	// MaxInFlight is the maximum requests being executed at once (default 64).
	MaxInFlight int `json:"max_in_flight" yaml:"max_in_flight" toml:"max_in_flight"`
	// QueueSize is the maximum requests waiting for a worker (default 1024).
	QueueSize int `json:"queue_size" yaml:"queue_size" toml:"queue_size"`
	// QueueTimeout is the longest a request waits for a worker (default 5s).
	QueueTimeout Duration `json:"queue_timeout" yaml:"queue_timeout" toml:"queue_timeout"`
	// CORS settings of the HTTP endpoints.
	CORS RunnerCORS `json:"cors" yaml:"cors" toml:"cors"`
	// MaxBody is the maximum request body in bytes (default 1 MiB); files may
	// also use strings such as "2MiB".
	MaxBody int64 `json:"max_body" yaml:"max_body" toml:"max_body" cfg:"bytesize"`
	// MaxJobs a worker runs before it is recycled (0 = unlimited).
	MaxJobs int `json:"max_jobs" yaml:"max_jobs" toml:"max_jobs"`
	// TTL is a worker's maximum lifetime (0 = none).
	TTL Duration `json:"ttl" yaml:"ttl" toml:"ttl"`
	// IdleTTL recycles a worker idle this long (0 = none).
	IdleTTL Duration `json:"idle_ttl" yaml:"idle_ttl" toml:"idle_ttl"`
	// MaxMemory recycles a worker whose RSS exceeds it, in bytes (0 = none);
	// files may also use strings such as "512MB" or "1GiB".
	MaxMemory int64 `json:"max_memory" yaml:"max_memory" toml:"max_memory" cfg:"bytesize"`
	// PingInterval between health pings to idle workers (default 10s).
	PingInterval Duration `json:"ping_interval" yaml:"ping_interval" toml:"ping_interval"`
}

// RunnerAllow lists exposed task and event IDs.
type RunnerAllow struct {
	Tasks  []string `json:"tasks" yaml:"tasks" toml:"tasks"`
	Events []string `json:"events" yaml:"events" toml:"events"`
}

// RunnerCORS configures CORS on the worker gateway.
type RunnerCORS struct {
	// Origins allowed (default ["*"]).
	Origins []string `json:"origins" yaml:"origins" toml:"origins"`
}

// Circles configures the multi-tenant circles endpoint (ws://host/{key}).
type Circles struct {
	// Keys are the circle public keys (secp256k1, hex, 66 or 130 characters).
	Keys []string `json:"keys" yaml:"keys" toml:"keys"`
	// EnableAuth requires signature authentication before play.
	EnableAuth bool `json:"enable_auth" yaml:"enable_auth" toml:"enable_auth"`
	// RedisURL, when set, routes play scripts to Redis work queues.
	RedisURL string `json:"redis_url" yaml:"redis_url" toml:"redis_url"`
	// DataDir holds durable circle state (default "./data").
	DataDir string `json:"data_dir" yaml:"data_dir" toml:"data_dir"`
	// ScriptTimeout per play (default 30s).
	ScriptTimeout Duration `json:"script_timeout" yaml:"script_timeout" toml:"script_timeout"`
	// MaxSteps per script execution (default 100000000).
	MaxSteps uint64 `json:"max_steps" yaml:"max_steps" toml:"max_steps"`
	// MaxScriptSize in bytes (default 65536).
	MaxScriptSize int `json:"max_script_size" yaml:"max_script_size" toml:"max_script_size"`
	// MaxOutputSize in bytes (default 1 MiB).
	MaxOutputSize int `json:"max_output_size" yaml:"max_output_size" toml:"max_output_size"`
	// Concurrency is scripts run at once per circle (default 4).
	Concurrency int `json:"concurrency" yaml:"concurrency" toml:"concurrency"`
	// QueueSize is scripts waiting per circle (default 256).
	QueueSize int `json:"queue_size" yaml:"queue_size" toml:"queue_size"`
	// Sandboxes is the number of sandbox processes running plays, for all
	// circles together (default 2).
	Sandboxes int `json:"sandboxes" yaml:"sandboxes" toml:"sandboxes"`
	// MaxMemory is the memory cap of one play in bytes (default 256 MiB).
	MaxMemory int64 `json:"max_memory" yaml:"max_memory" toml:"max_memory" cfg:"bytesize"`
	// MaxCPU is the CPU time cap of one play (default 30s).
	MaxCPU Duration `json:"max_cpu" yaml:"max_cpu" toml:"max_cpu"`
	// StoreMaxKeys and StoreMaxBytes bound each circle's store (defaults
	// 10000 keys, 16 MiB of keys plus values).
	StoreMaxKeys  int   `json:"store_max_keys" yaml:"store_max_keys" toml:"store_max_keys"`
	StoreMaxBytes int64 `json:"store_max_bytes" yaml:"store_max_bytes" toml:"store_max_bytes" cfg:"bytesize"`
}

// Scheduler configures the compute scheduler (docs/scheduler.md): jobs
// split into chunks leased to signed compute nodes. It is off unless
// Enabled.
type Scheduler struct {
	// Enabled switches the scheduler and its HTTP API on (also
	// `serve --scheduler`).
	Enabled bool `json:"enabled" yaml:"enabled" toml:"enabled"`
	// DatabaseURL is a postgres:// URL for a store shared by several
	// processes; "" = SQLite in circles.data_dir (the circles' database).
	DatabaseURL string `json:"database_url" yaml:"database_url" toml:"database_url"`
	// DatabaseSchema, with DatabaseURL, is the PostgreSQL schema of the
	// scheduler's tables (created if missing); "" = the connection's
	// default.
	DatabaseSchema string `json:"database_schema" yaml:"database_schema" toml:"database_schema"`
	// DatabaseMaxConns bounds the PostgreSQL connection pool (default 10).
	DatabaseMaxConns int `json:"database_max_conns" yaml:"database_max_conns" toml:"database_max_conns"`
	// Lease is how long a node holds a chunk without completing it,
	// reporting progress or heartbeating (default 30s, at least 1s).
	Lease Duration `json:"lease" yaml:"lease" toml:"lease"`
	// MaxAttempts is how many leases a chunk gets before it fails (default 5).
	MaxAttempts int `json:"max_attempts" yaml:"max_attempts" toml:"max_attempts"`
	// BackoffBase and BackoffMax bound the delay before an expired or
	// failed chunk is leased again (defaults 1s and 5m).
	BackoffBase Duration `json:"backoff_base" yaml:"backoff_base" toml:"backoff_base"`
	BackoffMax  Duration `json:"backoff_max" yaml:"backoff_max" toml:"backoff_max"`
	// ChunkSize is the iterations per chunk (default 1000).
	ChunkSize int `json:"chunk_size" yaml:"chunk_size" toml:"chunk_size"`
	// MaxIterations bounds one job's iterations (default 100000000).
	MaxIterations int64 `json:"max_iterations" yaml:"max_iterations" toml:"max_iterations"`
	// MaxConfigBytes bounds one job's config JSON (default 64 KiB).
	MaxConfigBytes int64 `json:"max_config_bytes" yaml:"max_config_bytes" toml:"max_config_bytes" cfg:"bytesize"`
	// AssignBatch bounds the chunks one assignment pass leases (default 500).
	AssignBatch int `json:"assign_batch" yaml:"assign_batch" toml:"assign_batch"`
	// SweepInterval is the period of the safety sweep (default 15s;
	// negative = none).
	SweepInterval Duration `json:"sweep_interval" yaml:"sweep_interval" toml:"sweep_interval"`
	// NodeTokenTTL is the lifetime of a node's hub token (default 10m).
	NodeTokenTTL Duration `json:"node_token_ttl" yaml:"node_token_ttl" toml:"node_token_ttl"`
	// HubURL is the WebSocket URL handed to nodes with their token; "" =
	// derived from the request (ws(s)://HOST/connection/websocket).
	HubURL string `json:"hub_url" yaml:"hub_url" toml:"hub_url"`
	// MaxBody bounds a scheduler API request body (default 1 MiB).
	MaxBody int64 `json:"max_body" yaml:"max_body" toml:"max_body" cfg:"bytesize"`
	// SignatureSkew is the accepted difference between a node's X-Node-Ts
	// and the server clock, either way (default 300s).
	SignatureSkew Duration `json:"signature_skew" yaml:"signature_skew" toml:"signature_skew"`
	// ReplayCacheSize bounds the node signatures remembered to refuse
	// replays (default 1000000, about 66 bytes each); when full, signed
	// requests get 503.
	ReplayCacheSize int `json:"replay_cache_size" yaml:"replay_cache_size" toml:"replay_cache_size"`
	// ProgressInterval is how often coalesced job progress and node feed
	// updates are published (default 100ms; negative = each at once).
	ProgressInterval Duration `json:"progress_interval" yaml:"progress_interval" toml:"progress_interval"`
	// RegisterRate (per minute) and RegisterBurst bound POST
	// /nodes/register per client address (defaults 60 and 20; rate
	// negative = no limit).
	RegisterRate  int `json:"register_rate" yaml:"register_rate" toml:"register_rate"`
	RegisterBurst int `json:"register_burst" yaml:"register_burst" toml:"register_burst"`
}

// Relay configures the game relay (QUIC, one UDP port; docs/relay.md).
// Limits: 0 means the relay's default, a negative value no limit where
// the key says so.
type Relay struct {
	// Enabled starts the relay (also `serve --relay-port`).
	Enabled bool `json:"enabled" yaml:"enabled" toml:"enabled"`
	// Address is the UDP host:port (default ":5000").
	Address string `json:"address" yaml:"address" toml:"address"`
	// CertFile and KeyFile are the PEM certificate and key; both empty: a
	// self-signed development certificate generated at start.
	CertFile string `json:"cert_file" yaml:"cert_file" toml:"cert_file"`
	KeyFile  string `json:"key_file" yaml:"key_file" toml:"key_file"`
	// DisableISSUN refuses clients without ALPN (the ISSUN profile).
	DisableISSUN bool `json:"disable_issun" yaml:"disable_issun" toml:"disable_issun"`
	// Auth is "none" or "token" (a hub JWT before anything is relayed).
	Auth       string `json:"auth" yaml:"auth" toml:"auth"`
	MaxClients int    `json:"max_clients" yaml:"max_clients" toml:"max_clients"`
	// MaxClientsPerIP caps connections from one IP address (0: off).
	MaxClientsPerIP int `json:"max_clients_per_ip" yaml:"max_clients_per_ip" toml:"max_clients_per_ip"`
	MaxFrame        int `json:"max_frame" yaml:"max_frame" toml:"max_frame" cfg:"bytesize"`
	// MaxTypeName caps an ISSUN event's type name in bytes.
	MaxTypeName int `json:"max_type_name" yaml:"max_type_name" toml:"max_type_name"`
	// EventRate (events per second, sustained) and EventBurst limit what
	// one connection sends.
	EventRate         int      `json:"event_rate" yaml:"event_rate" toml:"event_rate"`
	EventBurst        int      `json:"event_burst" yaml:"event_burst" toml:"event_burst"`
	MaxRooms          int      `json:"max_rooms" yaml:"max_rooms" toml:"max_rooms"`
	MaxMembers        int      `json:"max_members" yaml:"max_members" toml:"max_members"`
	QueueLimit        int      `json:"queue_limit" yaml:"queue_limit" toml:"queue_limit" cfg:"bytesize"`
	HandshakeTimeout  Duration `json:"handshake_timeout" yaml:"handshake_timeout" toml:"handshake_timeout"`
	IdleTimeout       Duration `json:"idle_timeout" yaml:"idle_timeout" toml:"idle_timeout"`
	WriteTimeout      Duration `json:"write_timeout" yaml:"write_timeout" toml:"write_timeout"`
	HeartbeatInterval Duration `json:"heartbeat_interval" yaml:"heartbeat_interval" toml:"heartbeat_interval"`
	ResumeGrace       Duration `json:"resume_grace" yaml:"resume_grace" toml:"resume_grace"`
	// BusQueue caps the room messages waiting to be published for other
	// processes (engine redis); SyncInterval is how often each room's
	// remote members are re-read from presence (negative: never).
	BusQueue int `json:"bus_queue" yaml:"bus_queue" toml:"bus_queue"`
	// BusQueueBytes caps the bytes of the events in that queue.
	BusQueueBytes int      `json:"bus_queue_bytes" yaml:"bus_queue_bytes" toml:"bus_queue_bytes"`
	SyncInterval  Duration `json:"sync_interval" yaml:"sync_interval" toml:"sync_interval"`
	// Mirror publishes room events, at a capped rate, to the hub channel
	// relay:R for spectators.
	Mirror RelayMirror `json:"mirror" yaml:"mirror" toml:"mirror"`
}

// RelayMirror configures spectator mirroring (docs/relay.md).
type RelayMirror struct {
	Enabled bool `json:"enabled" yaml:"enabled" toml:"enabled"`
	// Rate (events per second, per room and process) and Burst cap what
	// is mirrored; Queue bounds the publications waiting.
	Rate  float64 `json:"rate" yaml:"rate" toml:"rate"`
	Burst int     `json:"burst" yaml:"burst" toml:"burst"`
	Queue int     `json:"queue" yaml:"queue" toml:"queue"`
	// RoomPrefix limits mirroring to rooms whose names start with it.
	RoomPrefix string `json:"room_prefix" yaml:"room_prefix" toml:"room_prefix"`
}

// Default returns a Config with every default filled in. It is valid.
func Default() Config {
	return Config{
		HTTPServer: HTTPServer{Address: DefaultHTTPAddress, Port: DefaultHTTPPort},
		Log:        Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		HTTPAPI:    HTTPAPI{Timeout: Duration(api.DefaultTimeout)},
		Client: Client{
			PingInterval:              Duration(clientproto.DefaultPingInterval),
			PongTimeout:               Duration(clientproto.DefaultPongTimeout),
			ExpiredCloseDelay:         Duration(clientproto.DefaultExpiredCloseDelay),
			StaleCloseDelay:           Duration(clientproto.DefaultStaleCloseDelay),
			ChannelLimit:              clientproto.DefaultChannelLimit,
			QueueMaxSize:              clientproto.DefaultQueueMaxSize,
			CommandTimeout:            Duration(clientproto.DefaultCommandTimeout),
			ChannelPositionCheckDelay: Duration(hub.DefaultPositionCheckInterval),
		},
		Channel:   Channel{MaxLength: hub.DefaultMaxChannelLength, HistoryMetaTTL: Duration(redisbroker.DefaultMetaTTL)},
		WebSocket: WebSocket{MessageSizeLimit: ws.DefaultMessageSizeLimit, ReadBufferSize: ws.DefaultReadBufferSize},
		Broker:    Broker{Type: DefaultBrokerType},
		Engine: Engine{Type: BrokerMemory, Redis: EngineRedis{
			Address: DefaultRedisAddress, Prefix: redisbroker.DefaultPrefix, PresenceTTL: Duration(redisbroker.DefaultPresenceTTL),
		}},
		Admin: Admin{SessionTTL: Duration(console.DefaultSessionTTL), TokenTTL: Duration(console.DefaultHubTokenTTL),
			LoginFailures: console.DefaultLoginFailures, LoginWindow: Duration(console.DefaultLoginWindow)},
		Shutdown: ShutdownCfg{Timeout: Duration(DefaultShutdownTimeout)},
		Runner: Runner{
			Workers:      worker.DefaultWorkers,
			BasePath:     gateway.DefaultBasePath,
			TokenHeader:  gateway.DefaultTokenHeader,
			Timeout:      Duration(worker.DefaultTimeout),
			MaxInFlight:  worker.DefaultMaxInFlight,
			QueueSize:    worker.DefaultQueueSize,
			QueueTimeout: Duration(worker.DefaultQueueTimeout),
			CORS:         RunnerCORS{Origins: []string{"*"}},
			MaxBody:      gateway.DefaultMaxBody,
			PingInterval: Duration(worker.DefaultPingInterval),
		},
		Circles: Circles{
			DataDir:       DefaultCirclesDataDir,
			ScriptTimeout: Duration(script.DefaultTimeout),
			MaxSteps:      script.DefaultMaxSteps,
			MaxScriptSize: script.DefaultMaxScriptSize,
			MaxOutputSize: script.DefaultMaxOutputSize,
			Concurrency:   dispatch.DefaultConcurrency,
			QueueSize:     dispatch.DefaultQueueSize,
			Sandboxes:     sandbox.DefaultWorkers,
			MaxMemory:     sandbox.DefaultMaxMemory,
			MaxCPU:        Duration(script.DefaultTimeout),
			StoreMaxKeys:  script.DefaultQuotaKeys,
			StoreMaxBytes: script.DefaultQuotaBytes,
		},
		Scheduler: Scheduler{
			DatabaseMaxConns: postgres.DefaultMaxConns,
			Lease:            Duration(scheduler.DefaultLease),
			MaxAttempts:      scheduler.DefaultMaxAttempts,
			BackoffBase:      Duration(scheduler.DefaultBackoffBase),
			BackoffMax:       Duration(scheduler.DefaultBackoffMax),
			ChunkSize:        scheduler.DefaultChunkSize,
			MaxIterations:    scheduler.DefaultMaxIterations,
			MaxConfigBytes:   scheduler.DefaultMaxConfigBytes,
			AssignBatch:      scheduler.DefaultAssignBatch,
			SweepInterval:    Duration(scheduler.DefaultSweepInterval),
			NodeTokenTTL:     Duration(schedapi.DefaultNodeTokenTTL),
			MaxBody:          schedapi.DefaultMaxBody,
			SignatureSkew:    Duration(auth.DefaultNodeSkew),
			ReplayCacheSize:  auth.DefaultMaxReplayCache,
			ProgressInterval: Duration(scheduler.DefaultProgressInterval),
			RegisterRate:     int(schedapi.DefaultRegisterRate * 60),
			RegisterBurst:    schedapi.DefaultRegisterBurst,
		},
		Relay: Relay{
			Address: relay.DefaultAddress, Auth: relay.AuthNone, MaxClients: relay.DefaultMaxClients,
			MaxFrame: relay.DefaultMaxFrame, MaxTypeName: relay.DefaultMaxTypeName,
			EventRate: relay.DefaultEventRate, EventBurst: relay.DefaultEventBurst,
			MaxRooms: relay.DefaultMaxRooms, MaxMembers: relay.DefaultMaxMembers, QueueLimit: relay.DefaultQueueLimit,
			BusQueue: relay.DefaultBusQueue, BusQueueBytes: relay.DefaultBusQueueBytes, SyncInterval: Duration(relay.DefaultSyncInterval),
			Mirror:           RelayMirror{Rate: relay.DefaultMirrorRate, Burst: relay.DefaultMirrorBurst, Queue: relay.DefaultMirrorQueue},
			HandshakeTimeout: Duration(relay.DefaultHandshakeTimeout), IdleTimeout: Duration(relay.DefaultIdleTimeout),
			WriteTimeout: Duration(relay.DefaultWriteTimeout), HeartbeatInterval: Duration(relay.DefaultHeartbeatInterval),
			ResumeGrace: Duration(relay.DefaultResumeGrace),
		},
	}
}

// Namespace returns the options of the namespace called name; "" returns
// Channel.WithoutNamespace. ok is false when no such namespace exists.
// Lookup is linear; callers resolving channels on a hot path should index
// the namespaces once.
func (c Config) Namespace(name string) (NamespaceOptions, bool) {
	if name == "" {
		return c.Channel.WithoutNamespace, true
	}
	for _, ns := range c.Channel.Namespaces {
		if ns.Name == name {
			return ns.NamespaceOptions, true
		}
	}
	return NamespaceOptions{}, false
}
