package api

import "encoding/json"

// The wire types below mirror Centrifugo v6's server API (its apiproto
// package): the same JSON names and the same omitempty choices, so that a
// backend written against Centrifugo decodes every reply unchanged.
// types_test.go holds the reference table.

// Error is the error object of a reply.
type Error struct {
	Code    uint32 `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// response is the reply of every method but batch: {"result": …} or
// {"error": …}.
type response struct {
	Error  *Error `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

// PublishResult is the result of publish (and of each broadcast channel).
type PublishResult struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

// PublishResponse is one channel's outcome in a broadcast.
type PublishResponse struct {
	Error  *Error         `json:"error,omitempty"`
	Result *PublishResult `json:"result,omitempty"`
}

// BroadcastResult is the result of broadcast, one response per channel in
// request order.
type BroadcastResult struct {
	Responses []*PublishResponse `json:"responses,omitempty"`
}

// EmptyResult is the result of subscribe, unsubscribe, disconnect,
// refresh and history_remove.
type EmptyResult struct{}

// ClientInfo describes a connection in presence and publications.
type ClientInfo struct {
	User     string          `json:"user"`
	Client   string          `json:"client"`
	ConnInfo json.RawMessage `json:"conn_info,omitempty"`
	ChanInfo json.RawMessage `json:"chan_info,omitempty"`
}

// PresenceResult is the result of presence, keyed by client id.
type PresenceResult struct {
	Presence map[string]*ClientInfo `json:"presence"`
}

// PresenceStatsResult is the result of presence_stats.
type PresenceStatsResult struct {
	NumClients uint32 `json:"num_clients"`
	NumUsers   uint32 `json:"num_users"`
}

// StreamPosition is a position in a channel's history stream.
type StreamPosition struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

// Publication is a publication in a history result. B64Data is
// Switchboard's addition: data that is not JSON text (published with
// b64data or by a Protobuf client) comes base64-encoded there, where
// Centrifugo would fail the whole reply.
type Publication struct {
	Data    json.RawMessage   `json:"data,omitempty"`
	B64Data string            `json:"b64data,omitempty"`
	Info    *ClientInfo       `json:"info,omitempty"`
	Offset  uint64            `json:"offset,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// HistoryResult is the result of history.
type HistoryResult struct {
	Publications []*Publication `json:"publications"`
	Epoch        string         `json:"epoch"`
	Offset       uint64         `json:"offset"`
}

// InfoResult is the result of info.
type InfoResult struct {
	Nodes []*NodeResult `json:"nodes,omitempty"`
}

// NodeResult describes one node. Metrics and Process stay empty, as in
// Centrifugo's open-source server (Process) and because the node's
// figures are exported to Prometheus instead (Metrics).
type NodeResult struct {
	UID         string   `json:"uid"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	NumClients  uint32   `json:"num_clients"`
	NumUsers    uint32   `json:"num_users"`
	NumChannels uint32   `json:"num_channels"`
	Uptime      uint32   `json:"uptime,omitempty"`
	Metrics     *Metrics `json:"metrics,omitempty"`
	Process     *Process `json:"process,omitempty"`
	NumSubs     uint32   `json:"num_subs"`
}

// Metrics is Centrifugo's node metrics snapshot (never filled here).
type Metrics struct {
	Interval float64            `json:"interval,omitempty"`
	Items    map[string]float64 `json:"items,omitempty"`
}

// Process is Centrifugo's node process figures (never filled here).
type Process struct {
	CPU float64 `json:"cpu,omitempty"`
	RSS int64   `json:"rss,omitempty"`
}

// RPCResult is the result of rpc.
type RPCResult struct {
	Data json.RawMessage `json:"data,omitempty"`
}

// ChannelsResult is the result of channels.
type ChannelsResult struct {
	Channels map[string]*ChannelInfo `json:"channels"`
}

// ChannelInfo describes one channel in a channels result.
type ChannelInfo struct {
	NumClients uint32 `json:"num_clients,omitempty"`
}

// BatchResponse is the reply of batch: no result wrapper. Each reply is
// {"<method>": result} or {"error": …}.
type BatchResponse struct {
	Replies []map[string]any `json:"replies,omitempty"`
}
