package clientproto

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-rt/switchboard/internal/auth"
	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/delivery"
	"github.com/switchboard-rt/switchboard/internal/errs"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/ratelimit"
)

// Transport is the connection a Session writes to. Write is called by one
// goroutine at a time (a delivery pool writer); Close may be called
// concurrently with Write and more than once.
type Transport interface {
	// Write sends one transport message (it may hold several protocol
	// messages: newline-joined JSON or concatenated length-delimited
	// Protobuf).
	Write(data []byte) error
	// Close closes the connection telling the client d's code and reason.
	Close(d hub.Disconnect)
}

type sessionState uint8

const (
	stateConnecting sessionState = iota
	stateConnected
	stateClosed
)

type pending struct {
	offset uint64
	frame  []byte
}

// subscription is one channel subscription of a session. It is the
// hub.Subscriber the hub delivers to, so a delivery needs no lookup.
type subscription struct {
	s          *Session
	removed    bool // guarded by s.mu: late deliveries are dropped
	opts       hub.ChannelOptions
	info       []byte
	joinLeave  bool
	positioned bool
	syncing    bool
	buffer     []pending
	buffered   int // bytes in buffer, counted against the queue's room
	expireAt   int64
	serverSide bool
	// epoch and offset are the stream position delivered so far (when
	// positioned); mark is a stream top shown at markTime that offset has
	// not reached yet (position.go).
	epoch    string
	offset   uint64
	mark     uint64
	markTime time.Time
}

// Session is one client connection speaking the protocol. It implements
// hub.Client; its subscriptions are its hub.Subscribers. Outgoing messages
// go through a delivery.Queue, and every Enqueue is made with mu held. The
// transport adapter calls HandleMessage for each received message from a
// single goroutine and Closed once when the connection ends.
type Session struct {
	srv    *Server
	t      Transport
	format format
	fmtIdx int

	// opMu serialises subscribe/unsubscribe between the read goroutine and
	// server API calls. Lock order: opMu, then hub locks, then mu.
	opMu sync.Mutex

	mu        sync.Mutex
	state     sessionState
	id        string
	user      string
	connInfo  []byte
	expireAt  int64
	subs      map[string]*subscription
	q         *delivery.Queue
	closeSent bool
	pongWait  bool
	timer     clock.Timer
	timerKind uint8
	rpcs      int
	rpcCancel context.CancelFunc // cancels in-flight rpc calls; set by the first rpc
	rpcCtx    context.Context
	rate      ratelimit.Bucket
	wg        sync.WaitGroup // rpc, close and release goroutines
	// releasing holds, per channel, a subscription ended for insufficient
	// state that is still being released from the hub.
	releasing map[string]chan struct{}
	// cmdCancel cancels the command running now (commands run one at a
	// time, from HandleMessage), so it ends when the connection goes. An
	// idle session holds no context.
	cmdCancel context.CancelFunc
}

const (
	timerStale uint8 = iota
	timerPing
	timerPong
	timerCheck // pings disabled: only token expiry is checked

)

// NewSession starts a session on t using the JSON (FormatJSON) or
// Protobuf (FormatProtobuf) format. The client must send connect within
// the stale delay.
func (s *Server) NewSession(t Transport, fmtIdx int) *Session {
	if fmtIdx != FormatProtobuf {
		fmtIdx = FormatJSON
	}
	ss := &Session{srv: s, t: t, format: formats[fmtIdx], fmtIdx: fmtIdx}
	ss.q = s.pool.NewQueue((*sessionSink)(ss), s.cfg.QueueMaxSize)
	ss.mu.Lock()
	ss.timerKind = timerStale
	ss.timer = s.clock.AfterFunc(s.cfg.StaleCloseDelay, ss.onTimer)
	ss.mu.Unlock()
	return ss
}

// ID returns the client id ("" before connect).
// It is set once by connect, before the session is registered in the hub.
func (s *Session) ID() string { return s.id }

// UserID returns the authenticated user ("" for anonymous).
func (s *Session) UserID() string { return s.user }

// Format implements hub.Subscriber.
func (sub *subscription) Format() hub.FormatID { return sub.s.Format() }

// Format implements hub.Client.
func (s *Session) Format() hub.FormatID { return s.srv.formats[s.fmtIdx] }

// Send implements hub.Client: it queues frame, a message of the session's
// format, once the session is connected.
func (s *Session) Send(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateConnected || s.closeSent {
		return delivery.ErrClosed
	}
	return s.q.Enqueue(frame)
}

// Deliver implements hub.Subscriber: it queues frame unless the
// subscription is being set up (then it is held until the subscribe reply
// is queued). It never blocks.
func (sub *subscription) Deliver(channel string, offset uint64, frame []byte) {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.removed || s.state == stateClosed {
		return
	}
	if !sub.syncing && !sub.advanceLocked(channel, offset) {
		return
	}
	if sub.syncing {
		if sub.buffered+len(frame) > s.q.Room() {
			s.q.Overflow() // disconnects through sessionSink.Overflow
			return
		}
		sub.buffer = append(sub.buffer, pending{offset: offset, frame: frame})
		sub.buffered += len(frame)
		return
	}
	s.enqueueLocked(frame)
}

// enqueueLocked queues one protocol message. A queue beyond QueueMaxSize
// disconnects the client as slow (sessionSink.Overflow).
func (s *Session) enqueueLocked(msg []byte) {
	if s.state == stateClosed || s.closeSent {
		return
	}
	_ = s.q.Enqueue(msg)
}

// sessionSink is the delivery.Sink side of a Session (a conversion, so
// the queue needs no allocation of its own for it).
type sessionSink Session

// WriteBatch writes msgs as one transport message.
func (k *sessionSink) WriteBatch(msgs [][]byte) error {
	s := (*Session)(k)
	data := msgs[0]
	if len(msgs) > 1 {
		data = s.format.appendBatch(make([]byte, 0, batchSize(msgs)), msgs)
	}
	return s.t.Write(data)
}

// Overflow runs inside an Enqueue, which the session makes with mu held.
func (k *sessionSink) Overflow() { (*Session)(k).disconnectLocked(hub.DisconnectSlow) }

// WriteFailed runs in a writer goroutine, without the session's locks.
func (k *sessionSink) WriteFailed(error) { (*Session)(k).Disconnect(hub.DisconnectWriteError) }

func batchSize(msgs [][]byte) int {
	n := len(msgs)
	for _, m := range msgs {
		n += len(m)
	}
	return n
}

// Disconnect implements hub.Client: the connection is closed with d. It
// does not block.
func (s *Session) Disconnect(d hub.Disconnect) {
	s.mu.Lock()
	s.disconnectLocked(d)
	s.mu.Unlock()
}

func (s *Session) disconnectLocked(d hub.Disconnect) {
	if s.closeSent || s.state == stateClosed {
		return
	}
	s.closeSent = true
	s.q.Close()
	s.cancelCommandLocked()
	s.srv.metrics.disconnects.WithLabelValues(codeLabel(d.Code)).Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.t.Close(d)
	}()
}

// Closed tells the session its connection ended. It releases
// subscriptions, presence and the hub registration and waits for the
// session's goroutines. Call it once, after the last HandleMessage.
func (s *Session) Closed() {
	s.opMu.Lock()
	s.mu.Lock()
	wasConnected := s.state == stateConnected
	s.state = stateClosed
	if s.timer != nil {
		s.timer.Stop()
	}
	subs := s.subs
	s.subs = nil
	for _, sub := range subs {
		sub.removed = true
	}
	s.q.Close()
	s.cancelCommandLocked()
	if s.rpcCancel != nil {
		s.rpcCancel()
	}
	s.mu.Unlock()
	h := s.srv.cfg.Hub
	for ch, sub := range subs {
		s.releaseSubscription(ch, sub)
	}
	if wasConnected {
		h.RemoveClient(s)
	}
	s.opMu.Unlock()
	s.wg.Wait()
}

// clientInfo describes the session; the caller must not hold s.mu.
func (s *Session) clientInfo(chanInfo []byte) *hub.ClientInfo {
	s.mu.Lock()
	connInfo := s.connInfo // the server API's refresh may replace it
	s.mu.Unlock()
	return &hub.ClientInfo{ClientID: s.id, UserID: s.user, ConnInfo: connInfo, ChanInfo: chanInfo}
}

func (s *Session) releaseSubscription(ch string, sub *subscription) {
	h := s.srv.cfg.Hub
	h.RemoveSubscriber(ch, sub)
	// Not the session's context: the connection may be gone already.
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.CommandTimeout)
	defer cancel()
	if sub.opts.Presence {
		if err := h.RemovePresence(ctx, ch, s.id, s.user); err != nil {
			s.srv.log.Warn("remove presence failed", "channel", ch, "error", err)
		}
	}
	if sub.opts.JoinLeave {
		if err := h.PublishLeave(ctx, ch, s.clientInfo(sub.info)); err != nil {
			s.srv.log.Warn("publish leave failed", "channel", ch, "error", err)
		}
	}
}

func (s *Session) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed || s.closeSent {
		return
	}
	cfg := &s.srv.cfg
	switch s.timerKind {
	case timerStale:
		if s.state == stateConnecting {
			s.disconnectLocked(hub.DisconnectStale)
		}
		return
	case timerCheck:
		if !s.expiredLocked() {
			s.timer.Reset(expiryCheckInterval(cfg))
		}
		return
	case timerPing:
		if s.expiredLocked() {
			return
		}
		s.enqueueLocked(s.format.ping())
		if cfg.PongTimeout < 0 {
			s.timer.Reset(cfg.PingInterval)
			return
		}
		s.pongWait = true
		s.timerKind = timerPong
		s.timer.Reset(cfg.PongTimeout)
	case timerPong:
		if s.pongWait {
			s.disconnectLocked(hub.DisconnectNoPong)
			return
		}
		s.timerKind = timerPing
		s.timer.Reset(cfg.PingInterval - cfg.PongTimeout)
	}
}

// expiredLocked disconnects the session when its connection token, or a
// subscription token, expired more than ExpiredCloseDelay ago without a
// refresh. It reports whether it did.
func (s *Session) expiredLocked() bool {
	now := s.srv.clock.Now().Unix()
	grace := int64(s.srv.cfg.ExpiredCloseDelay / time.Second)
	if s.expireAt > 0 && now >= s.expireAt+grace {
		s.disconnectLocked(hub.DisconnectExpired)
		return true
	}
	for _, sub := range s.subs {
		if sub.expireAt > 0 && now >= sub.expireAt+grace {
			s.disconnectLocked(hub.DisconnectSubExpired)
			return true
		}
	}
	return false
}

// expiryCheckInterval is how often expiry is checked when pings, which
// otherwise carry the check, are disabled.
func expiryCheckInterval(cfg *Config) time.Duration {
	return min(max(cfg.ExpiredCloseDelay, time.Second), DefaultPingInterval)
}

// HandleMessage processes one transport message holding one or more
// commands. A malformed message disconnects the client (bad request).
// data must stay unmodified until HandleMessage returns; the session copies
// what it keeps.
func (s *Session) HandleMessage(data []byte) {
	s.srv.metrics.messagesIn.Inc()
	if len(data) == 0 {
		s.Disconnect(hub.DisconnectBadRequest)
		return
	}
	dec := s.format.newDecoder(data)
	for {
		cmd, err := dec.Decode()
		if err != nil && !errors.Is(err, io.EOF) {
			s.srv.log.Debug("malformed command", "error", err)
			s.Disconnect(hub.DisconnectBadRequest)
			return
		}
		if cmd != nil {
			if !s.handleCommand(cmd) {
				return
			}
		}
		if errors.Is(err, io.EOF) || cmd == nil {
			return
		}
	}
}

// newClientID returns a random client id.
func newClientID() string { return uuid.NewString() }

func ttlSeconds(expireAt int64, now time.Time) uint32 {
	if expireAt <= 0 {
		return 0
	}
	d := expireAt - now.Unix()
	if d < 0 {
		return 0
	}
	return uint32(d)
}

func errTokenToHub(err error) (*errs.Error, bool) {
	if errors.Is(err, auth.ErrTokenExpired) {
		return hub.ErrTokenExpired, true
	}
	return nil, false
}
