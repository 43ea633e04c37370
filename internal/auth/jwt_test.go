package auth

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSignConnectClaimsRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	in := ConnectClaims{User: "node-1", ExpireAt: now.Add(10 * time.Minute).Unix(),
		Info: json.RawMessage(`{"kind":"node"}`), Channels: []string{"nodes:node-1", "chunks:node-1", "nodes:online"}}
	tok, err := SignConnectClaims("s3cret", in, now)
	require.NoError(t, err)
	v := NewTokenVerifier("s3cret", "", "")
	v.now = func() time.Time { return now.Add(time.Minute) }
	got, err := v.VerifyConnect(tok)
	require.NoError(t, err)
	require.Equal(t, in, got)

	v.now = func() time.Time { return now.Add(11 * time.Minute) }
	_, err = v.VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenExpired)

	_, err = NewTokenVerifier("other", "", "").VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenInvalid)
	_, err = SignConnectClaims("", in, now)
	require.Error(t, err)

	plain, err := SignConnect("s3cret", "u", 0, now)
	require.NoError(t, err)
	c, err := NewTokenVerifier("s3cret", "", "").VerifyConnect(plain)
	require.NoError(t, err)
	require.Equal(t, ConnectClaims{User: "u"}, c)
}
