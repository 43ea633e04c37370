package redis

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// AddPresence records info under clientID for PresenceTTL; calling it
// again refreshes the entry (and replaces info).
func (b *Broker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo) error {
	expire := b.cfg.Now().Add(b.cfg.PresenceTTL).UnixMilli()
	err := addPresenceScript.Exec(ctx, b.client,
		[]string{b.key("presence.data", channel), b.key("presence.expire", channel)},
		[]string{clientID, rueidis.BinaryString(encodeInfo(info)), strconv.FormatInt(expire, 10), ms(b.cfg.PresenceTTL)},
	).Error()
	if err != nil {
		return opErr("add presence", channel, err)
	}
	return nil
}

// RemovePresence forgets clientID in channel; an absent client is not an
// error.
func (b *Broker) RemovePresence(ctx context.Context, channel, clientID, _ string) error {
	err := remPresenceScript.Exec(ctx, b.client,
		[]string{b.key("presence.data", channel), b.key("presence.expire", channel)},
		[]string{clientID},
	).Error()
	if err != nil {
		return opErr("remove presence", channel, err)
	}
	return nil
}

// Presence returns the channel's unexpired entries by client ID; expired
// ones are removed on the way.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	m, err := b.presence(ctx, channel)
	if err != nil {
		return nil, opErr("presence", channel, err)
	}
	return m, nil
}

// PresenceStats counts the channel's unexpired clients and distinct users.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	m, err := b.presence(ctx, channel)
	if err != nil {
		return hub.PresenceStats{}, opErr("presence stats", channel, err)
	}
	users := make(map[string]struct{}, len(m))
	for _, info := range m {
		if info != nil {
			users[info.UserID] = struct{}{}
		}
	}
	return hub.PresenceStats{NumClients: len(m), NumUsers: len(users)}, nil
}

func (b *Broker) presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	kv, err := presenceScript.Exec(ctx, b.client,
		[]string{b.key("presence.data", channel), b.key("presence.expire", channel)},
		[]string{strconv.FormatInt(b.cfg.Now().UnixMilli(), 10)},
	).AsStrSlice()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*hub.ClientInfo, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		info, err := decodeInfo([]byte(kv[i+1]))
		if err != nil {
			// An undecodable entry is dropped from the answer, not fatal
			// for the channel.
			b.log.Warn("bad presence entry", "channel", channel, "client", kv[i], "error", err)
			continue
		}
		out[kv[i]] = info
	}
	return out, nil
}
