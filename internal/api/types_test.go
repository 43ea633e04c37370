package api

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// centrifugoJSON is the JSON tag of every field of Centrifugo v6.9's
// server API messages (internal/apiproto/api.pb.go, v6.9.1), the
// reference Switchboard's wire types must match.
var centrifugoJSON = map[string][]string{
	// Replies.
	"Error":               {"code,omitempty", "message,omitempty"},
	"PublishResult":       {"offset,omitempty", "epoch,omitempty"},
	"PublishResponse":     {"error,omitempty", "result,omitempty"},
	"BroadcastResult":     {"responses,omitempty"},
	"ClientInfo":          {"user", "client", "conn_info,omitempty", "chan_info,omitempty"},
	"PresenceResult":      {"presence"},
	"PresenceStatsResult": {"num_clients", "num_users"},
	"StreamPosition":      {"offset,omitempty", "epoch,omitempty"},
	"Publication":         {"data,omitempty", "info,omitempty", "offset,omitempty", "tags,omitempty"},
	"HistoryResult":       {"publications", "epoch", "offset"},
	"InfoResult":          {"nodes,omitempty"},
	"NodeResult": {"uid", "name", "version", "num_clients", "num_users", "num_channels", "uptime,omitempty",
		"metrics,omitempty", "process,omitempty", "num_subs"},
	"Metrics":        {"interval,omitempty", "items,omitempty"},
	"Process":        {"cpu,omitempty", "rss,omitempty"},
	"RPCResult":      {"data,omitempty"},
	"ChannelsResult": {"channels"},
	"ChannelInfo":    {"num_clients,omitempty"},
	"BatchResponse":  {"replies,omitempty"},
	// Every XResponse but batch.
	"response": {"error,omitempty", "result,omitempty"},
	// Requests (names only: omitempty does not matter when decoding).
	"publishRequest": {"channel", "data", "b64data", "skip_history", "tags", "idempotency_key", "delta", "version", "version_epoch"},
	"broadcastRequest": {"channels", "data", "b64data", "skip_history", "tags", "idempotency_key", "delta", "version",
		"version_epoch"},
	"subscribeRequest": {"channel", "user", "expire_at", "info", "b64info", "client", "data", "b64data", "recover_since",
		"override", "session", "label_filter", "all_users"},
	"unsubscribeRequest": {"channel", "user", "client", "session", "label_filter", "all_users"},
	"disconnectRequest":  {"user", "disconnect", "client", "whitelist", "session", "label_filter", "all_users"},
	"disconnectObject":   {"code", "reason"},
	"refreshRequest":     {"user", "client", "expired", "expire_at", "info", "session", "label_filter", "all_users"},
	"channelRequest":     {"channel"}, // presence, presence_stats, history_remove
	"historyRequest":     {"channel", "limit", "since", "reverse"},
	"channelsRequest":    {"pattern"},
	"rpcRequest":         {"method", "params"},
	"batchRequest":       {"commands", "parallel"},
}

// extensions are Switchboard's documented additions.
var extensions = map[string][]string{
	"Publication": {"b64data,omitempty"}, // data that is not JSON text
}

var requestTypes = map[string]bool{}

func init() {
	for k := range centrifugoJSON {
		if strings.HasSuffix(k, "Request") || k == "disconnectObject" {
			requestTypes[k] = true
		}
	}
}

func jsonTags(t reflect.Type, namesOnly bool) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("json") == "" {
			out = append(out, jsonTags(f.Type, namesOnly)...)
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "" || tag == "-" {
			continue
		}
		if namesOnly {
			tag, _, _ = strings.Cut(tag, ",")
		}
		out = append(out, tag)
	}
	return out
}

func TestWireTypesMatchCentrifugo(t *testing.T) {
	ours := map[string]any{
		"Error": Error{}, "PublishResult": PublishResult{}, "PublishResponse": PublishResponse{},
		"BroadcastResult": BroadcastResult{}, "ClientInfo": ClientInfo{}, "PresenceResult": PresenceResult{},
		"PresenceStatsResult": PresenceStatsResult{}, "StreamPosition": StreamPosition{}, "Publication": Publication{},
		"HistoryResult": HistoryResult{}, "InfoResult": InfoResult{}, "NodeResult": NodeResult{}, "Metrics": Metrics{},
		"Process": Process{}, "RPCResult": RPCResult{}, "ChannelsResult": ChannelsResult{}, "ChannelInfo": ChannelInfo{},
		"BatchResponse": BatchResponse{}, "response": response{},
		"publishRequest": publishRequest{}, "broadcastRequest": broadcastRequest{}, "subscribeRequest": subscribeRequest{},
		"unsubscribeRequest": unsubscribeRequest{}, "disconnectRequest": disconnectRequest{},
		"disconnectObject": disconnectObject{}, "refreshRequest": refreshRequest{}, "channelRequest": channelRequest{},
		"historyRequest": historyRequest{}, "channelsRequest": channelsRequest{}, "rpcRequest": rpcRequest{},
		"batchRequest": batchRequest{},
	}
	require.Len(t, ours, len(centrifugoJSON), "every reference type has a counterpart")
	for name, want := range centrifugoJSON {
		t.Run(name, func(t *testing.T) {
			v, ok := ours[name]
			require.True(t, ok, "no Switchboard type for %s", name)
			got := jsonTags(reflect.TypeOf(v), requestTypes[name])
			want = append(append([]string(nil), want...), extensions[name]...)
			sort.Strings(got)
			sort.Strings(want)
			require.Equal(t, want, got)
		})
	}
}
