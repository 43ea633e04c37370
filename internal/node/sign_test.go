package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test vector of PROTOCOLS.md, "Compute scheduler".
func TestSignVector(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	key := ed25519.NewKeyFromSeed(seed)
	body := []byte(`{"hostname":"h","totalCores":8,"enabledCores":4,"platform":"linux-x86_64","version":"0.1.0"}`)
	sum := sha256.Sum256(body)
	require.Equal(t, "90452544ce5e488505ffec14551ea04cd39803d74edf86491e2b45349cfd9d08", hex.EncodeToString(sum[:]))
	h := http.Header{}
	Sign(h, key, 1700000000, "POST", "/nodes/register", body)
	require.Equal(t, "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=", h.Get(HeaderKey))
	require.Equal(t, "1700000000", h.Get(HeaderTS))
	require.Equal(t, "qkdHSsfQwPeGCJweSYBPeQP1p6IfsNtW2XeXbFO6uHpC2uFZJLGY1BqhJoCtzkn1Hhq+vJqQdIJp5s/ONepbAw==", h.Get(HeaderSig))
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "node.key")
	k1, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	require.True(t, created)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	k2, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	require.False(t, created)
	require.True(t, k1.Equal(k2), "the same key comes back")

	require.NoError(t, os.Chmod(path, 0o644))
	_, _, err = LoadOrCreateKey(path)
	require.ErrorContains(t, err, "mode 0644")
	require.ErrorContains(t, err, "chmod 600")

	bad := filepath.Join(t.TempDir(), "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("hello"), 0o600))
	_, _, err = LoadOrCreateKey(bad)
	require.ErrorContains(t, err, "PRIVATE KEY")
}

func FuzzParseKey(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(nil)
	good, _ := MarshalKey(k)
	f.Add(good)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err == nil && len(k) != ed25519.PrivateKeySize {
			t.Fatalf("parsed a key of %d bytes", len(k))
		}
	})
}

// An identical request in the same second waits for the next one (so it
// gets another signature); different requests go at once.
func TestStamperAvoidsReplays(t *testing.T) {
	var s stamper
	now := time.Unix(1000, 250e6)
	ts, wait := s.reserve(now, "POST", "/nodes/heartbeat", []byte("{}"))
	require.Equal(t, int64(1000), ts)
	require.Zero(t, wait)
	ts, wait = s.reserve(now, "POST", "/nodes/heartbeat", []byte("{}"))
	require.Equal(t, int64(1001), ts)
	require.Equal(t, 750*time.Millisecond, wait)
	ts, wait = s.reserve(now, "POST", "/chunks/progress", []byte("{}"))
	require.Equal(t, int64(1000), ts)
	require.Zero(t, wait)
	ts, wait = s.reserve(now.Add(2*time.Second), "POST", "/nodes/heartbeat", []byte("{}"))
	require.Equal(t, int64(1002), ts, "no drift: a later request takes the clock's second")
	require.Zero(t, wait)
}
