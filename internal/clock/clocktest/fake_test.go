package clocktest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAdvanceRunsDueTimersInOrder(t *testing.T) {
	f := New(time.Unix(100, 0))
	var got []string
	f.AfterFunc(2*time.Second, func() { got = append(got, "b@"+f.Now().Format("05")) })
	f.AfterFunc(time.Second, func() { got = append(got, "a@"+f.Now().Format("05")) })
	stopped := f.AfterFunc(time.Second, func() { got = append(got, "stopped") })
	require.True(t, stopped.Stop())
	f.Advance(1500 * time.Millisecond)
	require.Equal(t, []string{"a@41"}, got)
	f.Advance(time.Second)
	require.Equal(t, []string{"a@41", "b@42"}, got)
	require.Equal(t, time.Unix(102, 500e6), f.Now())
	require.Zero(t, f.Pending())
}

func TestCallbackMayRearm(t *testing.T) {
	f := New(time.Unix(0, 0))
	n := 0
	var tm interface{ Reset(time.Duration) bool }
	tm = f.AfterFunc(time.Second, func() { n++; tm.Reset(time.Second) })
	f.Advance(5 * time.Second)
	require.Equal(t, 5, n)
	require.Equal(t, 1, f.Pending())
}
