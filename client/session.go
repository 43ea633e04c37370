package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/protocol/circles"
)

// session is one live WebSocket connection: a read loop routing responses to
// pending calls by id. It is owned by the Conn supervisor, which calls
// shutdown exactly once; shutdown waits for the read loop.
type session struct {
	ws           *websocket.Conn
	log          *slog.Logger
	writeTimeout time.Duration
	maxInFlight  int

	ctx    context.Context // cancelled when the session fails; ends the read loop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan callResult // nil once failed
	err     error                      // why the session ended; set once
	done    chan struct{}              // closed when err is set
}

type callResult struct {
	resp circles.Response
	err  error
}

func newSession(ws *websocket.Conn, log *slog.Logger, writeTimeout time.Duration, maxInFlight int) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		ws:           ws,
		log:          log,
		writeTimeout: writeTimeout,
		maxInFlight:  maxInFlight,
		ctx:          ctx,
		cancel:       cancel,
		pending:      make(map[uint64]chan callResult),
		done:         make(chan struct{}),
	}
	s.wg.Add(1)
	go s.readLoop()
	return s
}

func (s *session) readLoop() {
	defer s.wg.Done()
	for {
		_, data, err := s.ws.Read(s.ctx)
		if err != nil {
			s.fail(fmt.Errorf("%w: %v", ErrConnectionLost, err))
			return
		}
		resps, err := circles.DecodeResponses(data)
		if err != nil {
			s.log.Warn("dropping undecodable frame", "error", err, "size", len(data))
			continue
		}
		for _, r := range resps {
			if !r.HasID {
				if r.Error != nil {
					s.log.Warn("server error without request id", "error", r.Error)
				}
				continue
			}
			s.deliver(r)
		}
	}
}

func (s *session) deliver(r circles.Response) {
	s.mu.Lock()
	ch, ok := s.pending[r.ID]
	delete(s.pending, r.ID)
	s.mu.Unlock()
	if !ok {
		s.log.Debug("response for unknown request id", "id", r.ID)
		return
	}
	ch <- callResult{resp: r} // buffered, sent at most once per id
}

// markFailed records err as the session's end cause (first caller wins) and
// fails every pending call with it. It reports whether err was recorded.
func (s *session) markFailed(err error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.err = err
	pending := s.pending
	s.pending = nil
	close(s.done)
	s.mu.Unlock()
	for _, ch := range pending {
		ch <- callResult{err: err}
	}
	return true
}

// fail ends the session abruptly with err.
func (s *session) fail(err error) {
	s.markFailed(err)
	s.cancel()
}

// cause returns why the session ended, or nil while it is alive.
func (s *session) cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// shutdown ends the session with cause, closing the WebSocket gracefully
// when asked (bounded by the WebSocket library's close handshake timeout),
// and waits for the read loop to exit.
func (s *session) shutdown(cause error, graceful bool) {
	s.markFailed(cause)
	if graceful {
		_ = s.ws.Close(websocket.StatusNormalClosure, "client closing")
	}
	s.cancel()
	_ = s.ws.CloseNow()
	s.wg.Wait()
}

// call sends one request and waits for its response, ctx, or the end of the
// session. JSON-RPC errors are returned as *circles.Error.
func (s *session) call(ctx context.Context, method string, params, out any) error {
	id := s.nextID.Add(1)
	ch := make(chan callResult, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if len(s.pending) >= s.maxInFlight {
		s.mu.Unlock()
		return fmt.Errorf("%w (%d)", ErrTooManyInFlight, s.maxInFlight)
	}
	s.pending[id] = ch
	s.mu.Unlock()

	data, err := circles.EncodeRequest(id, method, params)
	if err != nil {
		s.forget(id)
		return fmt.Errorf("client: encode %s request: %w", method, err)
	}
	// A separate write deadline: cancelling the caller's ctx mid-write would
	// make the WebSocket library tear the whole connection down.
	wctx, cancel := context.WithTimeout(s.ctx, s.writeTimeout)
	err = s.ws.Write(wctx, websocket.MessageText, data)
	cancel()
	if err != nil {
		s.fail(fmt.Errorf("%w: write: %v", ErrConnectionLost, err))
		// fail delivered the error to ch unless a response won the race.
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if r.resp.Error != nil {
			return r.resp.Error
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.resp.Result, out); err != nil {
			return fmt.Errorf("client: decode %s result: %w", method, err)
		}
		return nil
	case <-ctx.Done():
		s.forget(id)
		return fmt.Errorf("client: %s: %w", method, ctx.Err())
	}
}

func (s *session) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}
