// Package eip191 is Ethereum personal-sign (EIP-191 version 0x45) over
// secp256k1: the signature circles clients make over server nonces. The
// server, the Go SDK and the test fakes all use it; it compiles for
// GOOS=js GOARCH=wasm.
package eip191

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"golang.org/x/crypto/sha3"
)

// SignatureSize is the length of a signature: r‖s‖v.
const SignatureSize = 65

// Prefix starts every personal-sign message.
const Prefix = "\x19Ethereum Signed Message:\n"

// ErrInvalidSignature is wrapped by every Recover error.
var ErrInvalidSignature = errors.New("eip191: invalid signature")

// Hash returns keccak256(Prefix + decimal len(msg) + msg), the digest
// Ethereum wallets sign for personal_sign / eth_sign.
func Hash(msg []byte) []byte {
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(Prefix))
	h.Write([]byte(strconv.Itoa(len(msg))))
	h.Write(msg)
	return h.Sum(nil)
}

// Sign signs msg and returns the 65-byte signature r‖s‖v with v in
// {27, 28}. It is deterministic (RFC 6979).
func Sign(priv *secp256k1.PrivateKey, msg []byte) []byte {
	compact := ecdsa.SignCompact(priv, Hash(msg), false)
	// compact is <27+recid>‖r‖s; Ethereum wants r‖s‖v.
	out := make([]byte, SignatureSize)
	copy(out, compact[1:])
	out[64] = compact[0]
	return out
}

// Recover returns the public key that signed msg with sig (r‖s‖v, v in
// {27, 28} or {0, 1}). Errors wrap ErrInvalidSignature.
func Recover(msg, sig []byte) (*secp256k1.PublicKey, error) {
	if len(sig) != SignatureSize {
		return nil, fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidSignature, SignatureSize, len(sig))
	}
	v := sig[64]
	switch v {
	case 27, 28:
		v -= 27
	case 0, 1:
	default:
		return nil, fmt.Errorf("%w: recovery id %d not in {0,1,27,28}", ErrInvalidSignature, sig[64])
	}
	var compact [SignatureSize]byte
	compact[0] = 27 + v // recover as uncompressed; the point is the same
	copy(compact[1:], sig[:64])
	pk, _, err := ecdsa.RecoverCompact(compact[:], Hash(msg))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	return pk, nil
}

// Verify reports whether sig is pub's signature over msg.
func Verify(pub *secp256k1.PublicKey, msg, sig []byte) bool {
	got, err := Recover(msg, sig)
	return err == nil && got.IsEqual(pub)
}
