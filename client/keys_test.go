package client_test

import (
	"encoding/hex"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol/eip191"
)

// The web3.js documentation example for eth.accounts.sign.
func TestSignPersonalKnownVector(t *testing.T) {
	k, err := client.ParsePrivateKey("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
	if err != nil {
		t.Fatal(err)
	}
	want := "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
	if got := hex.EncodeToString(k.SignPersonal([]byte("Some data"))); got != want {
		t.Fatalf("signature = %s, want %s", got, want)
	}
}

func TestSignPersonalRecovers(t *testing.T) {
	for i := 0; i < 20; i++ {
		k := mustKey(t)
		msg := []byte(hex.EncodeToString([]byte{byte(i)}) + "-nonce")
		sig := k.SignPersonal(msg)
		if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
			t.Fatalf("sig %x: want 65 bytes ending in 27/28", sig)
		}
		b, _ := hex.DecodeString(k.PublicKeyUncompressed())
		pk, err := secp256k1.ParsePubKey(b)
		if err != nil {
			t.Fatal(err)
		}
		if !eip191.Verify(pk, msg, sig) {
			t.Fatal("signature does not recover to the signer")
		}
		if eip191.Verify(pk, append(msg, 'x'), sig) {
			t.Fatal("signature verified for another message")
		}
	}
}

func TestKeyEncodings(t *testing.T) {
	k, err := client.ParsePrivateKey(" 0000000000000000000000000000000000000000000000000000000000000001\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := k.PublicKeyCompressed(); got != "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798" {
		t.Fatal(got)
	}
	if got := k.PublicKeyUncompressed(); len(got) != 130 || got[:2] != "04" {
		t.Fatal(got)
	}
	if got := k.Hex(); got != "0000000000000000000000000000000000000000000000000000000000000001" {
		t.Fatal(got)
	}
	k2, err := client.ParsePrivateKey(mustKey(t).Hex())
	if err != nil || len(k2.Hex()) != 64 {
		t.Fatalf("round trip: %v", err)
	}
}
