package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
	redisbroker "github.com/switchboard-rt/switchboard/internal/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/console"
	"github.com/switchboard-rt/switchboard/internal/gateway"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/relay"
	"github.com/switchboard-rt/switchboard/internal/schedapi"
	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/postgres"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// The one conversion of each configuration section into the component
// configuration it feeds. components_test.go fails when a field is added on
// either side without being mapped here.

// HubOptions returns o as hub channel options.
func (o NamespaceOptions) HubOptions() hub.ChannelOptions {
	return hub.ChannelOptions{
		Presence:                   o.Presence,
		JoinLeave:                  o.JoinLeave,
		ForcePushJoinLeave:         o.ForcePushJoinLeave,
		HistorySize:                o.HistorySize,
		HistoryTTL:                 o.HistoryTTL.Std(),
		ForceRecovery:              o.ForceRecovery,
		ForcePositioning:           o.ForcePositioning,
		AllowSubscribeForClient:    o.AllowSubscribeForClient,
		AllowSubscribeForAnonymous: o.AllowSubscribeForAnonymous,
		AllowPublishForSubscriber:  o.AllowPublishForSubscriber,
		AllowPublishForClient:      o.AllowPublishForClient,
		AllowPublishForAnonymous:   o.AllowPublishForAnonymous,
		AllowPresenceForSubscriber: o.AllowPresenceForSubscriber,
		AllowPresenceForClient:     o.AllowPresenceForClient,
		AllowPresenceForAnonymous:  o.AllowPresenceForAnonymous,
		AllowHistoryForSubscriber:  o.AllowHistoryForSubscriber,
		AllowHistoryForClient:      o.AllowHistoryForClient,
		AllowHistoryForAnonymous:   o.AllowHistoryForAnonymous,
		AllowUserLimitedChannels:   o.AllowUserLimitedChannels,
		PublicationDataFormat:      o.PublicationDataFormat,
	}
}

// HubNamespaces returns the channel section as the hub's namespaces.
func (c Channel) HubNamespaces() hub.Namespaces {
	ns := hub.Namespaces{
		Default:   c.WithoutNamespace.HubOptions(),
		Named:     make(map[string]hub.ChannelOptions, len(c.Namespaces)),
		MaxLength: c.MaxLength,
	}
	for _, n := range c.Namespaces {
		ns.Named[n.Name] = n.HubOptions()
	}
	return ns
}

// WorkerConfig returns the runner section as a worker pool configuration.
// The process settings the file does not hold (Env, Dir, MaxMessageSize,
// StopGrace, Logger, Registerer) are left for the caller.
func (r Runner) WorkerConfig() worker.Config {
	return worker.Config{
		Command:      r.Command,
		Workers:      r.Workers,
		Timeout:      r.Timeout.Std(),
		MaxInFlight:  r.MaxInFlight,
		QueueSize:    r.QueueSize,
		QueueTimeout: r.QueueTimeout.Std(),
		MaxJobs:      r.MaxJobs,
		TTL:          r.TTL.Std(),
		IdleTTL:      r.IdleTTL.Std(),
		MaxMemory:    r.MaxMemory,
		PingInterval: r.PingInterval.Std(),
		AllowTasks:   r.Allow.Tasks,
		AllowEvents:  r.Allow.Events,
	}
}

// GatewayConfig returns the runner section as the worker gateway's HTTP
// configuration (Origins, RetryAfter and Logger are left for the caller:
// Origins is the checker built from r.CORS.Origins).
func (r Runner) GatewayConfig() gateway.Config {
	return gateway.Config{
		BasePath:    r.BasePath,
		Token:       r.Token,
		TokenHeader: r.TokenHeader,
		MaxBody:     r.MaxBody,
	}
}

// RedisEngine returns the Redis engine configuration and whether the Redis
// engine is selected (engine.type or broker.type "redis"; broker.redis_url,
// when broker.type is redis, is the address). Client, Logger and the
// connection tuning are left for the caller.
func (c Config) RedisEngine() (redisbroker.Config, bool) {
	addr := c.Engine.Redis.Address
	if c.Broker.Type == BrokerRedis && c.Broker.RedisURL != "" {
		addr = c.Broker.RedisURL
	}
	return redisbroker.Config{
		Address:     addr,
		Prefix:      c.Engine.Redis.Prefix,
		PresenceTTL: c.Engine.Redis.PresenceTTL.Std(),
		MetaTTL:     c.Channel.HistoryMetaTTL.Std(),
	}, c.Engine.Type == BrokerRedis || c.Broker.Type == BrokerRedis
}

// MemoryMetaTTL is the memory engine's default history meta TTL.
func (c Config) MemoryMetaTTL() time.Duration { return c.Channel.HistoryMetaTTL.Std() }

// ServiceConfig returns the scheduler section as the scheduler Service's
// configuration. Store, Publisher, Presence, Clock, Logger and Registerer
// are left for the caller; Enabled and the Database* keys select the
// store (PostgresConfig).
func (s Scheduler) ServiceConfig() scheduler.Config {
	return scheduler.Config{
		Lease:          s.Lease.Std(),
		MaxAttempts:    s.MaxAttempts,
		BackoffBase:    s.BackoffBase.Std(),
		BackoffMax:     s.BackoffMax.Std(),
		ChunkSize:      s.ChunkSize,
		MaxConfigBytes: int(s.MaxConfigBytes),
		MaxIterations:  s.MaxIterations,
		AssignBatch:    s.AssignBatch,
		SweepInterval:  s.SweepInterval.Std(),

		ProgressInterval: s.ProgressInterval.Std(),
	}
}

// APIConfig returns the scheduler section as the HTTP adapter's
// configuration (Service, Tokens, Signer, APIKey, Nodes, Timeout, Clock,
// Logger and Registerer are left for the caller).
func (s Scheduler) APIConfig() schedapi.Config {
	return schedapi.Config{NodeTokenTTL: s.NodeTokenTTL.Std(), HubURL: s.HubURL, MaxBody: s.MaxBody,
		RegisterRate: float64(s.RegisterRate) / 60, RegisterBurst: s.RegisterBurst} // negative: no limit
}

// NodeVerifierConfig returns the signed-request limits of the scheduler
// section (Now is left for the caller).
func (s Scheduler) NodeVerifierConfig() auth.NodeVerifierConfig {
	return auth.NodeVerifierConfig{Skew: s.SignatureSkew.Std(), MaxBody: int(s.MaxBody), MaxReplay: s.ReplayCacheSize}
}

// PostgresConfig returns the PostgreSQL store configuration of the
// scheduler section (Logger is left for the caller); it is used when
// DatabaseURL is set.
func (s Scheduler) PostgresConfig() postgres.Config {
	return postgres.Config{URL: s.DatabaseURL, Schema: s.DatabaseSchema, MaxConns: s.DatabaseMaxConns}
}

// ConsoleConfig returns the admin section as the console's configuration
// (Signer, Tokens, Hub, Scheduler, FeedInterval, LoginAddresses, Clock,
// Logger and Registerer are left for the caller; Enabled decides whether
// it runs).
func (a Admin) ConsoleConfig() console.Config {
	return console.Config{Password: a.Password, Secret: a.Secret, SessionTTL: a.SessionTTL.Std(),
		HubTokenTTL: a.TokenTTL.Std(), LoginFailures: a.LoginFailures, LoginWindow: a.LoginWindow.Std()}
}

// RelayConfig returns the relay section as the relay's configuration
// (Certificate, read from CertFile/KeyFile, and the injected Verifier,
// Pool, Presence, Bus, MirrorTo, Logger, Registerer and Clock are left for the caller).
func (r Relay) RelayConfig() relay.Config {
	return relay.Config{
		Address:           r.Address,
		DisableISSUN:      r.DisableISSUN,
		Auth:              r.Auth,
		MaxClients:        r.MaxClients,
		MaxClientsPerIP:   r.MaxClientsPerIP,
		MaxFrame:          r.MaxFrame,
		MaxTypeName:       r.MaxTypeName,
		EventRate:         float64(r.EventRate),
		EventBurst:        r.EventBurst,
		MaxRooms:          r.MaxRooms,
		MaxMembers:        r.MaxMembers,
		QueueLimit:        r.QueueLimit,
		HandshakeTimeout:  r.HandshakeTimeout.Std(),
		IdleTimeout:       r.IdleTimeout.Std(),
		WriteTimeout:      r.WriteTimeout.Std(),
		HeartbeatInterval: r.HeartbeatInterval.Std(),
		ResumeGrace:       r.ResumeGrace.Std(),
		BusQueue:          r.BusQueue,
		BusQueueBytes:     r.BusQueueBytes,
		SyncInterval:      r.SyncInterval.Std(),
		Mirror: relay.MirrorConfig{Enabled: r.Mirror.Enabled, Rate: r.Mirror.Rate, Burst: r.Mirror.Burst,
			Queue: r.Mirror.Queue, RoomPrefix: r.Mirror.RoomPrefix},
	}
}

// Certificate reads and pairs relay.cert_file and relay.key_file: nil
// when both are empty (the relay then generates a development
// certificate). Every failure names the key of the file at fault, so that
// `checkconfig` and `serve` report it the same way; Config.RelayCertificate
// also names the environment variable that set it.
func (r Relay) Certificate() (*tls.Certificate, error) {
	if r.CertFile == "" && r.KeyFile == "" {
		return nil, nil
	}
	if err := r.certPairError(); err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(r.CertFile)
	if err != nil {
		return nil, &keyProblem{path: "relay.cert_file", problem: err.Error(), err: err}
	}
	keyPEM, err := os.ReadFile(r.KeyFile)
	if err != nil {
		return nil, &keyProblem{path: "relay.key_file", problem: err.Error(), err: err}
	}
	cert, err := relay.LoadCertificate(certPEM, keyPEM)
	if err != nil {
		return nil, &keyProblem{path: "relay.cert_file",
			problem: fmt.Sprintf("%s and relay.key_file %s: %v", r.CertFile, r.KeyFile, err), err: err}
	}
	return &cert, nil
}

// RelayCertificate is c.Relay.Certificate, its failure naming the
// environment variable that set the key at fault, as Load's do.
func (c Config) RelayCertificate() (*tls.Certificate, error) {
	cert, err := c.Relay.Certificate()
	return cert, nameSources(err, c.sources)
}

// certPairError is the rule that relay.cert_file and relay.key_file are
// set together (Validate and Certificate report it).
func (r Relay) certPairError() error {
	if (r.CertFile == "") != (r.KeyFile == "") {
		return &keyProblem{path: "relay.cert_file", problem: "relay.cert_file and relay.key_file go together (both empty: a development certificate)"}
	}
	return nil
}
