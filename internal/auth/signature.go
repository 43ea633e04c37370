package auth

import (
	"crypto/ed25519"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

// VerifySignature checks that sigHex (hex, optional 0x prefix) is a valid
// signature by key over msg: for secp256k1 keys an Ethereum personal-sign
// signature (package eip191) verified by public-key recovery, for Ed25519 keys a 64-byte
// signature over msg itself. It returns nil or an error wrapping
// ErrInvalidSignature.
func VerifySignature(key PublicKey, msg []byte, sigHex string) error {
	sig, err := decodeHex(sigHex)
	if err != nil {
		return fmt.Errorf("%w: not hex", ErrInvalidSignature)
	}
	switch key.typ {
	case KeySecp256k1:
		pk, err := eip191.Recover(msg, sig)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
		}
		if secpKey(pk) != key {
			return fmt.Errorf("%w: signed by another key", ErrInvalidSignature)
		}
		return nil
	case KeyEd25519:
		if len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidSignature, ed25519.SignatureSize, len(sig))
		}
		pub, err := decodeHex(key.hex)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: bad ed25519 key", ErrInvalidSignature)
		}
		if !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
			return fmt.Errorf("%w: verification failed", ErrInvalidSignature)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown key type", ErrInvalidSignature)
}
