package scheduler

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
)

const claimAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// ClaimCodeLength is the length of a claim code.
const ClaimCodeLength = 6

// ClaimCode is the origin's claim code of a node key: the first four bytes
// of sha256(key) as a big-endian integer, six base32 characters taken
// from its 5-bit groups at shifts 27, 22, 17, 12, 7 and 2.
func ClaimCode(key []byte) string {
	sum := sha256.Sum256(key)
	v := binary.BigEndian.Uint32(sum[:4])
	var b [ClaimCodeLength]byte
	for i, shift := range [ClaimCodeLength]uint{27, 22, 17, 12, 7, 2} {
		b[i] = claimAlphabet[(v>>shift)&31]
	}
	return string(b[:])
}

// NormalizeClaimCode is how a typed code is looked up: surrounding space
// and '-' removed, upper case ("mw3-am4" → "MW3AM4").
func NormalizeClaimCode(code string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(code), "-", ""))
}
