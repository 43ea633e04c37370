package config

import (
	"reflect"
	"strings"
	"testing"
)

// Centrifugo v6.9 configuration keys (from its configtypes package), by
// parent. Each must be either a Switchboard key, a fixed-value key, or
// reported as unsupported: none may fall through as "unknown key".
var centrifugoV6Keys = map[string][]string{
	"": {"http_server", "log", "engine", "broker", "presence_manager", "map_broker", "controller", "shared_poll",
		"client", "channel", "rpc", "proxies", "http_api", "grpc_api", "consumers", "websocket", "sse", "http_stream",
		"webtransport", "uni_sse", "uni_http_stream", "uni_websocket", "uni_grpc", "emulation", "admin", "prometheus",
		"health", "swagger", "debug", "init", "opentelemetry", "graphite", "usage_stats", "node", "shutdown", "pid_file",
		"enable_unreleased_features"},
	"http_server": {"address", "port", "internal_address", "internal_port", "tls", "tls_autocert", "tls_external",
		"internal_tls", "http3", "h2c_external"},
	"log": {"level", "file"},
	"client": {"proxy", "allowed_origins", "token", "subscription_token", "allow_anonymous_connect_without_token",
		"disallow_anonymous_connection_tokens", "ping_interval", "pong_timeout", "expired_close_delay",
		"expired_sub_close_delay", "stale_close_delay", "channel_limit", "queue_max_size", "presence_update_interval",
		"concurrency", "channel_position_check_delay", "channel_position_max_time_lag", "connection_limit",
		"user_connection_limit", "connection_rate_limit", "connect_include_server_time", "history_max_publication_limit",
		"recovery_max_publication_limit", "insecure_skip_token_signature_verify", "user_id_http_header", "insecure",
		"subscribe_to_user_personal_channel", "connect_code_to_unidirectional_disconnect"},
	"client.token": {"hmac_secret_key", "hmac_previous_secret_key", "hmac_previous_secret_key_valid_until",
		"rsa_public_key", "ecdsa_public_key", "jwks_public_endpoint", "audience", "audience_regex", "issuer",
		"issuer_regex", "user_id_claim", "insecure_skip_jwks_endpoint_safety_check"},
	"channel": {"proxy", "without_namespace", "namespaces", "history_meta_ttl", "publication_data_format",
		"max_length", "private_prefix", "namespace_boundary", "user_boundary", "user_separator"},
	"channel.without_namespace": {"presence", "join_leave", "force_push_join_leave", "map_clients_presence_channel_prefix",
		"map_users_presence_channel_prefix", "history_size", "history_ttl", "history_meta_ttl", "force_positioning",
		"allow_positioning", "force_recovery", "allow_recovery", "force_recovery_mode", "auto_cache_recover",
		"allowed_delta_types", "allow_tags_filter", "delta_publish", "allow_subscribe_for_anonymous",
		"allow_subscribe_for_client", "allow_publish_for_anonymous", "allow_publish_for_subscriber",
		"allow_publish_for_client", "allow_presence_for_anonymous", "allow_presence_for_subscriber",
		"allow_presence_for_client", "allow_history_for_anonymous", "allow_history_for_subscriber",
		"allow_history_for_client", "allow_user_limited_channels", "channel_regex", "publication_data_format",
		"subscribe_proxy_enabled", "subscribe_proxy_name", "publish_proxy_enabled", "publish_proxy_name",
		"sub_refresh_proxy_enabled", "sub_refresh_proxy_name", "subscribe_stream_proxy_enabled",
		"subscribe_stream_proxy_name", "subscribe_stream_proxy_bidirectional", "subscription_type", "map", "shared_poll"},
	"http_api":  {"disabled", "handler_prefix", "key", "error_mode", "external", "insecure"},
	"websocket": {"disabled", "handler_prefix", "compression", "compression_min_size", "compression_level", "read_buffer_size", "use_write_buffer_pool", "write_buffer_size", "write_timeout", "message_size_limit", "decompressed_message_size_limit"},
	"broker":    {"enabled", "type", "redis", "nats", "postgres", "redisnats"},
	"shutdown":  {"timeout"},
}

func typeAt(path string) reflect.Type {
	t := reflect.TypeOf(Config{})
	if path == "" {
		return t
	}
	for _, k := range strings.Split(path, ".") {
		f, ok := fieldByName(t, k)
		if !ok {
			return nil
		}
		t = f.typ
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
	}
	return t
}

func TestCentrifugoKeysClassified(t *testing.T) {
	supported, unsup, fix := 0, 0, 0
	for parent, keys := range centrifugoV6Keys {
		pt := typeAt(parent)
		if pt == nil {
			t.Fatalf("parent %q is not a Switchboard object", parent)
		}
		for _, k := range keys {
			_, known := fieldByName(pt, k)
			_, un := unsupportedKey(parent, k)
			_, fx := fixed[joinPath(parent, k)]
			switch {
			case known && (un || fx):
				t.Errorf("%s is both supported and unsupported/fixed", joinPath(parent, k))
			case known:
				supported++
			case un:
				unsup++
			case fx:
				fix++
			default:
				t.Errorf("Centrifugo key %s is not classified", joinPath(parent, k))
			}
		}
	}
	// Namespace entries share the without_namespace classification.
	for _, k := range centrifugoV6Keys["channel.without_namespace"] {
		_, known := fieldByName(reflect.TypeOf(Namespace{}), k)
		_, un := unsupportedKey("channel.namespaces[]", k)
		if known == un {
			t.Errorf("namespace key %s: supported=%v unsupported=%v", k, known, un)
		}
	}
	t.Logf("Centrifugo v6 keys: %d supported, %d unsupported, %d fixed", supported, unsup, fix)
}

func TestUnsupportedNeverShadowsSupported(t *testing.T) {
	for parent, set := range unsupported {
		p := parent
		if p == "#ns" {
			p = "channel.without_namespace"
		}
		pt := typeAt(p)
		if pt == nil {
			t.Fatalf("unsupported parent %q is not a Switchboard object", parent)
		}
		for k := range set {
			if _, ok := fieldByName(pt, k); ok {
				t.Errorf("%s is listed unsupported but is a Switchboard key", joinPath(p, k))
			}
		}
	}
	for k := range fixed {
		i := strings.LastIndex(k, ".")
		if _, ok := fieldByName(typeAt(k[:i]), k[i+1:]); ok {
			t.Errorf("fixed key %s is a Switchboard key", k)
		}
	}
}
