package eip191_test

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
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

func TestKnownVector(t *testing.T) {
	b, _ := hex.DecodeString(vecPriv)
	priv := secp256k1.PrivKeyFromBytes(b)
	if got := ethAddress(priv.PubKey()); got != vecAddr {
		t.Fatalf("address %s", got)
	}
	msg := []byte("Some data")
	if got := hex.EncodeToString(eip191.Hash(msg)); got != vecHash {
		t.Fatalf("hash %s", got)
	}
	sig := eip191.Sign(priv, msg)
	if got := hex.EncodeToString(sig); got != vecSig {
		t.Fatalf("signature %s", got)
	}
	pk, err := eip191.Recover(msg, sig)
	if err != nil || !pk.IsEqual(priv.PubKey()) {
		t.Fatalf("recover: %v", err)
	}
	sig[64] -= 27 // v as 0/1
	if !eip191.Verify(priv.PubKey(), msg, sig) {
		t.Fatal("v in {0,1} must verify")
	}
	if eip191.Verify(priv.PubKey(), []byte("Some datA"), sig) {
		t.Fatal("another message verified")
	}
	sig[64] = 2
	if _, err := eip191.Recover(msg, sig); !errors.Is(err, eip191.ErrInvalidSignature) {
		t.Fatalf("v=2: %v", err)
	}
	if _, err := eip191.Recover(msg, sig[:64]); !errors.Is(err, eip191.ErrInvalidSignature) {
		t.Fatalf("short: %v", err)
	}
	if _, err := eip191.Recover(msg, make([]byte, 65)); !errors.Is(err, eip191.ErrInvalidSignature) {
		t.Fatalf("zero: %v", err)
	}
}

func TestSignRecoversRandomKeys(t *testing.T) {
	for i := 0; i < 20; i++ {
		priv, err := secp256k1.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte{byte(i), 'n'}
		if !eip191.Verify(priv.PubKey(), msg, eip191.Sign(priv, msg)) {
			t.Fatalf("key %d does not verify", i)
		}
	}
}

func FuzzRecover(f *testing.F) {
	sig, _ := hex.DecodeString(vecSig)
	f.Add([]byte("Some data"), sig)
	f.Add([]byte{}, []byte{})
	f.Add([]byte("n"), make([]byte, 65))
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		if _, err := eip191.Recover(msg, sig); err != nil && !errors.Is(err, eip191.ErrInvalidSignature) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
