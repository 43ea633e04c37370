package hub

import "context"

// BrokerEventHandler receives what a Broker delivers to this process. The
// hub implements it. Calls for one channel arrive in publication order. A
// broker that can lose messages (PUB/SUB reconnects) also tells handlers
// implementing ResubscribeHandler which channels it subscribed again.
type BrokerEventHandler interface {
	HandlePublication(channel string, pub *Publication, sp StreamPosition)
	HandleJoin(channel string, info *ClientInfo)
	HandleLeave(channel string, info *ClientInfo)
}

// Broker moves publications and join/leave events between processes and
// keeps channel history. Implementations must be safe for concurrent use and
// deliver publications of one channel to the handler in offset order.
type Broker interface {
	// Run starts delivering events to h. It is called once before use.
	Run(h BrokerEventHandler) error
	// Subscribe declares this process's interest in channel; Unsubscribe
	// withdraws it. The hub calls them when the first local subscriber
	// arrives and the last one leaves.
	Subscribe(channel string) error
	Unsubscribe(channel string) error
	// Publish stores pub in history (when opts enable it), assigns its
	// offset and delivers it to every interested process. With
	// opts.IdempotencyKey, a repeat within opts.IdempotentResultTTL returns
	// the first call's position and stores and delivers nothing.
	Publish(ctx context.Context, channel string, pub *Publication, opts PublishOptions) (StreamPosition, error)
	PublishJoin(ctx context.Context, channel string, info *ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info *ClientInfo) error
	History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error)
	RemoveHistory(ctx context.Context, channel string) error
}

// PresenceManager keeps who is present in channels.
type PresenceManager interface {
	AddPresence(ctx context.Context, channel, clientID string, info *ClientInfo) error
	RemovePresence(ctx context.Context, channel, clientID, userID string) error
	Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (PresenceStats, error)
}

// Closer is implemented by brokers that hold resources.
type Closer interface {
	Close(ctx context.Context) error
}

// ContextSubscriber is an optional interface of a Broker whose Subscribe
// round trip can end with the caller's context (a client command's
// deadline). The hub prefers it to Subscribe.
type ContextSubscriber interface {
	SubscribeContext(ctx context.Context, channel string) error
}

// PresenceClaim is the condition of a conditional presence add
// (PresenceClaimer.ClaimPresence).
type PresenceClaim struct {
	// Max: the entry is added only while the channel holds fewer than Max
	// live entries of other clients; 0 sets no cap.
	Max int
	// Key: the entry is added only while no live entry of another client
	// carries Key, and then carries it for as long as it lives (refreshes
	// keep it; RemovePresence and expiry free it). "" sets no key.
	Key string
	// Ignore lists client IDs whose entries count for neither condition
	// (their keys may be taken over).
	Ignore []string
	// Always adds the entry whatever the conditions (a rewrite of an entry
	// admitted before); it takes Key only when no other live entry
	// carries it, and the result still says Added (with KeyTaken and
	// Holder when another entry carries Key). A Key not obtained is not
	// taken later by the entry on its own (memory engine) or may be,
	// once free, by the engine's refreshes of it (Redis engine, whose
	// refresher repeats the Always claim).
	Always bool
}

// ClaimResult is what a conditional presence add did: Added, or what
// refused it: Full (Max), or Holder, the client carrying Key, with its
// entry (HolderInfo). An Always claim that added its entry while another
// carries Key says Added and KeyTaken, with Holder (HolderInfo nil).
type ClaimResult struct {
	Added      bool
	Full       bool
	KeyTaken   bool
	Holder     string
	HolderInfo *ClientInfo
}

// PresenceReleaser is an optional capability of a PresenceManager whose
// entries expire unless refreshed: ReleasePresence stops this process's
// refreshes of an entry without removing it, so that it expires unless
// another process writes it again (a session handed over between
// processes, whose new process rewrites the entry under the same client
// ID). Releasing an entry not held is not an error.
type PresenceReleaser interface {
	ReleasePresence(ctx context.Context, channel, clientID string) error
}

// PresenceClaimer is an optional capability of a PresenceManager: an add
// that drops expired entries, checks claim and writes the entry as one
// atomic step for every process sharing the engine. A refused claim
// writes nothing; an added entry is refreshed like AddPresence's.
type PresenceClaimer interface {
	ClaimPresence(ctx context.Context, channel, clientID string, info *ClientInfo, claim PresenceClaim) (ClaimResult, error)
}

// PresenceConditionalRemover is an optional capability of a
// PresenceManager: RemovePresenceIf removes clientID's entry in channel
// only while it still holds info (compare-and-delete, atomic for every
// process sharing the engine), so that an entry written meanwhile under
// the same client ID, by any process, stays. It reports whether it
// removed one; an absent entry is not an error.
type PresenceConditionalRemover interface {
	RemovePresenceIf(ctx context.Context, channel, clientID string, info *ClientInfo) (bool, error)
}
