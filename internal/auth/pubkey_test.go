package auth

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"
)

func TestCanonicalSecp256k1HexMatchesParse(t *testing.T) {
	for i := 0; i < 20; i++ { // both y parities show up
		priv, err := secp256k1.GeneratePrivateKey()
		require.NoError(t, err)
		comp := hex.EncodeToString(priv.PubKey().SerializeCompressed())
		uncomp := hex.EncodeToString(priv.PubKey().SerializeUncompressed())
		for _, form := range []string{comp, uncomp, "0x" + comp, "0X" + strings.ToUpper(uncomp), " " + comp + " "} {
			got, err := CanonicalSecp256k1Hex(form)
			require.NoError(t, err, form)
			require.Equal(t, comp, got, form)
			pk, err := ParseSecp256k1PublicKey(strings.TrimSpace(form))
			require.NoError(t, err, form)
			require.Equal(t, comp, pk.String(), form)
		}
	}
}

func TestCanonicalSecp256k1HexRejects(t *testing.T) {
	for _, s := range []string{"", "0x", "02zz", "02" + strings.Repeat("ab", 31), "05" + strings.Repeat("ab", 32),
		"02" + strings.Repeat("ab", 64), "04" + strings.Repeat("ab", 32)} {
		_, err := CanonicalSecp256k1Hex(s)
		require.ErrorIs(t, err, ErrInvalidPublicKey, s)
	}
}

func FuzzCanonicalSecp256k1Hex(f *testing.F) {
	priv, err := secp256k1.GeneratePrivateKey()
	require.NoError(f, err)
	f.Add(hex.EncodeToString(priv.PubKey().SerializeCompressed()))
	f.Add("0x" + hex.EncodeToString(priv.PubKey().SerializeUncompressed()))
	f.Add("04zz")
	f.Fuzz(func(t *testing.T, s string) {
		canon, cerr := CanonicalSecp256k1Hex(s)
		pk, perr := ParseSecp256k1PublicKey(strings.TrimSpace(s))
		// Every key the full parser accepts in the 02/03/04 forms has the same canonical form.
		h := strings.ToLower(trim0x(strings.TrimSpace(s)))
		if perr == nil && len(h) >= 2 && (h[:2] == "02" || h[:2] == "03" || h[:2] == "04") {
			require.NoError(t, cerr)
			require.Equal(t, pk.String(), canon)
		}
		if cerr == nil {
			require.Len(t, canon, 66)
		}
	})
}
