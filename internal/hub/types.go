package hub

import "time"

// ClientInfo describes a connection for presence, join/leave and
// publications made by clients.
type ClientInfo struct {
	ClientID string
	UserID   string
	ConnInfo []byte // raw JSON (or bytes) from the connect token, may be nil
	ChanInfo []byte // raw JSON (or bytes) attached to one subscription, may be nil
}

// Publication is a message published into a channel. Offset is set by the
// Broker when the channel keeps history, zero otherwise.
type Publication struct {
	Offset uint64
	Data   []byte
	Info   *ClientInfo
	Tags   map[string]string
	Time   int64 // unix milliseconds, 0 = not set
}

// StreamPosition is the position of a channel's history stream. Epoch
// changes whenever the stream is lost (restart, expiry, removal), which
// tells a client its offset no longer means anything.
type StreamPosition struct {
	Offset uint64
	Epoch  string
}

// PresenceStats counts a channel's present clients and distinct users.
type PresenceStats struct {
	NumClients int
	NumUsers   int
}

// PublishOptions control how a Broker stores a publication.
type PublishOptions struct {
	HistorySize int           // publications kept; 0 = no history
	HistoryTTL  time.Duration // how long they are kept; 0 = no history
	MetaTTL     time.Duration // how long the stream's epoch/offset outlive the last publication; 0 = broker default
	// IdempotencyKey, with IdempotentResultTTL > 0, makes the publish
	// idempotent: while the result of a publication with the same key on the
	// same channel is kept (IdempotentResultTTL), a repeat returns that
	// position and neither stores nor delivers anything.
	IdempotencyKey      string
	IdempotentResultTTL time.Duration
}

// HistoryOptions select publications from a channel's history.
type HistoryOptions struct {
	Since   *StreamPosition // return publications after this position; nil = from the start (or end when Reverse)
	Limit   int             // maximum publications; 0 = none (position only), negative = all
	Reverse bool
	MetaTTL time.Duration
}

// HistoryResult is a slice of history with the stream's current position.
type HistoryResult struct {
	Publications []*Publication
	Position     StreamPosition
}
