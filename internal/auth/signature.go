package auth

import (
	"crypto/ed25519"
	"fmt"
	"strconv"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"golang.org/x/crypto/sha3"
)

// personalPrefix starts every Ethereum personal-sign (EIP-191 version 0x45)
// message.
const personalPrefix = "\x19Ethereum Signed Message:\n"

// PersonalHash returns keccak256("\x19Ethereum Signed Message:\n" +
// decimal len(msg) + msg), the digest Ethereum wallets sign for
// personal_sign / eth_sign.
func PersonalHash(msg []byte) []byte {
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(personalPrefix))
	h.Write([]byte(strconv.Itoa(len(msg))))
	h.Write(msg)
	return h.Sum(nil)
}

// SignPersonal signs msg Ethereum personal-sign style and returns the 65
// byte signature r‖s‖v with v in {27, 28}. It is deterministic (RFC 6979).
func SignPersonal(priv *secp256k1.PrivateKey, msg []byte) []byte {
	compact := ecdsa.SignCompact(priv, PersonalHash(msg), false)
	// compact is <27+recid>‖r‖s; Ethereum wants r‖s‖v.
	out := make([]byte, 65)
	copy(out, compact[1:])
	out[64] = compact[0]
	return out
}

// RecoverPersonal recovers the secp256k1 public key that produced sig, a 65
// byte r‖s‖v personal-sign signature over msg with v in {27, 28} or {0, 1}.
// Errors wrap ErrInvalidSignature.
func RecoverPersonal(msg, sig []byte) (PublicKey, error) {
	if len(sig) != 65 {
		return PublicKey{}, fmt.Errorf("%w: want 65 bytes, got %d", ErrInvalidSignature, len(sig))
	}
	v := sig[64]
	switch {
	case v == 27 || v == 28:
		v -= 27
	case v == 0 || v == 1:
	default:
		return PublicKey{}, fmt.Errorf("%w: recovery id %d not in {0,1,27,28}", ErrInvalidSignature, sig[64])
	}
	var compact [65]byte
	compact[0] = 27 + v // recover as uncompressed; the point is the same
	copy(compact[1:], sig[:64])
	pk, _, err := ecdsa.RecoverCompact(compact[:], PersonalHash(msg))
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	return secpKey(pk), nil
}

// VerifySignature checks that sigHex (hex, optional 0x prefix) is a valid
// signature by key over msg: for secp256k1 keys an Ethereum personal-sign
// signature verified by public-key recovery, for Ed25519 keys a 64-byte
// signature over msg itself. It returns nil or an error wrapping
// ErrInvalidSignature.
func VerifySignature(key PublicKey, msg []byte, sigHex string) error {
	sig, err := decodeHex(sigHex)
	if err != nil {
		return fmt.Errorf("%w: not hex", ErrInvalidSignature)
	}
	switch key.typ {
	case KeySecp256k1:
		got, err := RecoverPersonal(msg, sig)
		if err != nil {
			return err
		}
		if got != key {
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
