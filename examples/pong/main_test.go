package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The whole game through an in-process relay, sped up.
func TestPongLocal(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run("", "", true, 2, time.Millisecond, &out))
	s := out.String()
	require.Contains(t, s, "first to 2")
	require.True(t, strings.Contains(s, "final score 2:") || strings.Contains(s, ":2\n"), s)
	require.Contains(t, s, "final score")
}

func TestPongNeedsPin(t *testing.T) {
	require.ErrorContains(t, run("127.0.0.1:1", "xyz", false, 1, time.Millisecond, &bytes.Buffer{}), "-pin")
}
