package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	redisbroker "github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/console"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/origin"
	"github.com/switchboard-rt/switchboard/internal/relay"
)

// NamespaceNamePattern is the rule every namespace name must match
// (Centrifugo's).
const NamespaceNamePattern = `^[-a-zA-Z0-9_.]{2,}$`

var (
	namespaceNameRe = regexp.MustCompile(NamespaceNamePattern)
	hostnameRe      = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?$`)
	headerNameRe    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// MinAdminSecret is the shortest admin.secret accepted: it keys the
// console's session cookies.
const MinAdminSecret = console.MinSecret

// Validate checks every value of c and returns all problems joined
// (errors.Join), each naming its key path, or nil.
func (c *Config) Validate() error {
	v := &validator{}

	// http_server
	if a := c.HTTPServer.Address; a != "" {
		h := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		if net.ParseIP(h) == nil && (strings.Contains(a, ":") || !hostnameRe.MatchString(a)) {
			v.add("http_server.address", "%q is not an IP address or host name (give the port in http_server.port)", a)
		}
	}
	v.rangeInt("http_server.port", c.HTTPServer.Port, 0, 65535)

	// log
	if !slices.Contains(LogLevels, c.Log.Level) {
		v.add("log.level", "unknown level %q (use one of %s)", c.Log.Level, strings.Join(LogLevels, ", "))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "unknown format %q (use text or json)", c.Log.Format)
	}

	switch c.HTTPAPI.ErrorMode {
	case "", "transport":
	default:
		v.add("http_api.error_mode", "unknown mode %q (use transport, or leave it empty)", c.HTTPAPI.ErrorMode)
	}
	v.positiveDur("http_api.timeout", c.HTTPAPI.Timeout)

	// admin
	v.positiveDur("admin.session_ttl", c.Admin.SessionTTL)
	if c.Admin.TokenTTL.Std() < console.MinHubTokenTTL {
		v.add("admin.token_ttl", "must be at least %s, got %s", console.MinHubTokenTTL, c.Admin.TokenTTL)
	}
	v.positive("admin.login_failures", c.Admin.LoginFailures)
	v.positiveDur("admin.login_window", c.Admin.LoginWindow)
	if c.Admin.Enabled {
		if c.Admin.Password == "" {
			v.add("admin.password", "required when admin.enabled is true")
		}
		if len(c.Admin.Secret) < MinAdminSecret {
			v.add("admin.secret", "must be at least %d bytes when admin.enabled is true, got %d", MinAdminSecret, len(c.Admin.Secret))
		}
		if c.Client.Token.HMACSecretKey == "" {
			v.add("admin.enabled", "needs client.token.hmac_secret_key: the console connects to the hub with tokens signed with it")
		}
	}

	// client
	cl := c.Client
	v.origins("client.allowed_origins", cl.AllowedOrigins)
	if cl.PingInterval > 0 && cl.PongTimeout > 0 && cl.PongTimeout >= cl.PingInterval {
		v.add("client.pong_timeout", "%s must be less than client.ping_interval (%s)", cl.PongTimeout, cl.PingInterval)
	}
	v.nonNegDur("client.expired_close_delay", cl.ExpiredCloseDelay)
	v.nonNegDur("client.stale_close_delay", cl.StaleCloseDelay)
	v.nonNeg("client.channel_limit", cl.ChannelLimit)
	v.nonNeg("client.user_connection_limit", cl.UserConnectionLimit)
	v.nonNeg("client.connection_limit", cl.ConnectionLimit)
	v.positive("client.queue_max_size", cl.QueueMaxSize)
	v.nonNeg("client.command_rate_limit", cl.CommandRateLimit)
	v.positiveDur("client.command_timeout", cl.CommandTimeout)

	// channel
	v.positive("channel.max_length", c.Channel.MaxLength)
	v.namespaceOptions("channel.without_namespace", c.Channel.WithoutNamespace)
	seen := map[string]int{}
	for i, ns := range c.Channel.Namespaces {
		p := fmt.Sprintf("channel.namespaces[%d]", i)
		if !namespaceNameRe.MatchString(ns.Name) {
			v.add(p+".name", "%q must match %s", ns.Name, NamespaceNamePattern)
		} else if j, dup := seen[ns.Name]; dup {
			v.add(p+".name", "duplicate namespace name %q (also channel.namespaces[%d])", ns.Name, j)
		} else {
			seen[ns.Name] = i
		}
		v.namespaceOptions(p, ns.NamespaceOptions)
	}

	// websocket
	v.positive("websocket.message_size_limit", c.WebSocket.MessageSizeLimit)
	v.nonNeg("websocket.read_buffer_size", c.WebSocket.ReadBufferSize)

	// broker
	switch c.Broker.Type {
	case BrokerMemory:
		if c.Broker.RedisURL != "" {
			v.checkRedisURL("broker.redis_url", c.Broker.RedisURL)
		}
	case BrokerRedis:
		if c.Broker.RedisURL == "" {
			v.add("broker.redis_url", "required when broker.type is %q", BrokerRedis)
		} else {
			v.checkRedisURL("broker.redis_url", c.Broker.RedisURL)
		}
	default:
		v.add("broker.type", "unknown broker %q (use %q or %q)", c.Broker.Type, BrokerMemory, BrokerRedis)
	}

	// engine
	v.positiveDur("channel.history_meta_ttl", c.Channel.HistoryMetaTTL)
	switch c.Engine.Type {
	case BrokerMemory, BrokerRedis:
	default:
		v.add("engine.type", "unknown engine %q (use %q or %q)", c.Engine.Type, BrokerMemory, BrokerRedis)
	}
	er := c.Engine.Redis
	if _, err := redisbroker.ClientOption(er.Address); err != nil {
		v.add("engine.redis.address", "%v", err)
	}
	if er.Prefix == "" || strings.ContainsAny(er.Prefix, "{}") {
		v.add("engine.redis.prefix", "%q must be non-empty without { or }", er.Prefix)
	}
	v.positiveDur("engine.redis.presence_ttl", er.PresenceTTL)
	if c.Engine.Type == BrokerRedis && c.Broker.Type == BrokerRedis && c.Broker.RedisURL != "" &&
		er.Address != DefaultRedisAddress && er.Address != c.Broker.RedisURL {
		v.add("engine.redis.address", "differs from broker.redis_url; set one of them")
	}

	// shutdown
	v.nonNegDur("shutdown.timeout", c.Shutdown.Timeout)

	// runner
	r := c.Runner
	if len(r.Command) > 0 && r.Command[0] == "" {
		v.add("runner.command[0]", "program name is empty")
	}
	v.positive("runner.workers", r.Workers)
	switch {
	case !strings.HasPrefix(r.BasePath, "/"):
		v.add("runner.base_path", "%q must start with \"/\"", r.BasePath)
	case len(r.BasePath) > 1 && strings.HasSuffix(r.BasePath, "/"):
		v.add("runner.base_path", "%q must not end with \"/\"", r.BasePath)
	case r.BasePath == "/":
		v.add("runner.base_path", "must not be \"/\" alone")
	case strings.ContainsAny(r.BasePath, " ?#\t\r\n"):
		v.add("runner.base_path", "%q must be a plain URL path", r.BasePath)
	}
	if !headerNameRe.MatchString(r.TokenHeader) {
		v.add("runner.token_header", "%q is not a valid HTTP header name", r.TokenHeader)
	}
	v.nonEmptyItems("runner.allow.tasks", r.Allow.Tasks)
	v.nonEmptyItems("runner.allow.events", r.Allow.Events)
	v.positiveDur("runner.timeout", r.Timeout)
	v.positive("runner.max_in_flight", r.MaxInFlight)
	v.nonNeg("runner.queue_size", r.QueueSize)
	v.nonNegDur("runner.queue_timeout", r.QueueTimeout)
	v.origins("runner.cors.origins", r.CORS.Origins)
	if r.MaxBody <= 0 {
		v.add("runner.max_body", "must be positive, got %d", r.MaxBody)
	}
	v.nonNeg("runner.max_jobs", r.MaxJobs)
	v.nonNegDur("runner.ttl", r.TTL)
	v.nonNegDur("runner.idle_ttl", r.IdleTTL)
	if r.MaxMemory < 0 {
		v.add("runner.max_memory", "must not be negative, got %d", r.MaxMemory)
	}
	v.positiveDur("runner.ping_interval", r.PingInterval)

	// circles
	ci := c.Circles
	seenKey := map[string]int{}
	for i, k := range ci.Keys {
		p := fmt.Sprintf("circles.keys[%d]", i)
		lk, err := auth.CanonicalSecp256k1Hex(k) // either encoding of a key is the same key
		if err != nil {
			v.add(p, "%q is not a hex secp256k1 public key (66 characters compressed or 130 uncompressed, optional 0x)", truncate(k))
			continue
		}
		if j, dup := seenKey[lk]; dup {
			v.add(p, "duplicate key (also circles.keys[%d])", j)
		}
		seenKey[lk] = i
	}
	if ci.RedisURL != "" {
		v.checkRedisURL("circles.redis_url", ci.RedisURL)
	}
	if ci.DataDir == "" {
		v.add("circles.data_dir", "must not be empty")
	}
	v.positiveDur("circles.script_timeout", ci.ScriptTimeout)
	if ci.MaxSteps == 0 {
		v.add("circles.max_steps", "must be positive")
	}
	v.positive("circles.max_script_size", ci.MaxScriptSize)
	v.positive("circles.max_output_size", ci.MaxOutputSize)
	v.positive("circles.concurrency", ci.Concurrency)
	v.nonNeg("circles.queue_size", ci.QueueSize)
	if ci.Sandboxes < 1 || ci.Sandboxes > 256 {
		v.add("circles.sandboxes", "must be 1 to 256, got %d", ci.Sandboxes)
	}
	if ci.MaxMemory < 16<<20 {
		v.add("circles.max_memory", "must be at least 16 MiB, got %d bytes", ci.MaxMemory)
	}
	if ci.MaxCPU.Std() < time.Second {
		v.add("circles.max_cpu", "must be at least 1s, got %s", ci.MaxCPU.Std())
	}
	v.positive("circles.store_max_keys", ci.StoreMaxKeys)
	if ci.StoreMaxBytes <= 0 {
		v.add("circles.store_max_bytes", "must be positive, got %d", ci.StoreMaxBytes)
	}

	// scheduler
	sc := c.Scheduler
	if sc.DatabaseURL != "" {
		if u, err := url.Parse(sc.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			v.add("scheduler.database_url", "must be a postgres://user@host:port/db URL, or empty for SQLite in circles.data_dir")
		}
	}
	v.positive("scheduler.database_max_conns", sc.DatabaseMaxConns)
	if sc.Lease.Std() < time.Second {
		v.add("scheduler.lease", "must be at least 1s, got %s", sc.Lease)
	}
	v.positive("scheduler.max_attempts", sc.MaxAttempts)
	v.nonNegDur("scheduler.backoff_base", sc.BackoffBase)
	if sc.BackoffMax < sc.BackoffBase {
		v.add("scheduler.backoff_max", "%s must not be below scheduler.backoff_base (%s)", sc.BackoffMax, sc.BackoffBase)
	}
	v.positive("scheduler.chunk_size", sc.ChunkSize)
	if sc.MaxIterations < 1 {
		v.add("scheduler.max_iterations", "must be positive, got %d", sc.MaxIterations)
	}
	if sc.MaxConfigBytes < 2 {
		v.add("scheduler.max_config_bytes", "must be at least 2, got %d", sc.MaxConfigBytes)
	}
	v.positive("scheduler.assign_batch", sc.AssignBatch)
	if sc.SweepInterval == 0 {
		v.add("scheduler.sweep_interval", "must not be 0 (negative = no sweep)")
	}
	if sc.NodeTokenTTL.Std() < time.Second {
		v.add("scheduler.node_token_ttl", "must be at least 1s, got %s", sc.NodeTokenTTL)
	}
	if sc.HubURL != "" {
		if u, err := url.Parse(sc.HubURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			v.add("scheduler.hub_url", "must be a ws:// or wss:// URL, got %q", truncate(sc.HubURL))
		}
	}
	if sc.MaxBody < 1024 {
		v.add("scheduler.max_body", "must be at least 1024, got %d", sc.MaxBody)
	} else if sc.MaxBody < sc.MaxConfigBytes {
		v.add("scheduler.max_body", "%d must not be below scheduler.max_config_bytes (%d)", sc.MaxBody, sc.MaxConfigBytes)
	}
	if sc.SignatureSkew.Std() < time.Second {
		v.add("scheduler.signature_skew", "must be at least 1s, got %s", sc.SignatureSkew)
	}
	v.positive("scheduler.replay_cache_size", sc.ReplayCacheSize)
	if sc.ProgressInterval == 0 {
		v.add("scheduler.progress_interval", "must not be 0 (negative = publish each update at once)")
	}
	if sc.RegisterRate == 0 {
		v.add("scheduler.register_rate", "must not be 0 (negative = no limit)")
	}
	v.positive("scheduler.register_burst", sc.RegisterBurst)
	if sc.Enabled && c.Client.Token.HMACSecretKey == "" {
		v.add("scheduler.enabled", "needs client.token.hmac_secret_key (user tokens and node hub tokens are signed with it)")
	}

	// relay
	rl := c.Relay
	if rl.Enabled && rl.Auth == relay.AuthToken && c.Client.Token.HMACSecretKey == "" {
		v.add("relay.auth", "%q needs client.token.hmac_secret_key", relay.AuthToken)
	}
	if err := rl.certPairError(); err != nil {
		v.errs = append(v.errs, err)
	}
	// Timings the relay accepts but cannot work with (0: the default,
	// negative: the relay's own error below).
	for _, d := range relayDurationBounds {
		if got := d.get(rl); got > 0 && (got < d.lo || got > d.hi) {
			v.add("relay."+d.key, "%s is not within %s..%s (0: the default)", got, d.lo, d.hi)
		}
	}
	v.relayRules(rl)

	return errors.Join(v.errs...)
}

// relayDurationBounds bound the relay's timings: a heartbeat faster than
// 100 ms floods (under 1 ms WELCOME advertises 0 and native clients
// fail), one slower than a minute leaves a dead peer unnoticed; a resume
// window under a second is shorter than a redial, one over ten minutes
// holds a lost player's seat for too long. The rest catch a typo'd unit.
var relayDurationBounds = []struct {
	key    string
	get    func(Relay) Duration
	lo, hi Duration
}{
	{"heartbeat_interval", func(r Relay) Duration { return r.HeartbeatInterval }, Duration(100 * time.Millisecond), Duration(time.Minute)},
	{"resume_grace", func(r Relay) Duration { return r.ResumeGrace }, Duration(time.Second), Duration(10 * time.Minute)},
	{"handshake_timeout", func(r Relay) Duration { return r.HandshakeTimeout }, Duration(100 * time.Millisecond), Duration(time.Minute)},
	{"idle_timeout", func(r Relay) Duration { return r.IdleTimeout }, Duration(time.Second), Duration(10 * time.Minute)},
	{"write_timeout", func(r Relay) Duration { return r.WriteTimeout }, Duration(10 * time.Millisecond), Duration(time.Minute)},
}

// relayDependsOn names, for a relay setting checked against another one,
// that other (the base): against an invalid base the dependent's check
// means nothing, so only the base is reported.
var relayDependsOn = map[string]string{"max_type_name": "max_frame", "queue_limit": "max_frame"}

// relayRules adds the relay's own rules, once: what relay.New would
// refuse, without the dependents of an invalid base (see relayDependsOn),
// which are then checked on their own.
func (v *validator) relayRules(rl Relay) {
	var fes []*relay.FieldError
	bad := map[string]bool{}
	for _, err := range joined(rl.RelayConfig().Validate()) {
		var fe *relay.FieldError
		if errors.As(err, &fe) {
			fes = append(fes, fe)
			bad[fe.Field] = true
		} else {
			v.errs = append(v.errs, err)
		}
	}
	for _, fe := range fes {
		if base, ok := relayDependsOn[fe.Field]; ok && bad[base] {
			continue
		}
		v.add("relay."+fe.Field, "%s", fe.Problem)
	}
	if bad["max_frame"] {
		v.nonNeg("relay.max_type_name", rl.MaxTypeName)
		v.nonNeg("relay.queue_limit", rl.QueueLimit)
	}
}

// joined returns the errors an errors.Join made (err itself when it is
// not one, none for nil).
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &keyProblem{path: path, problem: fmt.Sprintf(format, args...)})
}

// keyProblem is an invalid value found by Validate, at its key path; err,
// when set, is the failure behind problem.
type keyProblem struct {
	path, problem string
	err           error
}

func (e *keyProblem) Error() string { return e.path + ": " + e.problem }

func (e *keyProblem) Unwrap() error { return e.err }

// dropRefused leaves out of err (from Validate) the problems of the keys
// in refused and below them: their values were refused by decoding and
// reported already, what Validate saw there is the value they kept.
func dropRefused(err error, refused ...map[string]bool) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range joined(err) {
		var kp *keyProblem
		if errors.As(e, &kp) && isRefused(kp.path, refused) {
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func isRefused(path string, refused []map[string]bool) bool {
	for _, m := range refused {
		for r := range m {
			if path == r || strings.HasPrefix(path, r+".") || strings.HasPrefix(path, r+"[") {
				return true
			}
		}
	}
	return false
}

// nameSources rewrites the problems of err (from Validate) whose key was
// set by an environment variable (source: key path to variable) to name
// the variable first, "VAR (key.path): problem", as the environment's own
// decoding errors do.
func nameSources(err error, source map[string]string) error {
	if err == nil || len(source) == 0 {
		return err
	}
	out := joined(err)
	for i, e := range out {
		var kp *keyProblem
		if errors.As(e, &kp) && source[kp.path] != "" {
			out[i] = &sourcedProblem{env: source[kp.path], kp: kp}
		}
	}
	return errors.Join(out...)
}

// sourcedProblem is a keyProblem whose key an environment variable set.
type sourcedProblem struct {
	env string
	kp  *keyProblem
}

func (e *sourcedProblem) Error() string {
	return fmt.Sprintf("%s (%s): %s", e.env, e.kp.path, e.kp.problem)
}

func (e *sourcedProblem) Unwrap() error { return e.kp }

func (v *validator) rangeInt(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(path, "%d out of range %d..%d", n, lo, hi)
	}
}

func (v *validator) nonNeg(path string, n int) {
	if n < 0 {
		v.add(path, "must not be negative, got %d", n)
	}
}

func (v *validator) positive(path string, n int) {
	if n <= 0 {
		v.add(path, "must be positive, got %d", n)
	}
}

func (v *validator) nonNegDur(path string, d Duration) {
	if d < 0 {
		v.add(path, "must not be negative, got %s", d)
	}
}

func (v *validator) positiveDur(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be positive, got %s", d)
	}
}

// origins checks each item with the origin policy's own parser.
func (v *validator) origins(path string, l []string) {
	for i, o := range l {
		if _, err := origin.New([]string{o}); err != nil || strings.ContainsAny(o, " \t\r\n") {
			v.add(fmt.Sprintf("%s[%d]", path, i), "%q is not an origin (use \"*\", e.g. \"https://example.com\" or \"https://*.example.com\")", o)
		}
	}
}

func (v *validator) nonEmptyItems(path string, l []string) {
	for i, s := range l {
		if strings.TrimSpace(s) == "" {
			v.add(fmt.Sprintf("%s[%d]", path, i), "must not be empty")
		}
	}
}

func (v *validator) checkRedisURL(path, s string) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, which may hold a password
		}
		v.add(path, "invalid URL: %v", err)
		return
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		v.add(path, "scheme must be redis:// or rediss://, got %q", u.Scheme)
		return
	}
	if u.Host == "" {
		v.add(path, "missing host in %q", redactURL(u))
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		for _, r := range db {
			if r < '0' || r > '9' {
				v.add(path, "database %q in the path must be a number", db)
				break
			}
		}
	}
}

func (v *validator) namespaceOptions(p string, o NamespaceOptions) {
	if o.HistorySize < 0 {
		v.add(p+".history_size", "must not be negative, got %d", o.HistorySize)
	}
	if o.HistoryTTL < 0 {
		v.add(p+".history_ttl", "must not be negative, got %s", o.HistoryTTL)
	} else if o.HistoryTTL.Std()%time.Second != 0 {
		v.add(p+".history_ttl", "must be a whole number of seconds, got %s", o.HistoryTTL)
	}
	if o.HistorySize > 0 && o.HistoryTTL <= 0 {
		v.add(p+".history_ttl", "must be set when history_size is set (history needs both)")
	}
	if o.HistoryTTL > 0 && o.HistorySize <= 0 {
		v.add(p+".history_size", "must be set when history_ttl is set (history needs both)")
	}
	if o.ForceRecovery && (o.HistorySize <= 0 || o.HistoryTTL <= 0) {
		v.add(p+".force_recovery", "requires history_size and history_ttl")
	}
	switch o.PublicationDataFormat {
	case hub.DataFormatAny, hub.DataFormatJSON, hub.DataFormatJSONObject, hub.DataFormatBinary:
	default:
		v.add(p+".publication_data_format", "must be json, json_object or binary, got %q", o.PublicationDataFormat)
	}
}

func redactURL(u *url.URL) string {
	if u.User != nil {
		if _, has := u.User.Password(); has {
			c := *u
			c.User = url.UserPassword(u.User.Username(), "xxxxx")
			return c.String()
		}
	}
	return u.String()
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:17] + "..."
	}
	return s
}
