package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/origin"
)

// Defaults of Config (zero values mean these).
const (
	DefaultAddress           = ":5000"
	DefaultMaxClients        = 1000
	DefaultMaxFrame          = 64 << 10
	DefaultMaxTypeName       = 256
	DefaultEventRate         = 100
	DefaultEventBurst        = 200
	DefaultMaxRooms          = 8
	DefaultMaxMembers        = 64
	DefaultQueueLimit        = 256 << 10
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 5 * time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultResumeGrace       = 20 * time.Second
	// MaxMaxFrame is the largest MaxFrame accepted (16 MiB).
	MaxMaxFrame = 16 << 20
	// ChannelPrefix is the hub namespace of rooms: room R is channel "relay:R".
	ChannelPrefix = "relay:"
	// LobbyChannel is the hub channel (and, with a bus, the engine topic)
	// of the ISSUN lobby across processes: its hub presence lists the
	// ISSUN clients in no room. No room has it: room names are not empty.
	LobbyChannel = ChannelPrefix + lobbyName
)

// queueSlack is what QueueLimit must hold beyond one frame of MaxFrame
// bytes (its header).
const queueSlack = 64

// lobbyName is the lobby's room name for the bus (cluster.go).
const lobbyName = ""

// Auth modes (Config.Auth).
const (
	// AuthNone relays for every connection; a token, when sent, names the user.
	AuthNone = "none"
	// AuthToken relays nothing for an ISSUN connection before a valid hub
	// JWT (SwitchboardAuth) and requires one in a native HELLO.
	AuthToken = "token"
)

// TokenVerifier verifies hub connection tokens (*auth.TokenVerifier).
type TokenVerifier interface {
	VerifyConnect(token string) (auth.ConnectClaims, error)
}

// Presence records room members in the hub (*hub.Hub): room R is the hub
// channel "relay:R", so the server API's presence lists its players and
// subscribers of the channel see them join and leave.
type Presence interface {
	AddPresence(ctx context.Context, channel string, info *hub.ClientInfo) error
	RemovePresence(ctx context.Context, channel, clientID, userID string) error
	PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error
}

// Config configures a Server. Zero values mean the defaults above.
type Config struct {
	// Address is the UDP address to listen on.
	Address string
	// Certificate is the TLS certificate; nil generates a self-signed one
	// for development (its SHA-256 is logged).
	Certificate *tls.Certificate
	// DisableISSUN refuses clients that offer no ALPN (the ISSUN profile).
	DisableISSUN bool
	// Auth is AuthNone ("" too) or AuthToken.
	Auth string
	// Verifier checks tokens; required with AuthToken, optional otherwise
	// (without one, tokens are refused).
	Verifier TokenVerifier
	// MaxClients caps connections, refused before their handshake
	// completes; negative = unlimited.
	MaxClients int
	// MaxClientsPerIP caps connections from one IP address (checked on the
	// unverified source address before the handshake, and again after);
	// 0 = no limit.
	MaxClientsPerIP int
	// MaxFrame caps a frame's body in bytes.
	MaxFrame int
	// MaxTypeName caps an ISSUN event's type name in bytes.
	MaxTypeName int
	// EventRate is the sustained events per second one connection may
	// send, EventBurst the bucket size; events beyond are dropped, and a
	// connection that keeps exceeding the rate by a further burst is
	// disconnected. Negative EventRate = unlimited.
	EventRate  float64
	EventBurst int
	// MaxRooms caps the rooms one connection is in (ISSUN connections are
	// in at most one); MaxMembers the members of a room.
	MaxRooms   int
	MaxMembers int
	// QueueLimit caps the bytes queued to one connection; past it the
	// connection is a slow consumer and disconnected.
	QueueLimit int
	// HandshakeTimeout bounds the TLS handshake plus the NodeId exchange;
	// IdleTimeout is QUIC's idle timeout; WriteTimeout bounds waiting for
	// the peer to allow one more stream.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	WriteTimeout     time.Duration
	// HeartbeatInterval and ResumeGrace are the native protocol's
	// heartbeat period and resume window.
	HeartbeatInterval time.Duration
	ResumeGrace       time.Duration

	// Pool is the core's writer pool draining the connections' queues
	// (shared with the other transports); nil starts one of the relay's
	// own on Clock and Registerer, closed by Shutdown.
	Pool     *delivery.Pool
	Presence Presence // nil: rooms are not recorded in the hub
	// Bus carries rooms across processes (the hub's Topics with the Redis
	// engine; cluster.go); nil: rooms are this process's. It needs a
	// Presence that is a PresenceLister.
	Bus RoomBus
	// BusQueue caps the messages waiting for the bus; past it events for
	// other processes are dropped (counted).
	BusQueue int
	// BusQueueBytes caps the bytes of the events waiting for the bus
	// (joins and leaves are small and always queued); past it events for
	// other processes are dropped (counted).
	BusQueueBytes int
	// SyncInterval is how often each room's remote members are re-read
	// from the hub presence; negative: never.
	SyncInterval time.Duration
	// Nodes is the registry of the live processes (*hub.Hub, whose
	// control plane links the processes on the engine); with a Bus, this
	// process's id on the bus is then its NodeID, and the processes the
	// registry takes for dead lose their members at once (liveness.go).
	// nil: a random id, and a dead process's members go only with the
	// engine's presence TTL and the next sync.
	Nodes NodeLister
	// Mirror publishes room events to the hub channel relay:R for
	// spectators (mirror.go), through MirrorTo (the hub).
	Mirror     MirrorConfig
	MirrorTo   MirrorPublisher
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Clock      clock.Clock

	// Sessions is the hub's connection index (*hub.Hub): the server API's
	// disconnect and refresh reach relay sessions through it. nil: they
	// do not.
	Sessions Sessions

	// Origins is the browser origin policy for WebTransport sessions (the
	// hub's client.allowed_origins); nil or empty allows same-origin only.
	Origins *origin.Checker
}

func (c *Config) setDefaults() {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Auth == "" {
		c.Auth = AuthNone
	}
	setInt(&c.MaxClients, DefaultMaxClients)
	setInt(&c.MaxFrame, DefaultMaxFrame)
	setInt(&c.MaxTypeName, DefaultMaxTypeName)
	if c.EventRate == 0 {
		c.EventRate = DefaultEventRate
	}
	setInt(&c.EventBurst, DefaultEventBurst)
	setInt(&c.MaxRooms, DefaultMaxRooms)
	setInt(&c.MaxMembers, DefaultMaxMembers)
	setInt(&c.QueueLimit, DefaultQueueLimit)
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&c.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	setDur(&c.ResumeGrace, DefaultResumeGrace)
	setInt(&c.BusQueue, DefaultBusQueue)
	setInt(&c.BusQueueBytes, DefaultBusQueueBytes)
	setDur(&c.SyncInterval, DefaultSyncInterval)
	if c.Mirror.Rate == 0 {
		c.Mirror.Rate = DefaultMirrorRate
	}
	setInt(&c.Mirror.Burst, DefaultMirrorBurst)
	setInt(&c.Mirror.Queue, DefaultMirrorQueue)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.OrReal(c.Clock)
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

// FieldError is one invalid setting of a Config: Field is its name as a
// configuration key under "relay." (e.g. "queue_limit", "mirror.rate").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "relay: " + e.Field + ": " + e.Problem }

// Validate checks the settings of c, zero values standing for the
// defaults, and returns every invalid one at once (errors.Join of
// *FieldError), or nil. It leaves out the injected dependencies (Verifier,
// Presence, Bus, Nodes, MirrorTo), which New checks too, and reads no file (a
// service-name port is looked up in the host's services database): a
// configuration loader calls it to report what New would refuse.
func (c Config) Validate() error {
	c.setDefaults()
	return errors.Join(c.settingErrors()...)
}

// validate reports every invalid field of a defaulted config at once:
// the settings, then the dependencies they need.
func (c *Config) validate() error {
	errs := c.settingErrors()
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if c.Auth == AuthToken && c.Verifier == nil {
		bad("auth", "%q needs a token verifier (a token secret)", AuthToken)
	}
	if _, ok := c.Presence.(PresenceLister); c.Bus != nil && !ok {
		bad("bus", "needs a presence that lists channels (the hub)")
	}
	if c.Bus != nil && c.Nodes != nil && !validOrigin(c.Nodes.NodeID()) {
		bad("nodes", "the node id %q is not 1..%d bytes of lowercase hex digits and '-'", c.Nodes.NodeID(), maxOrigin)
	}
	if c.Mirror.Enabled && c.MirrorTo == nil {
		bad("mirror", "enabled without a hub to publish to")
	}
	return errors.Join(errs...)
}

// settingErrors checks the settings of a defaulted config.
func (c *Config) settingErrors() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if _, port, err := net.SplitHostPort(c.Address); err != nil {
		bad("address", "%q is not host:port: %v", c.Address, err)
	} else if port == "" {
		bad("address", "%q has no port", c.Address)
	} else if _, err := net.LookupPort("udp", port); err != nil {
		bad("address", "%q: bad port %q (a number, or a service name in this host's services database)", c.Address, port)
	}
	if c.Auth != AuthNone && c.Auth != AuthToken {
		bad("auth", "%q is not %q or %q", c.Auth, AuthNone, AuthToken)
	}
	// Settings bounded by max_frame are checked against it only when it
	// is valid itself: a bad max_frame is one problem, not three.
	frameOK := c.MaxFrame >= 0 && c.MaxFrame <= MaxMaxFrame
	if !frameOK {
		bad("max_frame", "%d is not within 1..%d (0: the default)", c.MaxFrame, MaxMaxFrame)
	}
	if c.MaxTypeName < 0 || (frameOK && c.MaxTypeName > c.MaxFrame) {
		bad("max_type_name", "%d is not within 1..max_frame (0: the default)", c.MaxTypeName)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"event_burst", c.EventBurst}, {"max_clients_per_ip", c.MaxClientsPerIP}, {"max_rooms", c.MaxRooms}, {"max_members", c.MaxMembers},
		{"bus_queue", c.BusQueue}, {"bus_queue_bytes", c.BusQueueBytes}} {
		if f.v < 0 {
			bad(f.name, "%d is negative", f.v)
		}
	}
	if r := c.Mirror.Rate; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		bad("mirror.rate", "%v is not a positive number of events per second (0: the default)", r)
	}
	if c.Mirror.Burst < 0 {
		bad("mirror.burst", "%d is negative", c.Mirror.Burst)
	}
	if c.Mirror.Queue < 0 {
		bad("mirror.queue", "%d is negative", c.Mirror.Queue)
	}
	if c.QueueLimit < 0 {
		bad("queue_limit", "%d is negative", c.QueueLimit)
	} else if frameOK && c.QueueLimit < c.MaxFrame+queueSlack {
		bad("queue_limit", "%d is less than max_frame + %d (%d bytes): a connection must be able to queue one frame of max_frame bytes with its header",
			c.QueueLimit, queueSlack, c.MaxFrame+queueSlack)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"handshake_timeout", c.HandshakeTimeout}, {"idle_timeout", c.IdleTimeout}, {"write_timeout", c.WriteTimeout},
		{"heartbeat_interval", c.HeartbeatInterval}, {"resume_grace", c.ResumeGrace}} {
		if f.v < 0 {
			bad(f.name, "%s is negative", f.v)
		}
	}
	return errs
}
