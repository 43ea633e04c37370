package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Centrifugo v6 keys that are not Switchboard keys, classified from
// Centrifugo's own configuration types (internal/configtypes at v6.9.1;
// testdata/centrifugo_v6_keys.txt lists every key with its default, and
// TestCentrifugoKeysClassified checks that each one is either a Switchboard
// key or covered here).
//
//   - noEffect: accepted with any value; it tunes something Switchboard
//     does not have or does its own way. Listed in the startup warning.
//   - offOnly: accepted (and listed in the warning) while its value is off
//     (false, "", 0, empty, null) or Centrifugo's default; any other value
//     would turn on a missing feature and is an error naming the key.
//   - section: an object (or list of objects) of a feature Switchboard
//     lacks. Its gate, when set, says whether the value turns the feature
//     on (an error naming the gate key); otherwise every key inside is
//     without effect, unless a more specific entry classifies it.
//   - fixed: Switchboard hard-codes this value; only it is accepted.
//   - legacy: not a v6 key (Centrifugo v5 and older), always an error.
//
// Namespace options are listed once, under channel.without_namespace; they
// apply to every channel.namespaces[] entry as well.
type keyClass int

const (
	noEffect keyClass = iota
	offOnly
	section
	fixed
	legacy
)

type centrifugoKey struct {
	class keyClass
	// def is Centrifugo's default for offOnly keys ("" = the zero value);
	// the only accepted value for fixed keys. "|" separates alternatives.
	def  string
	gate gate
	hint string
}

// gate reports whether a section value turns its feature on, and the key
// (inside the section) that does.
type gate func(sec, parent map[string]any) (key string, on bool)

// enabledGate: on when the section's "enabled" is true.
func enabledGate(sec, _ map[string]any) (string, bool) { return "enabled", !isOff(sec["enabled"]) }

// engineGate: on when "type" selects anything but the memory engine (and,
// for sections with an "enabled" switch, that switch is on).
func engineGate(sec, _ map[string]any) (string, bool) {
	t, _ := scalarString(sec["type"])
	if t == "" || t == "memory" {
		return "type", false
	}
	if e, has := sec["enabled"]; has && isOff(e) {
		return "type", false
	}
	return "type", true
}

// selectedBy: on when the parent's "type" names this section (broker.redis
// with broker.type redis).
func selectedBy(name string) gate {
	return func(_, parent map[string]any) (string, bool) {
		t, _ := scalarString(parent["type"])
		return "", t == name
	}
}

const (
	useBroker = "use engine.type and engine.redis.address"
	inAddress = "put it in engine.redis.address"
	noTLS     = "terminate TLS in a reverse proxy"
	onlyHS256 = "only HS256 (hmac_secret_key) is supported"
)

var centrifugoKeys = map[string]centrifugoKey{
	// Top level.
	"presence_manager":                    {class: section, gate: engineGate, hint: "presence follows engine.type"},
	"map_broker":                          {class: section, gate: engineGate},
	"controller":                          {class: section, gate: engineGate},
	"shared_poll":                         {class: section}, // used only by shared_poll namespaces
	"rpc":                                 {class: section, hint: "client RPC goes to the worker gateway (runner)"},
	"rpc.without_namespace.proxy_enabled": {class: offOnly, hint: "client RPC goes to the worker gateway (runner)"},
	"rpc.namespaces[].proxy_enabled":      {class: offOnly, hint: "client RPC goes to the worker gateway (runner)"},
	"rpc.ping.enabled":                    {class: offOnly},
	"proxies":                             {class: section}, // used only by *_proxy_enabled options
	"grpc_api":                            {class: section, gate: enabledGate, hint: "use the HTTP API"},
	"consumers":                           {class: section},
	"consumers[].enabled":                 {class: offOnly},
	"sse":                                 {class: section, gate: enabledGate},
	"http_stream":                         {class: section, gate: enabledGate},
	"webtransport":                        {class: section, gate: enabledGate},
	"uni_sse":                             {class: section, gate: enabledGate},
	"uni_http_stream":                     {class: section, gate: enabledGate},
	"uni_websocket":                       {class: section, gate: enabledGate},
	"uni_grpc":                            {class: section, gate: enabledGate},
	"emulation":                           {class: section}, // used only by sse and http_stream
	"admin.handler_prefix":                {class: offOnly, hint: "the console is served at /console"},
	"admin.insecure":                      {class: offOnly, hint: "the console always asks for admin.password"},
	"admin.web_path":                      {class: offOnly, hint: "the console's pages are built in"},
	"admin.web_proxy_address":             {class: offOnly, hint: "the console's pages are built in"},
	"admin.external":                      {class: offOnly, hint: "everything is served on http_server.port"},
	"prometheus":                          {class: section}, // Switchboard always serves /metrics
	"prometheus.handler_prefix":           {class: fixed, def: "/metrics"},
	"health":                              {class: section}, // Switchboard always serves /health
	"health.handler_prefix":               {class: fixed, def: "/health"},
	"swagger":                             {class: section, gate: enabledGate},
	"debug":                               {class: section, gate: enabledGate},
	"init":                                {class: section, gate: enabledGate},
	"opentelemetry":                       {class: section, gate: enabledGate},
	"graphite":                            {class: section, gate: enabledGate},
	"usage_stats":                         {class: section}, // Switchboard reports no usage statistics
	"node":                                {class: section},
	"pid_file":                            {class: offOnly},
	"enable_unreleased_features":          {class: offOnly},
	// Centrifugo v5 and older.
	"redis":        {class: legacy, hint: useBroker},
	"nats":         {class: legacy},
	"tls":          {class: legacy, hint: noTLS},
	"tls_autocert": {class: legacy, hint: noTLS},

	"http_server.internal_address": {class: offOnly, hint: "everything is served on http_server.port"},
	"http_server.internal_port":    {class: offOnly, hint: "everything is served on http_server.port"},
	"http_server.tls":              {class: section, gate: enabledGate, hint: noTLS},
	"http_server.tls_autocert":     {class: section, gate: enabledGate, hint: noTLS},
	"http_server.tls_external":     {class: offOnly},
	"http_server.internal_tls":     {class: section, gate: enabledGate, hint: noTLS},
	"http_server.http3":            {class: section, gate: enabledGate},
	"http_server.h2c_external":     {class: offOnly},

	"log.file": {class: offOnly, hint: "logs go to standard error"},

	"client.proxy":                                     {class: section},
	"client.proxy.connect":                             {class: section, gate: enabledGate},
	"client.proxy.refresh":                             {class: section, gate: enabledGate},
	"client.subscription_token":                        {class: section, gate: enabledGate},
	"client.disallow_anonymous_connection_tokens":      {class: offOnly},
	"client.expired_sub_close_delay":                   {class: noEffect},
	"client.presence_update_interval":                  {class: noEffect},
	"client.concurrency":                               {class: noEffect},
	"client.channel_position_max_time_lag":             {class: noEffect},
	"client.connection_rate_limit":                     {class: offOnly},
	"client.connect_include_server_time":               {class: offOnly},
	"client.history_max_publication_limit":             {class: offOnly, def: "300"},
	"client.recovery_max_publication_limit":            {class: offOnly, def: "300"},
	"client.insecure_skip_token_signature_verify":      {class: offOnly},
	"client.user_id_http_header":                       {class: offOnly},
	"client.insecure":                                  {class: offOnly},
	"client.subscribe_to_user_personal_channel":        {class: section, gate: enabledGate},
	"client.connect_code_to_unidirectional_disconnect": {class: section}, // unidirectional transports only

	"client.token.hmac_previous_secret_key":                 {class: offOnly},
	"client.token.hmac_previous_secret_key_valid_until":     {class: offOnly},
	"client.token.rsa_public_key":                           {class: offOnly, hint: onlyHS256},
	"client.token.ecdsa_public_key":                         {class: offOnly, hint: onlyHS256},
	"client.token.jwks_public_endpoint":                     {class: offOnly, hint: onlyHS256},
	"client.token.audience_regex":                           {class: offOnly, hint: "use audience"},
	"client.token.issuer_regex":                             {class: offOnly, hint: "use issuer"},
	"client.token.user_id_claim":                            {class: offOnly, def: "sub"},
	"client.token.insecure_skip_jwks_endpoint_safety_check": {class: noEffect},

	"channel.proxy":              {class: section}, // used only by *_proxy_enabled options
	"channel.private_prefix":     {class: offOnly, def: "$"},
	"channel.namespace_boundary": {class: fixed, def: NamespaceBoundary},
	"channel.user_boundary":      {class: fixed, def: UserBoundary},
	"channel.user_separator":     {class: fixed, def: UserSeparator},

	"channel.without_namespace.history_meta_ttl":                     {class: noEffect},
	"channel.without_namespace.allow_positioning":                    {class: offOnly, hint: "use force_positioning"},
	"channel.without_namespace.allow_recovery":                       {class: offOnly, hint: "use force_recovery"},
	"channel.without_namespace.force_recovery_mode":                  {class: offOnly, def: "stream"},
	"channel.without_namespace.auto_cache_recover":                   {class: offOnly},
	"channel.without_namespace.allowed_delta_types":                  {class: offOnly},
	"channel.without_namespace.allow_tags_filter":                    {class: offOnly},
	"channel.without_namespace.delta_publish":                        {class: offOnly},
	"channel.without_namespace.channel_regex":                        {class: offOnly},
	"channel.without_namespace.subscribe_proxy_enabled":              {class: offOnly},
	"channel.without_namespace.subscribe_proxy_name":                 {class: noEffect},
	"channel.without_namespace.publish_proxy_enabled":                {class: offOnly},
	"channel.without_namespace.publish_proxy_name":                   {class: noEffect},
	"channel.without_namespace.sub_refresh_proxy_enabled":            {class: offOnly},
	"channel.without_namespace.sub_refresh_proxy_name":               {class: noEffect},
	"channel.without_namespace.subscribe_stream_proxy_enabled":       {class: offOnly},
	"channel.without_namespace.subscribe_stream_proxy_name":          {class: noEffect},
	"channel.without_namespace.subscribe_stream_proxy_bidirectional": {class: noEffect},
	"channel.without_namespace.subscription_type":                    {class: offOnly, def: "stream"},
	"channel.without_namespace.map":                                  {class: section}, // map subscriptions only
	"channel.without_namespace.shared_poll":                          {class: section}, // shared_poll subscriptions only
	"channel.without_namespace.map_clients_presence_channel_prefix":  {class: noEffect},
	"channel.without_namespace.map_users_presence_channel_prefix":    {class: noEffect},

	"channel.publication_data_format": {class: offOnly, hint: "set it per namespace (channel.without_namespace, channel.namespaces[])"},
	"http_api.disabled":               {class: offOnly},
	"http_api.external":               {class: offOnly},
	"http_api.handler_prefix":         {class: fixed, def: "/api"},

	"websocket.disabled":                        {class: offOnly},
	"websocket.handler_prefix":                  {class: fixed, def: "/connection/websocket"},
	"websocket.compression":                     {class: offOnly},
	"websocket.compression_min_size":            {class: noEffect},
	"websocket.compression_level":               {class: noEffect},
	"websocket.use_write_buffer_pool":           {class: noEffect},
	"websocket.write_buffer_size":               {class: noEffect}, // gws ignores a write buffer size
	"websocket.write_timeout":                   {class: noEffect},
	"websocket.decompressed_message_size_limit": {class: noEffect},

	// The Redis engine: what engine.redis.address and Switchboard's own
	// deadlines do not cover.
	"engine.redis.connect_timeout":         {class: noEffect},
	"engine.redis.io_timeout":              {class: noEffect}, // every operation has its caller's deadline
	"engine.redis.db":                      {class: offOnly, hint: inAddress},
	"engine.redis.user":                    {class: offOnly, hint: inAddress},
	"engine.redis.password":                {class: offOnly, hint: inAddress},
	"engine.redis.client_name":             {class: noEffect},
	"engine.redis.force_resp2":             {class: offOnly},
	"engine.redis.cluster_address":         {class: offOnly, hint: "Redis Cluster is not supported"},
	"engine.redis.tls":                     {class: section, gate: enabledGate, hint: "use a rediss:// engine.redis.address"},
	"engine.redis.sentinel_address":        {class: offOnly, hint: "use a redis+sentinel:// engine.redis.address"},
	"engine.redis.sentinel_user":           {class: offOnly, hint: "use a redis+sentinel:// engine.redis.address"},
	"engine.redis.sentinel_password":       {class: offOnly, hint: "use a redis+sentinel:// engine.redis.address"},
	"engine.redis.sentinel_master_name":    {class: offOnly, hint: "use a redis+sentinel:// engine.redis.address"},
	"engine.redis.sentinel_client_name":    {class: noEffect},
	"engine.redis.sentinel_tls":            {class: section, gate: enabledGate, hint: "use a rediss+sentinel:// engine.redis.address"},
	"engine.redis.replica_client":          {class: section, gate: enabledGate},
	"engine.redis.history_use_lists":       {class: offOnly},
	"engine.redis.presence_hash_field_ttl": {class: offOnly},
	"engine.redis.presence_user_mapping":   {class: offOnly},

	"broker.enabled":   {class: noEffect}, // broker.type decides
	"broker.redis":     {class: section, gate: selectedBy("redis"), hint: "use broker.redis_url"},
	"broker.nats":      {class: section}, // broker.type nats is rejected by broker.type
	"broker.postgres":  {class: section},
	"broker.redisnats": {class: section},
}

// lookupKey finds the entry of a generic key path; namespace entries share
// the channel.without_namespace options.
func lookupKey(gpath string) (centrifugoKey, bool) {
	if rest, ok := strings.CutPrefix(gpath, "channel.namespaces[]."); ok {
		gpath = "channel.without_namespace." + rest
	}
	k, ok := centrifugoKeys[gpath]
	return k, ok
}

// isOff reports whether v leaves a feature off: null, false, "", zero,
// an empty list or object, or "false"/"0" written as strings.
func isOff(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == "" || x == "false" || x == "0"
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	if s, ok := number(v); ok {
		return s == "0" || s == "0.0"
	}
	return false
}

func isDefault(v any, def string) bool {
	if def == "" {
		return false
	}
	s, ok := scalarString(v)
	if !ok {
		return false
	}
	for _, d := range strings.Split(def, "|") {
		if s == d {
			return true
		}
	}
	return false
}

// classifier walks a parsed document against the Switchboard schema and
// the Centrifugo table: unknown keys and keys that turn on a missing
// feature are problems; keys without effect are collected.
type classifier struct {
	p        *problems
	noEffect []string
}

func (c *classifier) unsupported(path, hint string) {
	msg := fmt.Sprintf("key %q is a Centrifugo feature not supported by Switchboard", path)
	if hint != "" {
		msg += " (" + hint + ")"
	}
	c.p.add(errors.New(msg))
}

// centrifugo handles the value v of a Centrifugo key (rule k) at path.
func (c *classifier) centrifugo(path, gpath string, k centrifugoKey, v any, parent map[string]any) {
	switch k.class {
	case fixed:
		if s, ok := v.(string); v != nil && (!ok || s != k.def) {
			c.p.add(fmt.Errorf("%s: Switchboard fixes this to %q; got %s (remove the key or set it to %q)", path, k.def, describe(v), k.def))
		}
	case legacy:
		c.unsupported(path, k.hint)
	case offOnly:
		if isOff(v) || isDefault(v, k.def) {
			c.noEffect = append(c.noEffect, path)
			return
		}
		c.unsupported(path, k.hint)
	case noEffect:
		c.noEffect = append(c.noEffect, path)
	case section:
		switch x := v.(type) {
		case map[string]any:
			if k.gate != nil {
				if key, on := k.gate(x, parent); on {
					if key != "" {
						path = path + "." + key
					}
					c.unsupported(path, k.hint)
					return
				}
			}
			c.sectionKeys(path, gpath, x)
		case []any:
			for i, e := range x {
				if m, ok := e.(map[string]any); ok {
					c.sectionKeys(fmt.Sprintf("%s[%d]", path, i), gpath+"[]", m)
				} else {
					c.noEffect = append(c.noEffect, fmt.Sprintf("%s[%d]", path, i))
				}
			}
			if len(x) == 0 {
				c.noEffect = append(c.noEffect, path)
			}
		default:
			c.noEffect = append(c.noEffect, path)
		}
	}
}

func (c *classifier) sectionKeys(path, gpath string, m map[string]any) {
	if len(m) == 0 {
		c.noEffect = append(c.noEffect, path)
	}
	for _, key := range sortedKeys(m) {
		p, g := joinPath(path, key), joinPath(gpath, key)
		if k, ok := lookupKey(g); ok {
			c.centrifugo(p, g, k, m[key], m)
			continue
		}
		switch sub := m[key].(type) {
		case map[string]any:
			if len(sub) > 0 {
				c.sectionKeys(p, g, sub)
				continue
			}
		case []any:
			for i, e := range sub {
				ep := fmt.Sprintf("%s[%d]", p, i)
				if em, ok := e.(map[string]any); ok && len(em) > 0 {
					c.sectionKeys(ep, g+"[]", em)
				} else {
					c.noEffect = append(c.noEffect, ep)
				}
			}
			if len(sub) > 0 {
				continue
			}
		}
		c.noEffect = append(c.noEffect, p)
	}
}

// object checks the keys of m against the schema struct t.
func (c *classifier) object(t reflect.Type, path, gpath string, m map[string]any) {
	for _, key := range sortedKeys(m) {
		v := m[key]
		p, g := joinPath(path, key), joinPath(gpath, key)
		if f, ok := fieldByName(t, key); ok {
			switch {
			case isStruct(f.typ):
				if sub, ok := v.(map[string]any); ok {
					c.object(f.typ, p, g, sub)
				}
			case f.typ.Kind() == reflect.Slice && isStruct(f.typ.Elem()):
				if l, ok := v.([]any); ok {
					for i, e := range l {
						if sub, ok := e.(map[string]any); ok {
							c.object(f.typ.Elem(), fmt.Sprintf("%s[%d]", p, i), g+"[]", sub)
						}
					}
				}
			}
			continue // values are checked when decoding
		}
		if k, ok := lookupKey(g); ok {
			c.centrifugo(p, g, k, v, m)
			continue
		}
		msg := fmt.Sprintf("unknown key %q", p)
		if strings.Contains(key, ".") {
			msg += " (dotted keys are not expanded; nest the objects instead)"
		} else if s := suggest(t, path, key); len(s) > 0 {
			q := make([]string, len(s))
			for i, x := range s {
				q[i] = strconv.Quote(x)
			}
			msg += " (did you mean " + strings.Join(q, " or ") + "?)"
		}
		c.p.add(errors.New(msg))
	}
}

// isStruct reports whether t is a nested configuration object (not a
// Duration, which is a scalar).
func isStruct(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
