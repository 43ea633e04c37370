package config

import (
	"reflect"
	"sort"
	"strings"
	"sync"
)

// fieldInfo describes one configuration key of a struct, embedded structs
// without a key of their own flattened into their parent.
type fieldInfo struct {
	name  string // key name (json tag)
	index []int  // reflect index path
	opt   string // cfg tag: "argv", "bytesize" or ""
	typ   reflect.Type
}

var (
	durationType = reflect.TypeOf(Duration(0))
	fieldsCache  sync.Map // reflect.Type -> []fieldInfo
)

// fieldsOf lists the keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []fieldInfo {
	if v, ok := fieldsCache.Load(t); ok {
		return v.([]fieldInfo)
	}
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(sf.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if name == "" {
			continue
		}
		out = append(out, fieldInfo{name: name, index: []int{i}, opt: sf.Tag.Get("cfg"), typ: sf.Type})
	}
	fieldsCache.Store(t, out)
	return out
}

func fieldByName(t reflect.Type, name string) (fieldInfo, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// isStruct reports whether t is a nested configuration object (not a
// Duration, which is a scalar).
func isStruct(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

// leaf is one settable key of the whole schema.
type leaf struct {
	path  string // generic key path, namespaces as "channel.namespaces[]"
	field fieldInfo
	// envName is SWITCHBOARD_ + upper-cased path with "." -> "_"; empty for
	// keys inside lists of objects (namespaces), which env cannot set.
	envName string
	index   []int // full reflect index path from Config
}

var (
	leavesOnce sync.Once
	allLeaves  []leaf
	envIndex   map[string]leaf
)

// EnvPrefix starts every environment variable ApplyEnv reads.
const EnvPrefix = "SWITCHBOARD_"

func schemaLeaves() []leaf {
	leavesOnce.Do(func() {
		var walk func(t reflect.Type, prefix string, index []int, inList bool)
		walk = func(t reflect.Type, prefix string, index []int, inList bool) {
			for _, f := range fieldsOf(t) {
				p := f.name
				if prefix != "" {
					p = prefix + "." + f.name
				}
				idx := append(append([]int{}, index...), f.index...)
				switch {
				case isStruct(f.typ):
					walk(f.typ, p, idx, inList)
				case f.typ.Kind() == reflect.Slice && isStruct(f.typ.Elem()):
					walk(f.typ.Elem(), p+"[]", nil, true)
				default:
					l := leaf{path: p, field: f, index: idx}
					if !inList {
						l.envName = EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
					}
					allLeaves = append(allLeaves, l)
				}
			}
		}
		walk(reflect.TypeOf(Config{}), "", nil, false)
		envIndex = map[string]leaf{}
		for _, l := range allLeaves {
			if l.envName == "" {
				continue
			}
			if _, dup := envIndex[l.envName]; dup {
				panic("config: duplicate environment variable " + l.envName)
			}
			envIndex[l.envName] = l
		}
	})
	return allLeaves
}

// Keys returns every configuration key path in schema order; keys of
// namespace entries appear as "channel.namespaces[].name" etc.
func Keys() []string {
	ls := schemaLeaves()
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.path
	}
	return out
}

// EnvVars returns every environment variable ApplyEnv understands, mapped
// to the key path it sets.
func EnvVars() map[string]string {
	schemaLeaves()
	out := make(map[string]string, len(envIndex))
	for k, l := range envIndex {
		out[k] = l.path
	}
	return out
}

// ---- Centrifugo keys Switchboard does not support ----

// unsupported maps a generic parent path to the Centrifugo v6 keys under it
// that name features Switchboard lacks, each with an optional hint.
// Namespace options are listed under "#ns" and apply to both
// channel.without_namespace and every channel.namespaces[] entry.
var unsupported = map[string]map[string]string{
	"": {
		"engine":                     "use broker.type and broker.redis_url",
		"presence_manager":           "presence follows broker.type",
		"map_broker":                 "",
		"controller":                 "",
		"shared_poll":                "",
		"rpc":                        "",
		"proxies":                    "",
		"grpc_api":                   "use the HTTP API",
		"consumers":                  "",
		"sse":                        "",
		"http_stream":                "",
		"webtransport":               "",
		"uni_sse":                    "",
		"uni_http_stream":            "",
		"uni_websocket":              "",
		"uni_grpc":                   "",
		"emulation":                  "",
		"admin":                      "",
		"prometheus":                 "",
		"health":                     "",
		"swagger":                    "",
		"debug":                      "",
		"init":                       "",
		"dev":                        "",
		"opentelemetry":              "",
		"graphite":                   "",
		"usage_stats":                "",
		"node":                       "",
		"pid_file":                   "",
		"enable_unreleased_features": "",
		"redis":                      "use broker.type and broker.redis_url",
		"nats":                       "",
		"tls":                        "terminate TLS in a reverse proxy",
		"tls_autocert":               "terminate TLS in a reverse proxy",
	},
	"http_server": {
		"internal_address": "",
		"internal_port":    "",
		"tls":              "terminate TLS in a reverse proxy",
		"tls_autocert":     "terminate TLS in a reverse proxy",
		"tls_external":     "",
		"internal_tls":     "",
		"http3":            "",
		"h2c_external":     "",
	},
	"log": {
		"file": "logs go to standard error",
	},
	"client": {
		"proxy":                                     "",
		"subscription_token":                        "",
		"disallow_anonymous_connection_tokens":      "",
		"expired_sub_close_delay":                   "",
		"presence_update_interval":                  "",
		"concurrency":                               "",
		"channel_position_check_delay":              "",
		"channel_position_max_time_lag":             "",
		"connection_rate_limit":                     "",
		"connect_include_server_time":               "",
		"history_max_publication_limit":             "",
		"recovery_max_publication_limit":            "",
		"insecure_skip_token_signature_verify":      "",
		"user_id_http_header":                       "",
		"insecure":                                  "",
		"subscribe_to_user_personal_channel":        "",
		"connect_code_to_unidirectional_disconnect": "",
		"allowed_delta_types":                       "",
	},
	"client.token": {
		"hmac_previous_secret_key":                 "",
		"hmac_previous_secret_key_valid_until":     "",
		"rsa_public_key":                           "only HS256 (hmac_secret_key) is supported",
		"ecdsa_public_key":                         "only HS256 (hmac_secret_key) is supported",
		"jwks_public_endpoint":                     "only HS256 (hmac_secret_key) is supported",
		"audience_regex":                           "use audience",
		"issuer_regex":                             "use issuer",
		"user_id_claim":                            "",
		"insecure_skip_jwks_endpoint_safety_check": "",
	},
	"channel": {
		"proxy":                   "",
		"history_meta_ttl":        "",
		"publication_data_format": "",
		"private_prefix":          "",
		"patterns":                "",
	},
	"#ns": {
		"history_meta_ttl":                      "",
		"allow_positioning":                     "use force_positioning",
		"allow_recovery":                        "use force_recovery",
		"force_recovery_mode":                   "",
		"auto_cache_recover":                    "",
		"allowed_delta_types":                   "",
		"allow_tags_filter":                     "",
		"delta_publish":                         "",
		"channel_regex":                         "",
		"publication_data_format":               "",
		"subscribe_proxy_enabled":               "",
		"subscribe_proxy_name":                  "",
		"publish_proxy_enabled":                 "",
		"publish_proxy_name":                    "",
		"sub_refresh_proxy_enabled":             "",
		"sub_refresh_proxy_name":                "",
		"subscribe_stream_proxy_enabled":        "",
		"subscribe_stream_proxy_name":           "",
		"subscribe_stream_proxy_bidirectional":  "",
		"subscription_type":                     "",
		"map":                                   "",
		"shared_poll":                           "",
		"map_clients_presence_channel_prefix":   "",
		"map_users_presence_channel_prefix":     "",
		"allow_subscribe_for_client_when_ready": "",
	},
	"http_api": {
		"disabled":   "",
		"error_mode": "",
		"external":   "",
	},
	"websocket": {
		"disabled":                        "",
		"compression":                     "",
		"compression_min_size":            "",
		"compression_level":               "",
		"use_write_buffer_pool":           "",
		"write_timeout":                   "",
		"decompressed_message_size_limit": "",
	},
	"broker": {
		"enabled":   "set broker.type",
		"redis":     "use broker.redis_url",
		"nats":      "",
		"postgres":  "",
		"redisnats": "",
	},
}

// fixed lists Centrifugo keys Switchboard accepts only with one value,
// because it hard-codes that behaviour.
var fixed = map[string]string{
	"channel.namespace_boundary": NamespaceBoundary,
	"channel.user_boundary":      UserBoundary,
	"channel.user_separator":     UserSeparator,
	"http_api.handler_prefix":    "/api",
	"websocket.handler_prefix":   "/connection/websocket",
}

func unsupportedKey(gpath, key string) (hint string, ok bool) {
	set := gpath
	if gpath == "channel.without_namespace" || gpath == "channel.namespaces[]" {
		set = "#ns"
	}
	hint, ok = unsupported[set][key]
	return hint, ok
}

// ---- suggestions ----

// suggest proposes known key paths for an unknown key at gpath: a close
// sibling by edit distance first, else keys elsewhere in the schema with the
// same name or whose flattened path ends with it (Centrifugo v5 flat keys
// such as "token_hmac_secret_key" or "client_channel_limit").
func suggest(t reflect.Type, path, key string) []string {
	lk := strings.ToLower(key)
	best, bestD := "", 1<<30
	for _, f := range fieldsOf(t) {
		d := osaDistance(lk, f.name)
		if d < bestD {
			best, bestD = f.name, d
		}
	}
	limit := len(lk) / 3
	if limit < 1 {
		limit = 1
	}
	if limit > 3 {
		limit = 3
	}
	if best != "" && bestD <= limit {
		return []string{joinPath(path, best)}
	}
	// A truncated or extended sibling ("hmac_secret" for "hmac_secret_key").
	if len(lk) >= 4 {
		for _, f := range fieldsOf(t) {
			if len(f.name) >= 4 && (strings.HasPrefix(f.name, lk) || strings.HasPrefix(lk, f.name)) {
				return []string{joinPath(path, f.name)}
			}
		}
	}
	var exact, tail []string
	for _, l := range schemaLeaves() {
		p := l.path
		flat := strings.ReplaceAll(strings.ReplaceAll(p, "[]", ""), ".", "_")
		switch {
		case flat == lk:
			exact = append(exact, p)
		case l.field.name == lk || strings.HasSuffix(flat, "_"+lk):
			tail = append(tail, p)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	// Prefer paths outside namespace lists (channel.without_namespace.x over
	// channel.namespaces[].x).
	sort.SliceStable(tail, func(i, j int) bool {
		return !strings.Contains(tail[i], "[]") && strings.Contains(tail[j], "[]")
	})
	if len(tail) > 3 {
		tail = tail[:3]
	}
	return tail
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// osaDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions).
func osaDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := 0; j <= len(rb); j++ {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
