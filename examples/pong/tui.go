package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
)

// The terminal UI: the court drawn with plain ANSI escapes, the left
// paddle moved by keys (w/s, k/j or the arrow keys; q quits), the right
// one a bot on the other relay connection.

// Court size in characters, inside the border.
const (
	courtW = 60
	courtH = 20
)

// frame is what one drawing shows.
type frame struct {
	x, y        float64 // ball, 0..1
	left, right float64 // paddle centres, 0..1
	scoreL      int
	scoreR      int
	status      string
}

// render draws f at the top left of an ANSI terminal (home, then every
// line cleared to its end), so frames overwrite each other without
// flicker.
func render(w io.Writer, f frame) error {
	var b strings.Builder
	b.WriteString("\x1b[H")
	fmt.Fprintf(&b, " you %d : %d bot\x1b[K\r\n", f.scoreL, f.scoreR)
	b.WriteString("+" + strings.Repeat("-", courtW) + "+\x1b[K\r\n")
	bx, by := cell(f.x, courtW), cell(f.y, courtH)
	for row := range courtH {
		b.WriteByte('|')
		for col := range courtW {
			switch {
			case col == bx && row == by:
				b.WriteByte('o')
			case col == 0 && onPaddle(row, f.left):
				b.WriteByte('#')
			case col == courtW-1 && onPaddle(row, f.right):
				b.WriteByte('#')
			case col == courtW/2 && row%2 == 0:
				b.WriteByte(':')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteString("|\x1b[K\r\n")
	}
	b.WriteString("+" + strings.Repeat("-", courtW) + "+\x1b[K\r\n")
	fmt.Fprintf(&b, " %s\x1b[K\r\n", f.status)
	_, err := io.WriteString(w, b.String())
	return err
}

// cell maps 0..1 to a cell index 0..n-1.
func cell(v float64, n int) int {
	return max(0, min(n-1, int(math.Round(v*float64(n-1)))))
}

func onPaddle(row int, centre float64) bool {
	return math.Abs(float64(row)/float64(courtH-1)-centre) <= paddleHalf
}

// Key actions.
const (
	keyNone = iota
	keyUp
	keyDown
	keyQuit
)

// keys turns terminal input (raw mode) into actions.
type keys struct {
	esc int // bytes of an escape sequence seen
}

func (k *keys) feed(c byte) int {
	switch {
	case k.esc == 1 && c == '[':
		k.esc = 2
		return keyNone
	case k.esc == 2:
		k.esc = 0
		switch c {
		case 'A':
			return keyUp
		case 'B':
			return keyDown
		}
		return keyNone
	}
	k.esc = 0
	switch c {
	case 0x1b:
		k.esc = 1
	case 'w', 'W', 'k':
		return keyUp
	case 's', 'S', 'j':
		return keyDown
	case 'q', 'Q', 3, 4: // q, Ctrl-C, Ctrl-D
		return keyQuit
	}
	return keyNone
}

// keyStep is how far one key press moves the paddle.
const keyStep = 0.07

// human is the left paddle's position set by keys.
type human struct {
	pos  atomic.Uint64 // float64 bits
	quit chan struct{}
}

func newHuman() *human {
	h := &human{quit: make(chan struct{})}
	h.pos.Store(math.Float64bits(0.5))
	return h
}

func (h *human) paddle() float64 { return math.Float64frombits(h.pos.Load()) }

// read applies the keys read from r until q or the end of r.
func (h *human) read(r io.Reader) {
	defer close(h.quit)
	br := bufio.NewReader(r)
	var k keys
	for {
		c, err := br.ReadByte()
		if err != nil {
			return
		}
		switch k.feed(c) {
		case keyUp:
			h.pos.Store(math.Float64bits(math.Max(0, h.paddle()-keyStep)))
		case keyDown:
			h.pos.Store(math.Float64bits(math.Min(1, h.paddle()+keyStep)))
		case keyQuit:
			return
		}
	}
}

// rawTerminal puts the terminal of stdin in raw mode without echo and
// hides the cursor; the function returned restores it.
func rawTerminal(out io.Writer) (func(), error) {
	stty := func(args ...string) error {
		cmd := exec.Command("stty", args...)
		cmd.Stdin = os.Stdin
		return cmd.Run()
	}
	if err := stty("raw", "-echo"); err != nil {
		return nil, fmt.Errorf("-tui needs a terminal on stdin (stty raw: %w)", err)
	}
	fmt.Fprint(out, "\x1b[?25l\x1b[2J")
	return func() {
		_ = stty("sane")
		fmt.Fprint(out, "\x1b[?25h\r\n")
	}, nil
}
