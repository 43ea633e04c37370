package auth

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenSignerRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	in := ConnectClaims{User: "node-1", ExpireAt: now.Add(10 * time.Minute).Unix(),
		Info: json.RawMessage(`{"kind":"node"}`), Channels: []string{"nodes:node-1", "chunks:node-1", "nodes:online"}}
	tok, err := NewTokenSigner("s3cret", "hub", "me").SignConnect(in, now)
	require.NoError(t, err)
	v := NewTokenVerifier("s3cret", "hub", "me")
	v.now = func() time.Time { return now.Add(time.Minute) }
	got, err := v.VerifyConnect(tok)
	require.NoError(t, err)
	require.Equal(t, in, got)

	v.now = func() time.Time { return now.Add(11 * time.Minute) }
	_, err = v.VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenExpired)
	v.now = func() time.Time { return now }

	_, err = NewTokenVerifier("other", "", "").VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenInvalid)
	wrongAud := NewTokenVerifier("s3cret", "other", "")
	wrongAud.now = v.now
	_, err = wrongAud.VerifyConnect(tok)
	require.ErrorIs(t, err, ErrTokenInvalid, "audience checked")
	_, err = NewTokenSigner("", "", "").SignConnect(in, now)
	require.Error(t, err)

	plain, err := SignConnect("s3cret", "u", 0, now)
	require.NoError(t, err)
	c, err := NewTokenVerifier("s3cret", "", "").VerifyConnect(plain)
	require.NoError(t, err)
	require.Equal(t, ConnectClaims{User: "u"}, c)
}

func TestPresentedAPIKeyAndBearer(t *testing.T) {
	require.Equal(t, "k1", PresentedAPIKey("k1", "apikey k2"))
	require.Equal(t, "k2", PresentedAPIKey("", "ApiKey  k2 "))
	require.Equal(t, "", PresentedAPIKey("", "Bearer k2"))
	require.Equal(t, "", PresentedAPIKey("", "apikey"))
	require.Equal(t, "t", BearerToken("bearer t"))
	require.Equal(t, "", BearerToken("apikey t"))
	require.Equal(t, "", BearerToken("Bearer"))
}

func TestTokenSignerSubscribe(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	in := SubscribeClaims{User: "alice", Channel: "jobs:j1", ExpireAt: now.Add(time.Minute).Unix()}
	tok, err := NewTokenSigner("s3cret", "", "").SignSubscribe(in, now)
	require.NoError(t, err)
	v := NewTokenVerifier("s3cret", "", "")
	v.now = func() time.Time { return now }
	got, err := v.VerifySubscribe(tok)
	require.NoError(t, err)
	require.Equal(t, in, got)
	_, err = NewTokenSigner("", "", "").SignSubscribe(in, now)
	require.Error(t, err)
}
