package hub

import (
	"bytes"
	"strings"
	"time"
)

// ChannelOptions are the rules of a namespace (Centrifugo semantics).
type ChannelOptions struct {
	Presence                   bool
	JoinLeave                  bool
	ForcePushJoinLeave         bool
	HistorySize                int
	HistoryTTL                 time.Duration
	ForceRecovery              bool
	ForcePositioning           bool
	AllowSubscribeForClient    bool
	AllowSubscribeForAnonymous bool
	AllowPublishForSubscriber  bool
	AllowPublishForClient      bool
	AllowPublishForAnonymous   bool
	AllowPresenceForSubscriber bool
	AllowPresenceForClient     bool
	AllowPresenceForAnonymous  bool
	AllowHistoryForSubscriber  bool
	AllowHistoryForClient      bool
	AllowHistoryForAnonymous   bool
	AllowUserLimitedChannels   bool
	// PublicationDataFormat is Centrifugo's publication_data_format: ""
	// (any non-empty data), "json", "json_object" or "binary" (empty
	// allowed). See CheckPublicationData.
	PublicationDataFormat string
}

// Publication data formats (Centrifugo's publication_data_format values).
const (
	DataFormatAny        = ""
	DataFormatJSON       = "json"
	DataFormatJSONObject = "json_object"
	DataFormatBinary     = "binary"
)

// CheckPublicationData tells whether data may be published into channels
// of these options, with an ErrBadRequest naming the problem. Whatever the
// format, data that reaches JSON clients must also be JSON text
// (IsJSONText): the adapters check that for their JSON sources.
func (o ChannelOptions) CheckPublicationData(data []byte) error {
	switch o.PublicationDataFormat {
	case DataFormatJSON:
		if !IsJSONText(data) {
			return ErrBadRequest.With("bad request: data must be JSON in UTF-8 in this namespace")
		}
	case DataFormatJSONObject:
		if !IsJSONText(data) || bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
			return ErrBadRequest.With("bad request: data must be a JSON object in this namespace")
		}
	case DataFormatBinary:
	default:
		if len(data) == 0 {
			return ErrBadRequest.With("bad request: data required")
		}
	}
	return nil
}

// HistoryEnabled reports whether channels of these options keep history.
func (o ChannelOptions) HistoryEnabled() bool { return o.HistorySize > 0 && o.HistoryTTL > 0 }

// Channel name syntax.
const (
	NamespaceSeparator      = ":"
	UserBoundary            = "#"
	UserSeparator           = ","
	DefaultMaxChannelLength = 255
)

// Namespaces resolves a channel name to its namespace options.
type Namespaces struct {
	Default   ChannelOptions            // channels without a namespace
	Named     map[string]ChannelOptions // by namespace name
	MaxLength int                       // 0 = DefaultMaxChannelLength
}

// NamespaceOf returns the namespace part of a channel name ("" when none).
func NamespaceOf(channel string) string {
	if i := strings.Index(channel, NamespaceSeparator); i > 0 {
		return channel[:i]
	}
	return ""
}

// Resolve returns the options of channel, ErrUnknownChannel when its
// namespace does not exist, ErrBadRequest for an empty or overlong name.
func (n *Namespaces) Resolve(channel string) (ChannelOptions, error) {
	max := n.MaxLength
	if max <= 0 {
		max = DefaultMaxChannelLength
	}
	if channel == "" || len(channel) > max {
		return ChannelOptions{}, ErrBadRequest
	}
	ns := NamespaceOf(channel)
	if ns == "" {
		return n.Default, nil
	}
	o, ok := n.Named[ns]
	if !ok {
		return ChannelOptions{}, ErrUnknownChannel
	}
	return o, nil
}

// UserAllowed reports whether channel is user-limited ("news#42,43") and
// lists user. It returns limited=false for ordinary channels.
func UserAllowed(channel, user string) (limited, allowed bool) {
	i := strings.LastIndex(channel, UserBoundary)
	if i < 0 {
		return false, false
	}
	if user == "" {
		return true, false
	}
	for _, u := range strings.Split(channel[i+1:], UserSeparator) {
		if u == user {
			return true, true
		}
	}
	return true, false
}
