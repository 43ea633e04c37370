package client

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

// ErrInvalidKey is wrapped by every error returned for a malformed private
// key (wrong length, not hex, zero or not below the curve order).
var ErrInvalidKey = errors.New("client: invalid private key")

// PrivateKey is a secp256k1 private key used to authenticate to circles. It is
// immutable and safe for concurrent use.
type PrivateKey struct {
	k *secp256k1.PrivateKey
}

// GeneratePrivateKey returns a new random private key read from crypto/rand.
func GeneratePrivateKey() (*PrivateKey, error) {
	k, err := secp256k1.GeneratePrivateKeyFromRand(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client: generate key: %w", err)
	}
	return &PrivateKey{k: k}, nil
}

// ParsePrivateKey parses a 32-byte private key written as 64 hex digits,
// optionally prefixed with "0x" and surrounded by white space. The scalar
// must lie in [1, n-1]; anything else yields an error wrapping ErrInvalidKey.
func ParsePrivateKey(s string) (*PrivateKey, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 64 {
		return nil, fmt.Errorf("%w: want 64 hex digits, got %d characters", ErrInvalidKey, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not hex", ErrInvalidKey)
	}
	var scalar secp256k1.ModNScalar
	if overflow := scalar.SetByteSlice(b); overflow {
		return nil, fmt.Errorf("%w: not below the curve order", ErrInvalidKey)
	}
	if scalar.IsZero() {
		return nil, fmt.Errorf("%w: zero", ErrInvalidKey)
	}
	return &PrivateKey{k: secp256k1.NewPrivateKey(&scalar)}, nil
}

// Hex returns the private key as 64 lowercase hex digits without prefix.
func (k *PrivateKey) Hex() string {
	b := k.k.Serialize()
	return hex.EncodeToString(b)
}

// PublicKeyCompressed returns the public key in compressed SEC1 form as 66 hex
// digits (02… or 03…), the encoding used for circle keys.
func (k *PrivateKey) PublicKeyCompressed() string {
	return hex.EncodeToString(k.k.PubKey().SerializeCompressed())
}

// PublicKeyUncompressed returns the public key in uncompressed SEC1 form as
// 130 hex digits (04…), the encoding the client sends when authenticating.
func (k *PrivateKey) PublicKeyUncompressed() string {
	return hex.EncodeToString(k.k.PubKey().SerializeUncompressed())
}

// SignPersonal signs msg Ethereum personal-sign style (package eip191) and
// returns the 65-byte signature r‖s‖v with v in {27, 28}. Signing is
// deterministic (RFC 6979).
func (k *PrivateKey) SignPersonal(msg []byte) []byte { return eip191.Sign(k.k, msg) }
