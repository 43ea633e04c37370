package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"

	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/hub"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// Server is the relay. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cert    tls.Certificate
	ownPool bool // cfg.Pool was started by New; Shutdown closes it
	limits  wire.Limits

	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	wt       *webtransport.Server // h3 connections (webtransport.go)
	wtConns  sync.Map             // *quic.Conn → *wtConn being served
	pagePort atomic.Int32         // SetPagePort

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
	// opBase bounds the hub calls made for connections (opCtx): cancelled
	// when Shutdown's deadline ends, so none outlasts it.
	opBase   context.Context
	opCancel context.CancelFunc

	count   atomic.Int64  // accepted connections not yet gone
	ctrlSeq atomic.Uint64 // sequence of the relay's own events
	closing atomic.Bool

	ipMu  sync.Mutex
	perIP map[string]int // connections by remote IP, with MaxClientsPerIP

	mu     sync.RWMutex
	conns  map[*conn]struct{}
	nodes  map[wire.NodeID]*conn
	rooms  map[string]*room
	roomID uint32
	lobby  *room // connections in no room (ISSUN broadcast without a room)
	// parked are native sessions waiting to be resumed, by resume token.
	parked   map[string]*parkedSession
	expiring sync.WaitGroup // parked sessions being ended by their timer

	// cluster carries rooms across processes (cluster.go); nil without a Bus.
	cluster *cluster
	// mirror publishes room events for spectators (mirror.go); nil when off.
	mirror *mirror

	wg       sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

var errServerFull = errors.New("relay: server full")

// New validates cfg, binds its UDP address and returns a Server that
// accepts connections once Start is called.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("relay: metrics: %w", err)
	}
	ownPool := false
	if cfg.Pool == nil {
		if cfg.Pool, err = delivery.NewPool(delivery.Config{Clock: cfg.Clock, Registerer: cfg.Registerer}); err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		ownPool = true
	}
	ok := false
	defer func() {
		if !ok && ownPool {
			cfg.Pool.Close()
		}
	}()
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "relay"), metrics: m, ownPool: ownPool,
		conns: map[*conn]struct{}{}, nodes: map[wire.NodeID]*conn{}, rooms: map[string]*room{},
		parked: map[string]*parkedSession{}, perIP: map[string]int{}}
	s.lobby = &room{srv: s, name: lobbyName, channel: LobbyChannel, transport: transportISSUN}
	s.wt = s.newWebTransport()
	s.lobby.snap.Store(&[]*conn{})
	if cfg.Certificate != nil {
		s.cert = *cfg.Certificate
	} else {
		certPEM, keyPEM, err := GenerateCertificate(nil, cfg.Clock.Now(), 0)
		if err != nil {
			return nil, err
		}
		if s.cert, err = LoadCertificate(certPEM, keyPEM); err != nil {
			return nil, err
		}
		s.log.Warn("relay uses a self-signed development certificate", "sha256", Fingerprint(&s.cert))
	}
	s.limits = wire.Limits{
		MaxFrame: uint32(cfg.MaxFrame), MaxTypeName: uint32(cfg.MaxTypeName),
		EventRate: uint32(max(cfg.EventRate, 0)), EventBurst: uint32(cfg.EventBurst),
		MaxRooms: uint32(cfg.MaxRooms), MaxMembers: uint32(cfg.MaxMembers),
		HeartbeatMillis: uint32(cfg.HeartbeatInterval.Milliseconds()), ResumeMillis: uint32(cfg.ResumeGrace.Milliseconds()),
		MaxDatagram: maxDatagram,
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("relay: address %q: %w", cfg.Address, err)
	}
	if s.udp, err = net.ListenUDP("udp", addr); err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	s.tr = &quic.Transport{Conn: s.udp}
	s.ln, err = s.tr.Listen(s.tlsConfig(), s.quicConfig())
	if err != nil {
		s.udp.Close()
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	if cfg.Mirror.Enabled {
		if s.mirror, err = newMirror(s); err != nil {
			s.ln.Close()
			s.udp.Close()
			return nil, fmt.Errorf("relay: mirror: %w", err)
		}
	}
	if cfg.Bus != nil {
		if s.cluster, err = newCluster(s); err != nil {
			s.ln.Close()
			s.udp.Close()
			return nil, fmt.Errorf("relay: bus: %w", err)
		}
		s.lobby.bus = s.cluster.lobby
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.opBase, s.opCancel = context.WithCancel(context.Background())
	ok = true
	return s, nil
}

// maxDatagram is the datagram size the native protocol packs events into
// (fits the QUIC minimum MTU).
const maxDatagram = 1100

// Addr is the bound UDP address.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Certificate returns the certificate served (the dev one when generated).
func (s *Server) Certificate() tls.Certificate { return s.cert }

// Limits returns the limits advertised to native clients.
func (s *Server) Limits() wire.Limits { return s.limits }

// Start runs the accept loop until Shutdown.
func (s *Server) Start() {
	if s.cluster != nil {
		s.cluster.start()
	}
	if s.mirror != nil {
		s.mirror.start()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.acceptLoop()
	}()
	s.log.Info("relay listening", "address", s.Addr().String(), "issun", !s.cfg.DisableISSUN, "auth", s.cfg.Auth)
	if a, ok := s.Addr().(*net.UDPAddr); ok && a.IP.IsUnspecified() && s.cfg.Auth == AuthNone {
		s.log.Warn("relay is open to anyone who reaches this port on any interface (relay.auth none): set relay.auth token, or a loopback relay.address",
			"address", s.Addr().String())
	}
}

// tlsConfig is the listener's TLS configuration: the native profile's
// (ALPN switchboard-relay/1), with GetConfigForClient choosing the ISSUN
// (no ALPN) or WebTransport one. quic-go clones whatever config
// GetConfigForClient returns for each connection and keeps the clone for
// the connection's life, so the native profile, the one most clients
// use, answers nil (the listener's own config) and costs no clone.
func (s *Server) tlsConfig() *tls.Config {
	issun := &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
	h3 := issun.Clone()
	h3.NextProtos = []string{wire.ALPNWebTransport}
	native := issun.Clone()
	native.NextProtos = []string{wire.ALPNNative}
	native.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(chi.SupportedProtos) == 0 {
			if s.cfg.DisableISSUN {
				return nil, errors.New("relay: the ISSUN profile (no ALPN) is disabled")
			}
			return issun, nil
		}
		if slices.Contains(chi.SupportedProtos, wire.ALPNNative) {
			return nil, nil // the listener's config: native
		}
		if slices.Contains(chi.SupportedProtos, wire.ALPNWebTransport) {
			return h3, nil
		}
		return nil, fmt.Errorf("relay: no supported application protocol in %q (want %q or %q)", chi.SupportedProtos, wire.ALPNNative, wire.ALPNWebTransport)
	}
	return native
}

func (s *Server) quicConfig() *quic.Config {
	base := &quic.Config{
		HandshakeIdleTimeout:  s.cfg.HandshakeTimeout,
		MaxIdleTimeout:        s.cfg.IdleTimeout,
		MaxIncomingStreams:    4,
		MaxIncomingUniStreams: 100,
		EnableDatagrams:       true,
		// WebTransport needs it (RESET_STREAM_AT); other clients ignore it.
		EnableStreamResetPartialDelivery: true,
	}
	conf := base.Clone()
	// Refused before the handshake: the client learns at once. The config
	// returned must be complete (nil would mean quic-go's defaults).
	conf.GetConfigForClient = func(ci *quic.ClientInfo) (*quic.Config, error) {
		if s.closing.Load() {
			s.metrics.handshakes.WithLabelValues(handshakeShutdown).Inc()
			return nil, errors.New("relay: shutting down")
		}
		if s.cfg.MaxClients > 0 && s.count.Load() >= int64(s.cfg.MaxClients) {
			s.metrics.handshakes.WithLabelValues(handshakeFull).Inc()
			return nil, errServerFull
		}
		if s.cfg.MaxClientsPerIP > 0 && s.ipCount(ci.RemoteAddr) >= s.cfg.MaxClientsPerIP {
			s.metrics.handshakes.WithLabelValues(handshakeIPLimit).Inc()
			return nil, errIPLimit
		}
		return base, nil
	}
	return conf
}

var errIPLimit = errors.New("relay: too many connections from this address")

func ipOf(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (s *Server) ipCount(a net.Addr) int {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	return s.perIP[ipOf(a)]
}

// addIP counts a connection from a's address; false when over the limit.
func (s *Server) addIP(a net.Addr) bool {
	if s.cfg.MaxClientsPerIP <= 0 {
		return true
	}
	ip := ipOf(a)
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.perIP[ip] >= s.cfg.MaxClientsPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}

func (s *Server) removeIP(a net.Addr) {
	if s.cfg.MaxClientsPerIP <= 0 {
		return
	}
	ip := ipOf(a)
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func (s *Server) acceptLoop() {
	for {
		qc, err := s.ln.Accept(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, quic.ErrServerClosed) {
				s.log.Error("relay accept failed", "error", err)
			}
			return
		}
		if n := s.count.Add(1); s.cfg.MaxClients > 0 && n > int64(s.cfg.MaxClients) {
			s.count.Add(-1)
			s.metrics.handshakes.WithLabelValues(handshakeFull).Inc()
			closeQUIC(qc, closeServerFull)
			continue
		}
		if !s.addIP(qc.RemoteAddr()) {
			s.count.Add(-1)
			s.metrics.handshakes.WithLabelValues(handshakeIPLimit).Inc()
			closeQUIC(qc, closeIPLimit)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			release := func() {
				s.removeIP(qc.RemoteAddr())
				s.count.Add(-1)
			}
			session := s.handshake(qc)
			if session == nil {
				release()
				return
			}
			s.wg.Add(1) // while this goroutine is counted: Shutdown waits for both
			go func() {
				defer s.wg.Done()
				defer release()
				session()
			}()
		}()
	}
}

func closeQUIC(qc *quic.Conn, d hub.Disconnect) {
	_ = qc.CloseWithError(quic.ApplicationErrorCode(d.Code), d.Reason)
}

// handshake runs the handshake of one connection and returns its
// session, to run to the connection's end (nil when the connection is
// done: refused, or WebTransport, served here to its end).
//
// The session runs in a goroutine of its own, not the handshake's: token
// checks, presence and encoding grow a goroutine's stack, and Go shrinks
// stacks only at a GC, which an idle server rarely runs, so a read loop
// that inherited that stack would keep it for the connection's life.
func (s *Server) handshake(qc *quic.Conn) (session func()) {
	switch qc.ConnectionState().TLS.NegotiatedProtocol {
	case "":
		return s.handshakeISSUN(qc)
	case wire.ALPNNative:
		return s.handshakeNative(qc)
	case wire.ALPNWebTransport:
		s.serveWebTransport(qc)
	default:
		closeQUIC(qc, closeBadRequest)
	}
	return nil
}

// register adds c under its NodeId and its session to the hub's index
// (under c.user); ErrNodeInUse when the NodeId is taken, and
// ErrNotAvailable while shutting down.
func (s *Server) register(c *conn) error {
	if s.cluster == nil {
		return s.registerWith(context.Background(), c, false)
	}
	return s.registerWith(s.cluster.ctx, c, false)
}

// registerWith is register; dirWritten: c's directory entry is written
// already (dirClaim), and is removed again when c is refused here; else
// base (with the directory's write bound) bounds its write (dirAdd).
func (s *Server) registerWith(base context.Context, c *conn, dirWritten bool) error {
	s.mu.Lock()
	var err error
	if s.closing.Load() {
		err = hub.ErrNotAvailable
	} else if _, taken := s.nodes[c.id]; taken {
		err = ErrNodeInUse
	}
	if err != nil {
		s.mu.Unlock()
		if dirWritten {
			s.cluster.dirDelete(c) // under c's own session id: nobody else's
		}
		return err
	}
	s.nodes[c.id] = c
	s.conns[c] = struct{}{}
	s.metrics.connections.WithLabelValues(c.label).Inc()
	s.mu.Unlock()
	if err := s.addSession(c, c.user); err != nil {
		s.unregister(c)
		return err
	}
	if s.cluster != nil && !dirWritten {
		s.cluster.dirAdd(base, c)
	}
	return nil
}

// unregister ends c's session: its NodeId is free and the hub forgets it.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	held := s.nodes[c.id] == c
	if held {
		delete(s.nodes, c.id)
	}
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	s.removeSession(c)
	if held && s.cluster != nil {
		s.cluster.dirRemove(c)
	}
	if ok {
		s.metrics.connections.WithLabelValues(c.label).Dec()
	}
}

// node returns the connection of id (nil when none).
func (s *Server) node(id wire.NodeID) *conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodes[id]
}

// NumConnections counts the connections past their handshake.
func (s *Server) NumConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, closes every connection (native clients get
// GOAWAY first, with code 3001: reconnect elsewhere) and waits for the
// connections' goroutines or ctx. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		stopOps := context.AfterFunc(ctx, s.opCancel) // the deadline ends hub calls in progress
		defer func() { stopOps(); s.opCancel() }()
		s.mu.Lock()
		s.closing.Store(true)
		list := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			list = append(list, c)
		}
		s.mu.Unlock()
		_ = s.ln.Close()
		for _, c := range list {
			c.close(closeShutdown)
		}
		s.stopParked() // their leaves' hub calls end at ctx's deadline too (opBase)
		s.cancel()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			if n := s.count.Load(); n > 0 {
				s.shutErr = fmt.Errorf("relay: shutdown: %d connections still open: %w", n, ctx.Err())
			}
		}
		if s.cluster != nil {
			s.cluster.close(ctx) // the leaves of the connections closed above
		}
		if s.mirror != nil {
			s.mirror.close(ctx)
		}
		_ = s.wt.Close()
		_ = s.tr.Close()
		_ = s.udp.Close()
		if s.ownPool {
			s.cfg.Pool.Close()
		}
		if s.shutErr == nil {
			s.log.Info("relay stopped")
		}
	})
	return s.shutErr
}

// presenceInfo is the hub presence of a room member.
func (c *conn) presenceInfo() *hub.ClientInfo {
	e := presenceEntry{NodeID: strconv.FormatUint(uint64(c.id), 10), Transport: presenceTransport(c.label)}
	c.mu.Lock()
	user := c.user
	if cl := c.srv.cluster; cl != nil {
		e.Process = cl.origin
		e.Metadata = c.meta
	}
	c.mu.Unlock()
	ci, _ := json.Marshal(e)
	return &hub.ClientInfo{ClientID: c.sid, UserID: user, ConnInfo: c.connInfo(), ChanInfo: ci}
}

func newSessionID() string { return uuid.NewString() }

// opCtx bounds one hub call made for a connection.
func (s *Server) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.opBase, opTimeout)
}

// opTimeout bounds a hub call (presence) made for a connection.
const opTimeout = 5 * time.Second
