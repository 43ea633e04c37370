package auth

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Sentinel errors of public key parsing and signature verification.
var (
	ErrInvalidPublicKey = &errs.Error{Code: errs.Invalid, Reason: "invalid public key", Message: "auth: invalid public key"}
	ErrInvalidSignature = &errs.Error{Code: errs.Unauthorized, Reason: "invalid signature", Message: "auth: invalid signature"}
)

// KeyType tells which signature scheme a PublicKey belongs to.
type KeyType uint8

// Key types.
const (
	KeySecp256k1 KeyType = iota + 1
	KeyEd25519
)

// String returns "secp256k1" or "ed25519".
func (t KeyType) String() string {
	switch t {
	case KeySecp256k1:
		return "secp256k1"
	case KeyEd25519:
		return "ed25519"
	}
	return "unknown"
}

// PublicKey is a parsed secp256k1 or Ed25519 public key. The zero value is
// not a valid key. PublicKey values are immutable and comparable: two
// PublicKeys are == exactly when they denote the same key, whatever
// encoding they were parsed from.
type PublicKey struct {
	typ KeyType
	hex string // canonical: compressed lowercase hex (secp256k1) or lowercase hex (ed25519)
}

// Type returns the key's signature scheme.
func (k PublicKey) Type() KeyType { return k.typ }

// String returns the canonical encoding: for secp256k1 the compressed
// point as 66 lowercase hex characters, for Ed25519 the 32 key bytes as 64
// lowercase hex characters; never a 0x prefix.
func (k PublicKey) String() string { return k.hex }

// IsZero reports whether k is the zero value.
func (k PublicKey) IsZero() bool { return k.typ == 0 }

// ParsePublicKey parses a public key in hex, with or without a 0x prefix,
// case-insensitive: 66 characters (compressed secp256k1), 130 characters
// (uncompressed secp256k1) or 64 characters (Ed25519). The secp256k1 point
// must be on the curve. Errors wrap ErrInvalidPublicKey.
func ParsePublicKey(s string) (PublicKey, error) {
	h := trim0x(s)
	switch len(h) {
	case 66, 130:
		return ParseSecp256k1PublicKey(s)
	case 64:
		b, err := hex.DecodeString(h)
		if err != nil {
			return PublicKey{}, fmt.Errorf("%w: not hex", ErrInvalidPublicKey)
		}
		return PublicKey{typ: KeyEd25519, hex: hex.EncodeToString(b)}, nil
	}
	return PublicKey{}, fmt.Errorf("%w: want 66 or 130 hex characters (secp256k1) or 64 (ed25519), got %d", ErrInvalidPublicKey, len(h))
}

// ParseSecp256k1PublicKey is ParsePublicKey restricted to secp256k1 keys
// (66 or 130 hex characters).
func ParseSecp256k1PublicKey(s string) (PublicKey, error) {
	h := trim0x(s)
	if len(h) != 66 && len(h) != 130 {
		return PublicKey{}, fmt.Errorf("%w: want 66 or 130 hex characters, got %d", ErrInvalidPublicKey, len(h))
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: not hex", ErrInvalidPublicKey)
	}
	pk, err := secp256k1.ParsePubKey(b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	return secpKey(pk), nil
}

// CanonicalSecp256k1Hex checks the form of a hex secp256k1 public key
// (optional 0x, any case, 66 characters 02/03… or 130 characters 04…) and
// returns its compressed encoding in lowercase hex, the canonical form of
// PublicKey.String. It does not check that the point is on the curve
// (ParseSecp256k1PublicKey does); it lets callers without that cost, such
// as configuration validation, see that two encodings name the same key.
// Errors wrap ErrInvalidPublicKey.
func CanonicalSecp256k1Hex(s string) (string, error) {
	h := strings.ToLower(trim0x(strings.TrimSpace(s)))
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", fmt.Errorf("%w: not hex", ErrInvalidPublicKey)
	}
	switch {
	case len(b) == 33 && (b[0] == 2 || b[0] == 3):
		return h, nil
	case len(b) == 65 && b[0] == 4:
		prefix := "02"
		if b[64]&1 == 1 {
			prefix = "03"
		}
		return prefix + h[2:66], nil
	}
	return "", fmt.Errorf("%w: want 66 hex characters starting 02 or 03, or 130 starting 04", ErrInvalidPublicKey)
}

func secpKey(pk *secp256k1.PublicKey) PublicKey {
	return PublicKey{typ: KeySecp256k1, hex: hex.EncodeToString(pk.SerializeCompressed())}
}

// Secp256k1PublicKeyOf returns the PublicKey of a secp256k1 key.
func Secp256k1PublicKeyOf(pk *secp256k1.PublicKey) PublicKey { return secpKey(pk) }

// Ed25519PublicKeyOf returns the PublicKey of an Ed25519 key; it panics if
// pk does not have ed25519.PublicKeySize bytes.
func Ed25519PublicKeyOf(pk ed25519.PublicKey) PublicKey {
	if len(pk) != ed25519.PublicKeySize {
		panic("auth: bad ed25519 public key length")
	}
	return PublicKey{typ: KeyEd25519, hex: hex.EncodeToString(pk)}
}

func trim0x(s string) string {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}

// decodeHex decodes hex with an optional 0x prefix.
func decodeHex(s string) ([]byte, error) {
	return hex.DecodeString(strings.TrimSpace(trim0x(s)))
}
