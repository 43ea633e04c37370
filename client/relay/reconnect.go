//go:build !js

package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/quic-go/quic-go"

	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// State is where a Client stands.
type State int

// States a Client goes through (Options.OnState, Client.State).
const (
	// StateConnected: Dial's connection is up.
	StateConnected State = iota + 1
	// StateReconnecting: the connection was lost (or the relay asked the
	// client to come back); a redial waits StateChange.Delay.
	StateReconnecting
	// StateResumed: a redial resumed the session within the relay's grace
	// window: same NodeId, same rooms, the others saw nothing.
	StateResumed
	// StateRejoined: the session could not be resumed (the window passed
	// or the relay restarted); a new session rejoined the rooms,
	// StateChange.Lost names those it could not.
	StateRejoined
	// StateClosed: the Client ended (Close, Abandon, a GOAWAY that does
	// not invite back, a refused token, MaxAttempts); Err says why.
	StateClosed
)

var stateNames = map[State]string{StateConnected: "connected", StateReconnecting: "reconnecting",
	StateResumed: "resumed", StateRejoined: "rejoined", StateClosed: "closed"}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// StateChange is one transition of a Client.
type StateChange struct {
	State State
	// Attempt counts redials since the loss (StateReconnecting).
	Attempt int
	// Delay is the wait before the next redial (StateReconnecting).
	Delay time.Duration
	// Err is the cause: why the connection or the last redial failed
	// (StateReconnecting), why the Client ended (StateClosed; nil after
	// Close).
	Err error
	// Lost are the rooms a rejoin failed for, with the relay's answer
	// (StateRejoined); they are no longer joined.
	Lost map[string]error
}

// State is the Client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) setState(sc StateChange) {
	c.mu.Lock()
	c.state = sc.State
	c.mu.Unlock()
	if c.o.OnState != nil {
		c.o.OnState(sc)
	}
}

// end is the Client's last transition.
func (c *Client) end(err error) {
	c.mu.Lock()
	c.sess = nil
	c.err = err
	c.mu.Unlock()
	c.setState(StateChange{State: StateClosed, Err: err})
}

// supervise owns the sessions: it waits for the current one to end and,
// with Options.Reconnect, replaces it.
func (c *Client) supervise(s *session) {
	defer c.wg.Done()
	for {
		select {
		case <-s.done:
		case <-c.closing:
			<-s.done
		}
		s.wg.Wait()
		c.detach(s)
		if isClosed(c.closing) {
			c.end(nil)
			return
		}
		cause, retry, after := sessionCause(s)
		if !c.o.Reconnect || !retry {
			c.end(cause)
			return
		}
		if s = c.reconnect(cause, after); s == nil {
			return
		}
	}
}

// sessionCause is why s ended, whether to come back and after how long
// at least.
func sessionCause(s *session) (error, bool, time.Duration) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	var g *GoAwayError
	if errors.As(err, &g) {
		return err, g.Retry(), time.Duration(g.GoAway.RetryAfterMillis) * time.Millisecond
	}
	if err != nil {
		return err, true, 0 // a frame that did not decode
	}
	err = s.l.closeCause()
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode != 0 {
		g := GoAwayError{GoAway: wire.GoAway{Code: uint32(ae.ErrorCode), Reason: ae.ErrorMessage}}
		return fmt.Errorf("relay: closed by the relay (%d): %s", ae.ErrorCode, ae.ErrorMessage), g.Retry(), 0
	}
	if err == nil {
		err = errors.New("relay: connection lost")
	}
	return err, true, 0
}

// detach marks the rooms of s as waiting for a connection.
func (c *Client) detach(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
	}
	for _, r := range c.rooms {
		r.detach(s)
	}
}

// maxResumeRefusals is how many refused resumes within the window are
// retried before a new session: the relay may not have noticed the loss
// yet when the client already redials.
const maxResumeRefusals = 3

// reconnect redials until a session is up (returned) or the Client ends
// (nil).
func (c *Client) reconnect(cause error, after time.Duration) *session {
	w := c.lastWelcome()
	lostAt := time.Now()
	grace := time.Duration(w.Limits.ResumeMillis) * time.Millisecond
	token := w.ResumeToken
	if !resumable(cause) || c.roomCount() == 0 {
		token = "" // the relay parks only lost sessions in rooms
	}
	refusals := 0
	delay := max(after, c.backoff(1))
	for attempt := 1; ; attempt++ {
		c.setState(StateChange{State: StateReconnecting, Attempt: attempt, Delay: delay, Err: cause})
		t := time.NewTimer(delay)
		select {
		case <-c.closing:
			t.Stop()
			c.end(nil)
			return nil
		case <-t.C:
		}
		resume := token != "" && time.Since(lostAt) < grace && refusals < maxResumeRefusals
		h := &wire.Hello{Token: c.o.Token, NodeID: c.o.NodeID, Client: c.o.Name}
		if resume {
			h.ResumeToken = token
		}
		s, nw, err := c.redial(h)
		if err == nil {
			if isClosed(c.closing) {
				s.close(c.leave.Load())
				c.end(nil)
				return nil
			}
			c.adopt(s, nw)
			if nw.Resumed {
				c.awaitKept(s)
			}
			lost := c.rejoin(s)
			if nw.Resumed && len(lost) == 0 {
				c.setState(StateChange{State: StateResumed, Attempt: attempt})
			} else {
				c.setState(StateChange{State: StateRejoined, Attempt: attempt, Lost: lost})
			}
			return s
		}
		cause, delay = err, c.backoff(attempt+1)
		switch refusal(err, resume) {
		case refusedResume:
			refusals++
		case refusedOther:
			refusals = maxResumeRefusals
			delay = 0
		case refusedFinal:
			c.end(err) // the same HELLO would be refused again
			return nil
		}
		if c.o.MaxAttempts > 0 && attempt >= c.o.MaxAttempts {
			c.end(fmt.Errorf("relay: gave up after %d attempts: %w", attempt, err))
			return nil
		}
	}
}

// What a failed redial means.
const (
	refusedNot    = iota // not refused (a network error): back off and retry
	refusedResume        // the resume token is not (yet) known
	refusedOther         // the resume token is another user's: a new session now
	refusedFinal         // the token or HELLO is refused: give up
)

// closeResumeRefused is the relay's close code of a refused resume
// (insufficient state) and nodeInUse the reason of a NodeId in use
// (retried: the old connection may not have ended yet).
const (
	closeResumeRefused = 3010
	nodeInUse          = "node id already connected"
)

func refusal(err error, resume bool) int {
	var re *RequestError
	if errors.As(err, &re) {
		switch {
		case resume && re.Code == wire.ErrCodeNotFound:
			return refusedResume
		case resume && re.Code == wire.ErrCodePermissionDenied:
			return refusedOther
		case re.Code == wire.ErrCodeUnauthorized || re.Code == wire.ErrCodePermissionDenied || re.Code == wire.ErrCodeInvalid:
			return refusedFinal
		}
		return refusedNot
	}
	var fe *RefusedError
	if errors.As(err, &fe) {
		g := GoAwayError{GoAway: wire.GoAway{Code: fe.Code}}
		switch {
		case resume && fe.Code == closeResumeRefused:
			return refusedResume
		case fe.Reason == nodeInUse || g.Retry():
			return refusedNot
		}
		return refusedFinal
	}
	return refusedNot
}

// closeNoPong is the GOAWAY code of missed heartbeats, the one close by
// the relay after which it keeps the session.
const closeNoPong = 3012

// resumable reports whether the relay may have kept the session after a
// loss by cause: not after its GOAWAY (shutdown, slow consumer…) except
// for missed heartbeats.
func resumable(cause error) bool {
	var g *GoAwayError
	return !errors.As(cause, &g) || g.GoAway.Code == closeNoPong
}

func (c *Client) roomCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rooms)
}

// redial is one connection attempt, bounded by DialTimeout and Close.
func (c *Client) redial(h *wire.Hello) (*session, *wire.Welcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return c.connect(ctx, h)
}

// backoff is the delay before redial attempt n (1 first): MinBackoff
// doubled per attempt up to MaxBackoff, minus up to half of it at random.
func (c *Client) backoff(n int) time.Duration {
	d := c.o.MinBackoff
	for i := 1; i < n && d < c.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.o.MaxBackoff)
	return d - rand.N(d/2+1)
}

// awaitKept waits until the rooms of a resumed session are attached
// (their JOINED follow the WELCOME) or the session ends.
func (c *Client) awaitKept(s *session) {
	t := time.NewTimer(c.o.DialTimeout)
	defer t.Stop()
	for !c.allAttached(s) {
		select {
		case <-s.attached:
		case <-s.done:
			return
		case <-t.C:
			return
		}
	}
}

func (c *Client) allAttached(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.rooms {
		if !r.on(s) {
			return false
		}
	}
	return true
}

// rejoin joins, on s, the rooms the application is in that s lacks,
// creating them when they do not exist; it returns the failures (those
// rooms are dropped).
func (c *Client) rejoin(s *session) map[string]error {
	c.mu.Lock()
	var todo []*Room
	for _, r := range c.rooms {
		if !r.on(s) {
			todo = append(todo, r)
		}
	}
	c.mu.Unlock()
	var lost map[string]error
	for _, r := range todo {
		ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
		o := r.joinOptions()
		o.Create = true
		j, err := s.join(ctx, r.name, o)
		cancel()
		if err != nil && isClosed(s.done) {
			break // the connection is gone too: the next one rejoins
		}
		c.mu.Lock()
		if err == nil {
			r.attach(s, j)
		} else if c.rooms[r.name] == r {
			delete(c.rooms, r.name)
			r.drop(err)
			if lost == nil {
				lost = map[string]error{}
			}
			lost[r.name] = err
		}
		c.mu.Unlock()
	}
	return lost
}
