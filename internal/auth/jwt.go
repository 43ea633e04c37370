package auth

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Sentinel errors of token verification.
var (
	ErrTokenInvalid = &errs.Error{Code: errs.Unauthorized, Reason: "invalid token", Message: "auth: invalid token"}
	ErrTokenExpired = &errs.Error{Code: errs.Unauthorized, Reason: "token expired", Message: "auth: token expired"}
)

// ConnectClaims are the claims of a Centrifugo-style connection token.
type ConnectClaims struct {
	User     string          // "sub"
	ExpireAt int64           // "exp" in unix seconds, 0 = never
	Info     json.RawMessage // "info", optional
	Channels []string        // "channels": server-side subscriptions
}

type connectClaims struct {
	Info     json.RawMessage `json:"info,omitempty"`
	B64Info  string          `json:"b64info,omitempty"`
	Channels []string        `json:"channels,omitempty"`
	jwt.RegisteredClaims
}

// TokenVerifier checks HS256 tokens signed with one shared secret. It is
// safe for concurrent use.
type TokenVerifier struct {
	secret   []byte
	audience string
	issuer   string
	now      func() time.Time
}

// NewTokenVerifier returns a verifier for tokens signed with secret. Empty
// audience or issuer means the claim is not checked.
func NewTokenVerifier(secret, audience, issuer string) *TokenVerifier {
	return &TokenVerifier{secret: []byte(secret), audience: audience, issuer: issuer, now: time.Now}
}

// VerifyConnect parses and verifies a connection token. It returns
// ErrTokenExpired for a token past its exp and ErrTokenInvalid (wrapped
// with the reason) for anything else wrong.
func (v *TokenVerifier) VerifyConnect(token string) (ConnectClaims, error) {
	if len(v.secret) == 0 {
		return ConnectClaims{}, fmt.Errorf("%w: no token secret configured", ErrTokenInvalid)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}),
		jwt.WithTimeFunc(v.now),
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	var c connectClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil }, opts...)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return ConnectClaims{}, ErrTokenExpired
		}
		return ConnectClaims{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	out := ConnectClaims{User: c.Subject, Info: c.Info, Channels: c.Channels}
	if c.ExpiresAt != nil {
		out.ExpireAt = c.ExpiresAt.Unix()
	}
	return out, nil
}

// SignConnect creates an HS256 connection token for user, valid for ttl
// (0 = no expiry). It backs `switchboard gentoken`.
func SignConnect(secret, user string, ttl time.Duration, now time.Time) (string, error) {
	c := ConnectClaims{User: user}
	if ttl > 0 {
		c.ExpireAt = now.Add(ttl).Unix()
	}
	return NewTokenSigner(secret, "", "").SignConnect(c, now)
}

// TokenSigner mints HS256 connection tokens that a TokenVerifier with the
// same secret, audience and issuer accepts. It is safe for concurrent use.
type TokenSigner struct {
	secret   []byte
	audience string
	issuer   string
}

// NewTokenSigner returns a signer; a non-empty audience or issuer is put
// into every token's aud or iss claim.
func NewTokenSigner(secret, audience, issuer string) *TokenSigner {
	return &TokenSigner{secret: []byte(secret), audience: audience, issuer: issuer}
}

// SignConnect creates a connection token with c's claims: sub, exp (0 =
// none), info and channels (server-side subscriptions, which bypass
// namespace permissions), plus iat = now and the signer's aud and iss.
// VerifyConnect of the matching verifier returns c.
func (s *TokenSigner) SignConnect(c ConnectClaims, now time.Time) (string, error) {
	if len(s.secret) == 0 {
		return "", errors.New("auth: empty secret")
	}
	claims := connectClaims{Info: c.Info, Channels: c.Channels,
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.User, Issuer: s.issuer, IssuedAt: jwt.NewNumericDate(now)}}
	if s.audience != "" {
		claims.Audience = jwt.ClaimStrings{s.audience}
	}
	if c.ExpireAt > 0 {
		claims.ExpiresAt = jwt.NewNumericDate(time.Unix(c.ExpireAt, 0))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
}

// EqualSecret compares a presented secret with the expected one in
// constant time. An empty expected secret never matches.
func EqualSecret(expected, presented string) bool {
	if expected == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(expected), []byte(presented)) == 1
}

// SubscribeClaims are the claims of a subscription token.
type SubscribeClaims struct {
	User     string
	Channel  string
	ExpireAt int64
	Info     json.RawMessage
}

type subscribeClaims struct {
	Channel string          `json:"channel"`
	Info    json.RawMessage `json:"info,omitempty"`
	jwt.RegisteredClaims
}

// VerifySubscribe parses and verifies a subscription token (claims sub,
// channel, exp, info), with the same errors as VerifyConnect.
func (v *TokenVerifier) VerifySubscribe(token string) (SubscribeClaims, error) {
	if len(v.secret) == 0 {
		return SubscribeClaims{}, fmt.Errorf("%w: no token secret configured", ErrTokenInvalid)
	}
	var c subscribeClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil },
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}), jwt.WithTimeFunc(v.now))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return SubscribeClaims{}, ErrTokenExpired
		}
		return SubscribeClaims{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	out := SubscribeClaims{User: c.Subject, Channel: c.Channel, Info: c.Info}
	if c.ExpiresAt != nil {
		out.ExpireAt = c.ExpiresAt.Unix()
	}
	return out, nil
}

// SignSubscribe creates a subscription token for c.User to c.Channel
// (claims sub, channel, exp (0 = none), info, iat = now, and the signer's
// aud and iss). The hub accepts it on subscribe from a connection of that
// user whatever the namespace's permissions; VerifySubscribe of the
// matching verifier returns c.
func (s *TokenSigner) SignSubscribe(c SubscribeClaims, now time.Time) (string, error) {
	if len(s.secret) == 0 {
		return "", errors.New("auth: empty secret")
	}
	claims := subscribeClaims{Channel: c.Channel, Info: c.Info,
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.User, Issuer: s.issuer, IssuedAt: jwt.NewNumericDate(now)}}
	if s.audience != "" {
		claims.Audience = jwt.ClaimStrings{s.audience}
	}
	if c.ExpireAt > 0 {
		claims.ExpiresAt = jwt.NewNumericDate(time.Unix(c.ExpireAt, 0))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
}

// PresentedAPIKey returns the server API key a request presents: the
// X-API-Key header's value, else the KEY of "Authorization: apikey KEY"
// (scheme case-insensitive); "" when neither is there. Compare the result
// with EqualSecret.
func PresentedAPIKey(xAPIKey, authorization string) string {
	if xAPIKey != "" {
		return xAPIKey
	}
	if len(authorization) > 7 && strings.EqualFold(authorization[:7], "apikey ") {
		return strings.TrimSpace(authorization[7:])
	}
	return ""
}

// BearerToken returns the token of "Authorization: Bearer TOKEN" (scheme
// case-insensitive), or "" when authorization is not of that form.
func BearerToken(authorization string) string {
	if len(authorization) > 7 && strings.EqualFold(authorization[:7], "bearer ") {
		return strings.TrimSpace(authorization[7:])
	}
	return ""
}
