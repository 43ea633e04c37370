package hub

import (
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
