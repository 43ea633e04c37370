package auth

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestNonceSingleUseAndExpiry(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	s := NewNonceStore(NonceConfig{Now: clk.Now})
	b := NonceBinding{Conn: 1, Circle: "c", PubKey: "k"}
	n, exp, err := s.Issue(b)
	require.NoError(t, err)
	require.Len(t, n, 64)
	require.Equal(t, time.Unix(1000, 0).Add(5*time.Minute), exp)

	got, err := s.Take(b)
	require.NoError(t, err)
	require.Equal(t, n, got)
	_, err = s.Take(b)
	require.ErrorIs(t, err, ErrNonceNotFound)

	// other bindings do not see it
	_, _, err = s.Issue(b)
	require.NoError(t, err)
	for _, o := range []NonceBinding{{Conn: 2, Circle: "c", PubKey: "k"}, {Conn: 1, Circle: "d", PubKey: "k"}, {Conn: 1, Circle: "c", PubKey: "j"}} {
		_, err = s.Take(o)
		require.ErrorIs(t, err, ErrNonceNotFound)
	}
	clk.Add(5 * time.Minute)
	_, err = s.Take(b)
	require.ErrorIs(t, err, ErrNonceExpired)
	require.Equal(t, 0, s.Len())
}

func TestNonceReplaceAndLimits(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	s := NewNonceStore(NonceConfig{Now: clk.Now, MaxNonces: 4, MaxPerConn: 2})
	b := NonceBinding{Conn: 1, Circle: "c", PubKey: "k"}
	n1, _, _ := s.Issue(b)
	n2, _, _ := s.Issue(b)
	require.NotEqual(t, n1, n2)
	require.Equal(t, 1, s.Len())
	_, _, err := s.Issue(NonceBinding{Conn: 1, Circle: "c", PubKey: "k2"})
	require.NoError(t, err)
	_, _, err = s.Issue(NonceBinding{Conn: 1, Circle: "c", PubKey: "k3"})
	require.ErrorIs(t, err, ErrNonceLimit)
	_, _, err = s.Issue(NonceBinding{Conn: 2, Circle: "c", PubKey: "k"})
	require.NoError(t, err)
	_, _, err = s.Issue(NonceBinding{Conn: 3, Circle: "c", PubKey: "k"})
	require.NoError(t, err)
	_, _, err = s.Issue(NonceBinding{Conn: 4, Circle: "c", PubKey: "k"})
	require.ErrorIs(t, err, ErrNonceLimit)
	// expiry frees room: pruned on the next issue
	clk.Add(6 * time.Minute)
	_, _, err = s.Issue(NonceBinding{Conn: 4, Circle: "c", PubKey: "k"})
	require.NoError(t, err)
	require.Equal(t, 1, s.Len())
	s.DropConn(4)
	require.Equal(t, 0, s.Len())
}
