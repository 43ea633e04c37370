package auth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue's tokens verify with the same secret, audience and issuer and carry
// the channels claim; SignConnect's carry neither channels nor aud/iss.
func TestIssue(t *testing.T) {
	now := time.Now()
	tok, err := Issue("s3cret", TokenSpec{User: "alice", Channels: []string{"a:1", "b:2"}, Audience: "aud", Issuer: "iss", TTL: time.Minute}, now)
	require.NoError(t, err)
	c, err := NewTokenVerifier("s3cret", "aud", "iss").VerifyConnect(tok)
	require.NoError(t, err)
	require.Equal(t, "alice", c.User)
	require.Equal(t, []string{"a:1", "b:2"}, c.Channels)
	require.Equal(t, now.Add(time.Minute).Unix(), c.ExpireAt)

	_, err = NewTokenVerifier("other", "aud", "iss").VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenInvalid)
	_, err = NewTokenVerifier("s3cret", "other", "").VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenInvalid)

	plain, err := SignConnect("s3cret", "bob", 0, now)
	require.NoError(t, err)
	c, err = NewTokenVerifier("s3cret", "", "").VerifyConnect(plain)
	require.NoError(t, err)
	require.Equal(t, ConnectClaims{User: "bob"}, c)

	_, err = Issue("", TokenSpec{User: "x"}, now)
	require.Error(t, err)
	expired, err := Issue("s3cret", TokenSpec{User: "x", TTL: time.Second}, now.Add(-time.Hour))
	require.NoError(t, err)
	_, err = NewTokenVerifier("s3cret", "", "").VerifyConnect(expired)
	require.ErrorIs(t, err, ErrTokenExpired)
}
