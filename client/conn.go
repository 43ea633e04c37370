package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// Status is the state of a Conn. Transitions are reported in order through
// Config.OnStatusChange.
type Status int32

// Connection states. A Conn starts Disconnected, moves to Connecting for each
// dial attempt, Connected once the WebSocket is open, Authenticated once the
// signature handshake succeeded (only with a private key), back to
// Disconnected when the connection drops or an attempt fails, and finally to
// Closed after Close.
const (
	Disconnected Status = iota
	Connecting
	Connected
	Authenticated
	Closed
)

// String returns the lowercase name of s.
func (s Status) String() string {
	switch s {
	case Disconnected:
		return "disconnected"
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Authenticated:
		return "authenticated"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("status(%d)", int32(s))
}

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrConnectionLost fails calls in flight when the connection drops
	// (read or write error, keep-alive failure).
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrNotConnected is returned by calls made while the Conn is not ready
	// (connecting, authenticating or waiting to reconnect).
	ErrNotConnected = errors.New("client: not connected")
	// ErrClosed is returned by calls on a closed Conn or Manager and fails
	// calls in flight when Close is called.
	ErrClosed = errors.New("client: closed")
	// ErrInvalidURL wraps every error about a malformed server URL.
	ErrInvalidURL = errors.New("client: invalid url")
	// ErrTooManyInFlight is returned by a call that would exceed
	// Config.MaxInFlight calls awaiting responses.
	ErrTooManyInFlight = errors.New("client: too many calls in flight")
	// ErrAuthFailed wraps authentication failures; the server's *circles.Error
	// (usually circles.CodeInvalidCredentials) is wrapped too.
	ErrAuthFailed = errors.New("client: authentication failed")
)

// Defaults for Config fields left zero.
const (
	DefaultKeepAliveInterval = 20 * time.Second
	DefaultKeepAliveTimeout  = 10 * time.Second
	DefaultDialTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultCallTimeout       = 2 * time.Minute
	DefaultMaxMessageSize    = 16 << 20
	DefaultMaxInFlight       = 1024
)

// StatusChange describes one status transition. Err is the reason for a move
// to Disconnected (nil otherwise).
type StatusChange struct {
	URL      string
	From, To Status
	Err      error
}

// Config configures a Conn. Zero values mean the documented defaults.
type Config struct {
	// URL is the circle endpoint, ws://host:port/{circle_key} or wss://…. Required.
	URL string
	// PrivateKey is the client's secp256k1 private key as 64 hex digits. When
	// empty the Conn does not authenticate and is ready once Connected.
	PrivateKey string
	// Backoff paces reconnection attempts; see Backoff for its defaults.
	Backoff Backoff
	// KeepAliveInterval is the time between keep-alive probes: WebSocket
	// pings natively, a whoami call under js/wasm (browsers cannot send
	// pings). Zero means 20s; negative disables keep-alive.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout bounds each probe; a probe that fails or times out
	// drops the connection. Zero means 10s.
	KeepAliveTimeout time.Duration
	// DialTimeout bounds one attempt: dial plus authentication. Zero means 10s.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one request; a write that times out drops
	// the connection. Zero means 10s.
	WriteTimeout time.Duration
	// CallTimeout bounds every call in addition to the caller's context.
	// Zero means 2m; negative means no limit beyond the context.
	CallTimeout time.Duration
	// MaxMessageSize is the largest response frame accepted, in bytes; a
	// larger one drops the connection. Zero means 16 MiB.
	MaxMessageSize int64
	// MaxInFlight caps the calls awaiting responses on the connection;
	// further calls fail fast with ErrTooManyInFlight. Zero means 1024.
	MaxInFlight int
	// OnStatusChange, if set, is called for every transition, in order, from
	// the Conn's own goroutine. It must return quickly and must not call
	// Close on the same Conn (Close waits for that goroutine).
	OnStatusChange func(StatusChange)
	// Logger receives connection events. Nil discards them.
	Logger *slog.Logger
}

// ValidateURL checks that raw is a ws:// or wss:// URL with a host. Errors
// wrap ErrInvalidURL.
func ValidateURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return fmt.Errorf("%w: empty", ErrInvalidURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("%w: %q: scheme must be ws or wss", ErrInvalidURL, raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: %q: missing host", ErrInvalidURL, raw)
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.Backoff = c.Backoff.withDefaults()
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Conn is a self-managing connection to one circle. After Connect it owns one
// goroutine that dials, authenticates, sends keep-alives and reconnects with
// backoff (re-authenticating each time) until Close. All methods are safe for
// concurrent use.
type Conn struct {
	cfg Config
	key *PrivateKey
	log *slog.Logger

	ctx    context.Context // lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	status   Status
	sess     *session      // non-nil only while ready
	changed  chan struct{} // closed and replaced on every state change
	attempts uint64        // completed connection attempts
	lastErr  error         // result of the latest attempt
	started  bool
	closed   bool
}

// New validates cfg and returns an idle Conn; nothing runs until Connect.
// Errors wrap ErrInvalidURL or ErrInvalidKey.
func New(cfg Config) (*Conn, error) {
	if err := ValidateURL(cfg.URL); err != nil {
		return nil, err
	}
	var key *PrivateKey
	if cfg.PrivateKey != "" {
		k, err := ParsePrivateKey(cfg.PrivateKey)
		if err != nil {
			return nil, err
		}
		key = k
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{
		cfg:     cfg,
		key:     key,
		log:     cfg.Logger.With("component", "circle_client", "url", cfg.URL),
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
	}, nil
}

// Dial is New followed by Connect; on failure the Conn is closed and the
// error of the first attempt (or ctx's) is returned.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// URL returns the configured server URL.
func (c *Conn) URL() string { return c.cfg.URL }

// PublicKey returns the uncompressed hex public key used to authenticate, or
// "" when the Conn has no private key.
func (c *Conn) PublicKey() string {
	if c.key == nil {
		return ""
	}
	return c.key.PublicKeyUncompressed()
}

// Status returns the current status.
func (c *Conn) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// readyStatus is the status in which calls are accepted.
func (c *Conn) readyStatus() Status {
	if c.key != nil {
		return Authenticated
	}
	return Connected
}

// Connect starts the Conn's supervisor goroutine (once) and waits until the
// Conn is ready (Authenticated, or Connected without a private key), until the
// next connection attempt fails (returning that attempt's error), or until
// ctx ends. Whatever it returns, the Conn keeps reconnecting in the
// background until Close.
func (c *Conn) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	since := c.attempts
	if !c.started {
		c.started = true
		c.wg.Add(1)
		go c.run()
	}
	c.mu.Unlock()

	for {
		c.mu.Lock()
		ready, closed, ch := c.sess != nil, c.closed, c.changed
		attempts, lastErr := c.attempts, c.lastErr
		c.mu.Unlock()
		switch {
		case ready:
			return nil
		case closed:
			return ErrClosed
		case attempts > since:
			return lastErr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("client: connect %s: %w", c.cfg.URL, ctx.Err())
		}
	}
}

// WaitReady blocks until the Conn is ready, it is closed (ErrClosed) or ctx
// ends. It does not start the Conn: call Connect first.
func (c *Conn) WaitReady(ctx context.Context) error {
	for {
		c.mu.Lock()
		ready, closed, ch := c.sess != nil, c.closed, c.changed
		c.mu.Unlock()
		switch {
		case ready:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the Conn: calls in flight fail with ErrClosed, the WebSocket is
// closed with a normal closure, and Close waits for the Conn's goroutines.
// It is idempotent and always returns nil.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	started := c.started
	c.broadcastLocked()
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if !started {
		c.setStatus(Closed, nil)
	}
	return nil
}

// Call sends a JSON-RPC request with params and decodes its result into
// result (if non-nil). It fails fast with ErrNotConnected while the Conn is
// not ready, with ErrConnectionLost if the connection drops before the
// response, with ErrClosed if Close is called, and returns JSON-RPC errors as
// *circles.Error.
func (c *Conn) Call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	s, st, closed := c.sess, c.status, c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if s == nil {
		return fmt.Errorf("%w: %s is %s", ErrNotConnected, c.cfg.URL, st)
	}
	if c.cfg.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
	}
	return s.call(ctx, method, params, result)
}

// Play runs script on the circle and returns its output. Script failures and
// timeouts are *circles.Error with Code circles.CodeExecution and the reason in Data.
func (c *Conn) Play(ctx context.Context, script string) (string, error) {
	var out string
	if err := c.Call(ctx, circles.MethodPlay, circles.PlayParams{Script: script}, &out); err != nil {
		return "", err
	}
	return out, nil
}

// Identity is the result of whoami: the circle key of the connection and the
// authenticated public key ("" when not authenticated).
type Identity struct {
	Circle string `json:"circle"`
	PubKey string `json:"pubkey"`
}

// Whoami asks the server which circle this connection is on and as whom.
func (c *Conn) Whoami(ctx context.Context) (Identity, error) {
	var id circles.WhoamiResult
	if err := c.Call(ctx, circles.MethodWhoami, struct{}{}, &id); err != nil {
		return Identity{}, err
	}
	out := Identity{Circle: id.Circle}
	if id.PubKey != nil {
		out.PubKey = *id.PubKey
	}
	return out, nil
}

func (c *Conn) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// setStatus records a transition and reports it. Only the supervisor
// goroutine (or Close, when it never started) calls it, so reports are
// ordered.
func (c *Conn) setStatus(to Status, cause error) {
	c.mu.Lock()
	from := c.status
	if from == to {
		c.mu.Unlock()
		return
	}
	c.status = to
	c.broadcastLocked()
	c.mu.Unlock()
	c.notify(from, to, cause)
}

func (c *Conn) notify(from, to Status, cause error) {
	if c.cfg.OnStatusChange != nil {
		c.cfg.OnStatusChange(StatusChange{URL: c.cfg.URL, From: from, To: to, Err: cause})
	}
}

// finishAttempt records the outcome of a connection attempt; on success it
// publishes s and the ready status atomically, so an observer of the ready
// status can call at once.
func (c *Conn) finishAttempt(s *session, err error) {
	c.mu.Lock()
	c.attempts++
	c.lastErr = err
	from := c.status
	to := from
	if s != nil {
		c.sess = s
		to = c.readyStatus()
		c.status = to
	}
	c.broadcastLocked()
	c.mu.Unlock()
	if from != to {
		c.notify(from, to, nil)
	}
}

func (c *Conn) clearSession() {
	c.mu.Lock()
	c.sess = nil
	c.broadcastLocked()
	c.mu.Unlock()
}

// run is the supervisor: one connection at a time, reconnecting with backoff
// until Close.
func (c *Conn) run() {
	defer c.wg.Done()
	defer c.setStatus(Closed, nil)
	attempt := 0
	for c.ctx.Err() == nil {
		c.setStatus(Connecting, nil)
		s, err := c.establish()
		if c.ctx.Err() != nil {
			if s != nil {
				s.shutdown(ErrClosed, true)
			}
			c.finishAttempt(nil, ErrClosed)
			return
		}
		c.finishAttempt(s, err)
		if err == nil {
			attempt = 0
			c.log.Info("circle connection ready", "authenticated", c.key != nil)
			cause := c.serve(s)
			c.clearSession()
			closing := c.ctx.Err() != nil
			s.shutdown(cause, closing)
			if closing {
				return
			}
			c.log.Warn("circle connection lost", "error", cause)
			c.setStatus(Disconnected, cause)
		} else {
			c.log.Warn("circle connection attempt failed", "error", err, "attempt", attempt)
			c.setStatus(Disconnected, err)
		}
		d := c.cfg.Backoff.Delay(attempt)
		attempt++
		t := time.NewTimer(d)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// establish dials and, with a private key, authenticates. The returned
// session is alive; on error nothing is left running.
func (c *Conn) establish() (*session, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	ws, err := dialWebSocket(ctx, c.cfg.URL)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(c.cfg.MaxMessageSize)
	s := newSession(ws, c.log, c.cfg.WriteTimeout, c.cfg.MaxInFlight)
	if c.key == nil {
		return s, nil
	}
	c.setStatus(Connected, nil)
	if err := c.authenticate(ctx, s); err != nil {
		s.shutdown(err, false)
		return nil, err
	}
	return s, nil
}

func (c *Conn) authenticate(ctx context.Context, s *session) error {
	pub := c.key.PublicKeyUncompressed()
	var n circles.NonceResult
	if err := s.call(ctx, circles.MethodFetchNonce, circles.FetchNonceParams{PubKey: pub}, &n); err != nil {
		return fmt.Errorf("%w: fetch_nonce: %w", ErrAuthFailed, err)
	}
	if n.Nonce == "" {
		return fmt.Errorf("%w: fetch_nonce returned an empty nonce", ErrAuthFailed)
	}
	sig := hex.EncodeToString(c.key.SignPersonal([]byte(n.Nonce)))
	var res circles.AuthenticateResult
	if err := s.call(ctx, circles.MethodAuthenticate, circles.AuthenticateParams{PubKey: pub, Signature: sig}, &res); err != nil {
		return fmt.Errorf("%w: %w", ErrAuthFailed, err)
	}
	if !res.Authenticated {
		return fmt.Errorf("%w: server answered authenticated=false", ErrAuthFailed)
	}
	return nil
}

// serve keeps a ready session alive until it fails or the Conn closes and
// returns the reason.
func (c *Conn) serve(s *session) error {
	var tick <-chan time.Time
	if c.cfg.KeepAliveInterval > 0 {
		t := time.NewTicker(c.cfg.KeepAliveInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return ErrClosed
		case <-s.done:
			return s.cause()
		case <-tick:
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.KeepAliveTimeout)
			err := keepAlive(ctx, s)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				lost := fmt.Errorf("%w: keep-alive: %v", ErrConnectionLost, err)
				s.fail(lost)
				return s.cause()
			}
		}
	}
}

func dialWebSocket(ctx context.Context, u string) (*websocket.Conn, error) {
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != 0 {
			return nil, fmt.Errorf("client: dial %s: http status %d: %w", u, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("client: dial %s: %w", u, err)
	}
	return ws, nil
}
