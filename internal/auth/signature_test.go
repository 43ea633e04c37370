package auth

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/sha3"

	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

// web3.js documentation vector: accounts.sign("Some data", key).
const (
	vecPriv = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
	vecHash = "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
	vecSig  = "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
	vecAddr = "2c7536e3605d9c16a7a3d7b1898e529396a65c23"
)

func ethAddress(pk *secp256k1.PublicKey) string {
	h := sha3.NewLegacyKeccak256()
	h.Write(pk.SerializeUncompressed()[1:])
	return hex.EncodeToString(h.Sum(nil)[12:])
}

func TestPersonalSignVector(t *testing.T) {
	b, _ := hex.DecodeString(vecPriv)
	priv := secp256k1.PrivKeyFromBytes(b)
	require.Equal(t, vecAddr, ethAddress(priv.PubKey()))
	require.Equal(t, vecHash, hex.EncodeToString(eip191.Hash([]byte("Some data"))))
	require.Equal(t, vecSig, hex.EncodeToString(eip191.Sign(priv, []byte("Some data"))))

	key := Secp256k1PublicKeyOf(priv.PubKey())
	require.NoError(t, VerifySignature(key, []byte("Some data"), "0x"+vecSig))
	require.NoError(t, VerifySignature(key, []byte("Some data"), strings.ToUpper(vecSig)))
	// v as 0/1
	raw, _ := hex.DecodeString(vecSig)
	raw[64] -= 27
	require.NoError(t, VerifySignature(key, []byte("Some data"), hex.EncodeToString(raw)))
	// v = 2 rejected
	raw[64] = 2
	require.ErrorIs(t, VerifySignature(key, []byte("Some data"), hex.EncodeToString(raw)), ErrInvalidSignature)
	// other message
	require.ErrorIs(t, VerifySignature(key, []byte("Some datA"), vecSig), ErrInvalidSignature)
}

func TestParsePublicKeyEncodings(t *testing.T) {
	priv, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	comp := hex.EncodeToString(priv.PubKey().SerializeCompressed())
	unc := hex.EncodeToString(priv.PubKey().SerializeUncompressed())
	a, err := ParsePublicKey(comp)
	require.NoError(t, err)
	b, err := ParsePublicKey("0x" + strings.ToUpper(unc))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, comp, b.String())
	require.Equal(t, KeySecp256k1, a.Type())

	sig := eip191.Sign(priv, []byte("nonce"))
	require.NoError(t, VerifySignature(b, []byte("nonce"), hex.EncodeToString(sig)))

	for _, bad := range []string{"", "02", "zz" + comp[2:], "05" + comp[2:], comp + "00", "04" + strings.Repeat("00", 64)} {
		_, err := ParsePublicKey(bad)
		require.ErrorIs(t, err, ErrInvalidPublicKey, bad)
	}
	_, err = ParseSecp256k1PublicKey(strings.Repeat("ab", 32))
	require.ErrorIs(t, err, ErrInvalidPublicKey)
}

func TestEd25519(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	key, err := ParsePublicKey(hex.EncodeToString(pub))
	require.NoError(t, err)
	require.Equal(t, KeyEd25519, key.Type())
	require.Equal(t, Ed25519PublicKeyOf(pub), key)
	sig := ed25519.Sign(priv, []byte("n1"))
	require.NoError(t, VerifySignature(key, []byte("n1"), "0x"+hex.EncodeToString(sig)))
	require.ErrorIs(t, VerifySignature(key, []byte("n2"), hex.EncodeToString(sig)), ErrInvalidSignature)
	require.ErrorIs(t, VerifySignature(key, []byte("n1"), hex.EncodeToString(sig[:10])), ErrInvalidSignature)
	require.ErrorIs(t, VerifySignature(key, []byte("n1"), "xyz"), ErrInvalidSignature)
}

func TestVerifyGarbage(t *testing.T) {
	b, _ := hex.DecodeString(vecPriv)
	key := Secp256k1PublicKeyOf(secp256k1.PrivKeyFromBytes(b).PubKey())
	err := VerifySignature(key, []byte("x"), hex.EncodeToString(make([]byte, 65)))
	require.True(t, errors.Is(err, ErrInvalidSignature))
	require.True(t, errors.Is(err, eip191.ErrInvalidSignature))
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("Some data", vecSig)
	f.Add("", "0x")
	f.Add("n", strings.Repeat("ff", 65))
	b, _ := hex.DecodeString(vecPriv)
	key := Secp256k1PublicKeyOf(secp256k1.PrivKeyFromBytes(b).PubKey())
	f.Fuzz(func(t *testing.T, msg, sig string) {
		err := VerifySignature(key, []byte(msg), sig)
		if err != nil && !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
