package scheduler

import (
	"crypto/ed25519"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClaimCodeVectors(t *testing.T) {
	require.Equal(t, "MZUHVL", ClaimCode(make([]byte, 32)))
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	require.Equal(t, "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=", base64.StdEncoding.EncodeToString(pub))
	require.Equal(t, "MW3AM4", ClaimCode(pub))
}

func TestNormalizeClaimCode(t *testing.T) {
	for in, want := range map[string]string{"mw3am4": "MW3AM4", "MW3-AM4": "MW3AM4", " mw-3a-m4 ": "MW3AM4", "": ""} {
		require.Equal(t, want, NormalizeClaimCode(in), in)
	}
}
