package main

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRender(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, render(&b, frame{x: 1, y: 0, left: 0.5, right: 0, scoreL: 2, scoreR: 1, status: "hi"}))
	s := b.String()
	require.True(t, strings.HasPrefix(s, "\x1b[H you 2 : 1 bot\x1b[K\r\n"), "%q", s[:30])
	lines := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
	require.Len(t, lines, 1+1+courtH+1+1)
	court := lines[2 : 2+courtH]
	for _, l := range court {
		require.Len(t, strings.TrimSuffix(l, "\x1b[K"), courtW+2)
	}
	// The ball in the top right corner, on the bot's paddle at the top.
	require.Equal(t, "o|", strings.TrimSuffix(court[0], "\x1b[K")[courtW:])
	require.Equal(t, byte('#'), court[1][courtW])
	// Your paddle around the middle rows only.
	var rows []int
	for i, l := range court {
		if l[1] == '#' {
			rows = append(rows, i)
		}
	}
	require.NotEmpty(t, rows)
	for _, r := range rows {
		require.LessOrEqual(t, math.Abs(float64(r)/float64(courtH-1)-0.5), paddleHalf)
	}
	require.Equal(t, " hi\x1b[K", lines[len(lines)-1])
}

func TestKeys(t *testing.T) {
	var k keys
	var got []int
	for _, c := range []byte("wsx\x1b[A\x1b[B\x1b[Cjkq\x03") {
		if a := k.feed(c); a != keyNone {
			got = append(got, a)
		}
	}
	require.Equal(t, []int{keyUp, keyDown, keyUp, keyDown, keyDown, keyUp, keyQuit, keyQuit}, got)

	h := newHuman()
	h.read(strings.NewReader(strings.Repeat("w", 20) + "ss"))
	require.InDelta(t, 2*keyStep, h.paddle(), 1e-9) // clamped at 0, then two down
	<-h.quit                                        // closed at the end of the input
}

// A whole game in TUI mode, sped up: the human's keys never come, so the
// quit ends it; every tick is drawn.
func TestPongTUIQuit(t *testing.T) {
	h := newHuman()
	var screen, out bytes.Buffer
	go h.read(strings.NewReader("")) // end of input: quit
	err := play(context.Background(), match{local: true, points: 5, tick: 1e6}, &out, h, &screen)
	require.ErrorIs(t, err, errQuit)
}

// The human holds the paddle in the middle until a side has 2 points;
// the frames show the score.
func TestPongTUIGame(t *testing.T) {
	h := newHuman() // never quits: no reader
	var screen, out bytes.Buffer
	require.NoError(t, play(context.Background(), match{local: true, points: 2, tick: 1e6}, &out, h, &screen))
	require.Contains(t, out.String(), "final score")
	require.Regexp(t, ` you (2 : \d|\d : 2) bot`, screen.String())
	require.Contains(t, screen.String(), "relay: connected")
}
