// Command pong plays Pong through the Switchboard relay's native protocol
// (client/relay), two relay connections in one program: the host
// simulates the ball and sends it with its own paddle unreliably 60 times
// a second, the guest sends its paddle reliably, and a point goes to the
// side that did not miss. Both connections reconnect by themselves and
// the game goes on across a reconnection (a relay restart, a dropped
// connection): what was sent meanwhile is dropped, the next tick sends
// again. Ctrl-C (SIGINT) or SIGTERM closes both connections (they leave
// the room at once) and exits with status 0.
//
// Two bots, with a relay started inside the program:
//
//	go run ./examples/pong -local
//
// or against a running server (switchboard serve --relay-port 5000; the
// development certificate's SHA-256 is in the server's log):
//
//	go run ./examples/pong -addr 127.0.0.1:5000 -pin <sha256 hex>
//
// -tui draws the court in the terminal (plain ANSI) and gives the left
// paddle to you: w/s, k/j or the arrow keys, q to quit.
//
//	go run ./examples/pong -local -tui
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/client/relay"
	server "github.com/switchboard-rt/switchboard/internal/relay"
)

// errQuit ends a game the human left.
var errQuit = errors.New("quit")

// Op codes of the game's events.
const (
	opBall   = 1 // unreliable: ball x, y and the host's paddle y (float64 each)
	opPaddle = 2 // reliable: the guest's paddle y
	opScore  = 3 // reliable: left, right (uint32 each); the game is over when one reaches the target
)

// match is how to reach the relay and what game to play.
type match struct {
	addr   string        // relay host:port
	pin    string        // hex SHA-256 of the relay's certificate
	token  string        // hub connection JWT both players send ("" for relay.auth none)
	local  bool          // start a relay inside this program instead
	points int           // points to win
	tick   time.Duration // simulation step
}

func main() {
	var m match
	flag.StringVar(&m.addr, "addr", "127.0.0.1:5000", "relay address (host:port)")
	flag.StringVar(&m.pin, "pin", "", "SHA-256 (hex) of the relay's certificate")
	flag.StringVar(&m.token, "token", "", "connection JWT for a relay with relay.auth token (switchboard gentoken makes one)")
	flag.BoolVar(&m.local, "local", false, "start a relay inside this program")
	flag.IntVar(&m.points, "points", 5, "points to win")
	flag.DurationVar(&m.tick, "tick", time.Second/60, "simulation step")
	tui := flag.Bool("tui", false, "draw the court in this terminal and play the left paddle with the keys")
	flag.Parse()
	// The first signal ends the game (the connections leave the room);
	// a second one, the default again, kills the program.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	var err error
	if *tui {
		err = runTUI(ctx, m)
	} else {
		err = run(ctx, m, os.Stdout)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "pong: stopped")
		return // both connections are closed: the relay saw them leave
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pong:", err)
		os.Exit(1)
	}
}

// runTUI is run with the terminal UI and a human host.
func runTUI(ctx context.Context, m match) error {
	restore, err := rawTerminal(os.Stdout)
	if err != nil {
		return err
	}
	h := newHuman()
	go h.read(os.Stdin) // ends with the program: a read of stdin cannot be interrupted
	var log bytes.Buffer
	err = play(ctx, m, &log, h, os.Stdout)
	restore()
	fmt.Print(log.String())
	if errors.Is(err, errQuit) {
		return nil
	}
	return err
}

// run plays one game of two bots, printing the score to out, until a side
// wins or ctx ends (its error is returned; both connections are closed
// first, so the relay sees them leave).
func run(ctx context.Context, m match, out io.Writer) error {
	return play(ctx, m, out, nil, nil)
}

// play runs one game; with h the host's paddle is h's and every tick is
// drawn on screen.
func play(ctx context.Context, m match, out io.Writer, h *human, screen io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	out = &lockedWriter{w: out} // the clients' OnState writes too
	addr, points, tick := m.addr, m.points, m.tick
	var pin [32]byte
	if m.local {
		s, stop, err := startLocal()
		if err != nil {
			return err
		}
		defer stop()
		addr = s.Addr().String()
		cert := s.Certificate()
		pin = sha256.Sum256(cert.Certificate[0])
	} else {
		b, err := hex.DecodeString(m.pin)
		if err != nil || len(b) != 32 {
			return errors.New("-pin: want the 64 hex digits of the relay certificate's SHA-256 (or -local)")
		}
		copy(pin[:], b)
	}
	opts := func(who string) relay.Options {
		return relay.Options{CertHashes: [][32]byte{pin}, Token: m.token, Reconnect: true, MaxAttempts: 20,
			OnState: func(sc relay.StateChange) { logState(out, who, sc) }}
	}
	host, err := relay.Dial(ctx, addr, opts("host"))
	if err != nil {
		return err
	}
	defer host.Close()
	guest, err := relay.Dial(ctx, addr, opts("guest"))
	if err != nil {
		return err
	}
	defer guest.Close()
	room := fmt.Sprintf("pong-%d", host.NodeID())
	hr, err := host.Join(ctx, room, relay.JoinOptions{Create: true, MaxMembers: 2})
	if err != nil {
		return err
	}
	gr, err := guest.Join(ctx, room, relay.JoinOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "room %s: host %d vs guest %d, first to %d\n", room, host.NodeID(), guest.NodeID(), points)
	done := make(chan error, 1)
	go func() { done <- playGuest(ctx, guest, gr, points, tick) }()
	hp := hostPlayer{points: points, tick: tick, out: out, screen: screen, human: h}
	left, right, err := hp.play(ctx, host, hr)
	if err != nil {
		return err
	}
	if err := hp.finish(ctx, host, hr, left, right, done); err != nil {
		return err
	}
	fmt.Fprintf(out, "final score %d:%d\n", left, right)
	return nil
}

// logState prints the reconnections of a player's connection.
func logState(out io.Writer, who string, sc relay.StateChange) {
	switch sc.State {
	case relay.StateReconnecting:
		fmt.Fprintf(out, "%s: relay reconnecting (attempt %d): %v\n", who, sc.Attempt, sc.Err)
	case relay.StateResumed, relay.StateRejoined:
		fmt.Fprintf(out, "%s: relay %s\n", who, sc.State)
	}
}

// lockedWriter serialises the writes of the players and their clients.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// sendErr is what a failed send on r means to a player: nil when the
// event may be dropped (the client is between connections, or the
// connection broke and it is about to notice), an error when the game
// cannot go on (the client ended, or the room was lost at a rejoin).
func sendErr(c *relay.Client, r *relay.Room, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, relay.ErrClosed) || c.State() == relay.StateClosed:
		return err
	case c.Room(r.Name()) != r:
		return fmt.Errorf("room %s lost: %w", r.Name(), err)
	}
	return nil
}

// startLocal runs a relay on a free loopback port.
func startLocal() (*server.Server, func(), error) {
	// No event rate limit here, so -tick can speed the game up; a server's
	// default (100 events/s) holds 60 Hz: one event per tick per bot.
	s, err := server.New(server.Config{Address: "127.0.0.1:0", Registerer: prometheus.NewRegistry(), EventRate: -1})
	if err != nil {
		return nil, nil, err
	}
	s.Start()
	return s, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}, nil
}

func f64s(vs ...float64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func readF64(b []byte, i int) float64 {
	if len(b) < 8*(i+1) {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
}

// follow moves a paddle toward y by at most speed.
func follow(paddle, y, speed float64) float64 {
	return paddle + math.Max(-speed, math.Min(speed, y-paddle))
}

const (
	paddleHalf = 0.1
	hostSpeed  = 0.012
	guestSpeed = 0.011
	// speedUp steepens the ball at every hit until a paddle is too slow.
	speedUp = 1.25
)

// hostPlayer is the left side, which simulates the ball.
type hostPlayer struct {
	points int
	tick   time.Duration
	out    io.Writer
	screen io.Writer // nil: no drawing
	human  *human    // nil: a bot moves the paddle
}

// play simulates the game until a side has points (or the human quits).
func (p hostPlayer) play(ctx context.Context, c *relay.Client, r *relay.Room) (int, int, error) {
	points, out := p.points, p.out
	x, y, vx, vy := 0.5, 0.5, 0.013, 0.009
	me, other := 0.5, 0.5
	var left, right int
	var quit chan struct{}
	if p.human != nil {
		quit = p.human.quit
	}
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for left < points && right < points {
		select {
		case <-ctx.Done():
			return left, right, ctx.Err()
		case <-quit:
			return left, right, errQuit
		case <-c.Done():
			return left, right, fmt.Errorf("host: %w", c.Err())
		case ev := <-c.Events():
			if ev.OpCode == opPaddle {
				other = readF64(ev.Payload, 0)
			}
			continue
		case <-t.C:
		}
		x, y = x+vx, y+vy
		if y < 0 || y > 1 {
			vy, y = -vy, math.Max(0, math.Min(1, y))
		}
		if p.human != nil {
			me = p.human.paddle()
		} else {
			me = follow(me, y, hostSpeed)
		}
		point := 0
		if x <= 0 {
			if math.Abs(y-me) <= paddleHalf {
				vx, x, vy = -vx, 0, vy*speedUp
			} else {
				right, point = right+1, 1
			}
		}
		if x >= 1 {
			if math.Abs(y-other) <= paddleHalf {
				vx, x, vy = -vx, 1, vy*speedUp
			} else {
				left, point = left+1, 1
			}
		}
		if point != 0 {
			fmt.Fprintf(out, "score %d:%d\n", left, right)
			x, y, vy = 0.5, 0.5, math.Copysign(0.009, -vy)
			// A score lost in a reconnection is carried by the next one,
			// and finish repeats the last.
			if err := sendErr(c, r, r.Send(opScore, scoreFrame(left, right))); err != nil {
				return left, right, fmt.Errorf("host: %w", err)
			}
		}
		_ = r.SendUnreliable(opBall, f64s(x, y, me)) // a lost frame is replaced by the next
		if p.screen != nil {
			status := fmt.Sprintf("first to %d - w/s or arrows move, q quits - relay: %s", points, c.State())
			if err := render(p.screen, frame{x: x, y: y, left: me, right: other, scoreL: left, scoreR: right, status: status}); err != nil {
				return left, right, err
			}
		}
	}
	return left, right, nil
}

// scoreRepeat is how often finish sends the final score again.
const scoreRepeat = 100 * time.Millisecond

// finish repeats the final score until the guest (in this program) has
// ended, with its result: a reconnection of either side may have lost
// the first one.
func (p hostPlayer) finish(ctx context.Context, c *relay.Client, r *relay.Room, left, right int, guest <-chan error) error {
	t := time.NewTicker(scoreRepeat)
	defer t.Stop()
	for {
		select {
		case err := <-guest:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return fmt.Errorf("host: %w", c.Err())
		case _, ok := <-c.Events(): // the guest's paddle until it has the score
			if !ok {
				return fmt.Errorf("host: %w", c.Err())
			}
		case <-t.C:
			if err := sendErr(c, r, r.Send(opScore, scoreFrame(left, right))); err != nil {
				return fmt.Errorf("host: %w", err)
			}
		}
	}
}

func scoreFrame(left, right int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(left))
	return binary.LittleEndian.AppendUint32(b, uint32(right))
}

// playGuest moves the right paddle after the ball until a side has points
// (or ctx ends).
func playGuest(ctx context.Context, c *relay.Client, r *relay.Room, points int, tick time.Duration) error {
	paddle, ballY := 0.5, 0.5
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-c.Events():
			if !ok {
				return fmt.Errorf("guest: %v", c.Err())
			}
			switch ev.OpCode {
			case opBall:
				ballY = readF64(ev.Payload, 1)
			case opScore:
				if len(ev.Payload) == 8 {
					l, rr := binary.LittleEndian.Uint32(ev.Payload), binary.LittleEndian.Uint32(ev.Payload[4:])
					if int(l) >= points || int(rr) >= points {
						return nil
					}
				}
			}
		case <-t.C:
			paddle = follow(paddle, ballY, guestSpeed)
			if err := sendErr(c, r, r.Send(opPaddle, f64s(paddle))); err != nil {
				return fmt.Errorf("guest: %w", err) // else dropped: the next tick sends the paddle again
			}
		case <-c.Done():
			return fmt.Errorf("guest: %v", c.Err())
		}
	}
}
