package auth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// The PROTOCOLS.md test vector of the origin's node signature.
const (
	vectorKey  = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
	vectorBody = `{"hostname":"h","totalCores":8,"enabledCores":4,"platform":"linux-x86_64","version":"0.1.0"}`
	vectorHash = "90452544ce5e488505ffec14551ea04cd39803d74edf86491e2b45349cfd9d08"
	vectorSig  = "qkdHSsfQwPeGCJweSYBPeQP1p6IfsNtW2XeXbFO6uHpC2uFZJLGY1BqhJoCtzkn1Hhq+vJqQdIJp5s/ONepbAw=="
	vectorTs   = 1700000000
)

func vectorPriv() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func fixedNow(sec int64) func() time.Time { return func() time.Time { return time.Unix(sec, 0) } }

func TestNodeSignatureVector(t *testing.T) {
	sum := sha256.Sum256([]byte(vectorBody))
	require.Equal(t, vectorHash, hex.EncodeToString(sum[:]))
	h := SignNodeRequest(vectorPriv(), vectorTs, "POST", "/nodes/register", []byte(vectorBody))
	require.Equal(t, NodeHeaders{Key: vectorKey, Sig: vectorSig, Ts: "1700000000"}, h)
	require.Equal(t, "1700000000\x00POST\x00/nodes/register\x00"+vectorHash,
		string(NodeMessage("1700000000", "post", "/nodes/register?x=1", []byte(vectorBody))))

	v := NewNodeVerifier(NodeVerifierConfig{Now: fixedNow(vectorTs + 299)})
	key, err := v.Verify(h, "POST", "/nodes/register", []byte(vectorBody))
	require.NoError(t, err)
	require.Equal(t, vectorKey, base64.StdEncoding.EncodeToString(key))
}

func TestNodeVerifyFailures(t *testing.T) {
	priv := vectorPriv()
	body := []byte(vectorBody)
	good := SignNodeRequest(priv, vectorTs, "POST", "/nodes/register", body)
	other := SignNodeRequest(ed25519.NewKeyFromSeed(make([]byte, 32)), vectorTs, "POST", "/nodes/register", body)
	b64 := base64.StdEncoding.EncodeToString
	with := func(f func(*NodeHeaders)) NodeHeaders { h := good; f(&h); return h }
	offCurve := offCurveKey(t)

	cases := []struct {
		name   string
		h      NodeHeaders
		method string
		path   string
		body   []byte
		now    int64
		want   *errs.Error
	}{
		{"missing key", with(func(h *NodeHeaders) { h.Key = "" }), "POST", "/nodes/register", body, vectorTs, ErrMissingNodeKey},
		{"missing sig", with(func(h *NodeHeaders) { h.Sig = " " }), "POST", "/nodes/register", body, vectorTs, ErrMissingNodeSig},
		{"missing ts", with(func(h *NodeHeaders) { h.Ts = "" }), "POST", "/nodes/register", body, vectorTs, ErrMissingNodeTs},
		{"bad ts", with(func(h *NodeHeaders) { h.Ts = "17e8" }), "POST", "/nodes/register", body, vectorTs, ErrInvalidTimestamp},
		{"stale ts", good, "POST", "/nodes/register", body, vectorTs + 301, ErrTimestampExpired},
		{"future ts", good, "POST", "/nodes/register", body, vectorTs - 301, ErrTimestampExpired},
		{"key not base64", with(func(h *NodeHeaders) { h.Key = "not*base64" }), "POST", "/nodes/register", body, vectorTs, ErrInvalidKeyEncoding},
		{"key short", with(func(h *NodeHeaders) { h.Key = b64(make([]byte, 31)) }), "POST", "/nodes/register", body, vectorTs, ErrInvalidKeyLength},
		{"sig not base64", with(func(h *NodeHeaders) { h.Sig = "%%%" }), "POST", "/nodes/register", body, vectorTs, ErrInvalidSignatureEncoding},
		{"sig short", with(func(h *NodeHeaders) { h.Sig = b64(make([]byte, 63)) }), "POST", "/nodes/register", body, vectorTs, ErrInvalidSignatureLength},
		{"body too large", good, "POST", "/nodes/register", make([]byte, DefaultNodeMaxBody+1), vectorTs, ErrNodeBodyTooLarge},
		{"key off curve", with(func(h *NodeHeaders) { h.Key = b64(offCurve) }), "POST", "/nodes/register", body, vectorTs, ErrInvalidNodePublicKey},
		{"wrong key", with(func(h *NodeHeaders) { h.Key = other.Key }), "POST", "/nodes/register", body, vectorTs, ErrInvalidNodeSignature},
		{"tampered body", good, "POST", "/nodes/register", []byte(strings.Replace(vectorBody, "8", "9", 1)), vectorTs, ErrInvalidNodeSignature},
		{"other path", good, "POST", "/nodes/heartbeat", body, vectorTs, ErrInvalidNodeSignature},
		{"other method", good, "PUT", "/nodes/register", body, vectorTs, ErrInvalidNodeSignature},
		{"ts rewritten", with(func(h *NodeHeaders) { h.Ts = "1700000001" }), "POST", "/nodes/register", body, vectorTs, ErrInvalidNodeSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := NewNodeVerifier(NodeVerifierConfig{Now: fixedNow(c.now)})
			_, err := v.Verify(c.h, c.method, c.path, c.body)
			require.ErrorIs(t, err, c.want)
			require.Equal(t, c.want.Message, errs.Find(err).Message, "the message the node sees")
			require.Zero(t, v.ReplayLen(), "failed requests are not remembered")
		})
	}
}

// offCurveKey returns 32 bytes that are no Ed25519 point (y = 2 is one for
// which (y²-1)/(dy²+1) has no square root).
func offCurveKey(t *testing.T) []byte {
	t.Helper()
	for y := byte(2); y < 255; y++ {
		k := make([]byte, 32)
		k[0] = y
		if !validEd25519Point(k) {
			return k
		}
	}
	t.Fatal("no off-curve key found")
	return nil
}

func TestValidEd25519Point(t *testing.T) {
	for i := 0; i < 50; i++ {
		seed := sha256.Sum256([]byte{byte(i)})
		pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
		require.True(t, validEd25519Point(pub), "key %d", i)
	}
	require.True(t, validEd25519Point(make([]byte, 32)), "y = 0 is a point")
	all := make([]byte, 32)
	for i := range all {
		all[i] = 0xff
	}
	require.False(t, validEd25519Point(all), "y >= p is not canonical")
	k := offCurveKey(t)
	sig := make([]byte, 64)
	require.False(t, ed25519.Verify(k, []byte("m"), sig), "crypto/ed25519 refuses it too")
	one := make([]byte, 32)
	one[0], one[31] = 1, 0x80 // y = 1 gives x = 0: the sign bit must be 0
	require.False(t, validEd25519Point(one))
}

func TestNodeVerifyReplay(t *testing.T) {
	now := int64(vectorTs)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Unix(now, 0) }
	v := NewNodeVerifier(NodeVerifierConfig{Now: clock, Skew: 10 * time.Second, MaxReplay: 2})
	priv := vectorPriv()
	sign := func(ts int64, path string) NodeHeaders { return SignNodeRequest(priv, ts, "POST", path, nil) }

	a := sign(vectorTs, "/a")
	_, err := v.Verify(a, "POST", "/a", nil)
	require.NoError(t, err)
	_, err = v.Verify(a, "POST", "/a", nil)
	require.ErrorIs(t, err, ErrReplayedSignature)
	require.Equal(t, "Replayed signature", errs.Find(err).Message)

	_, err = v.Verify(sign(vectorTs, "/b"), "POST", "/b", nil)
	require.NoError(t, err)
	_, err = v.Verify(sign(vectorTs, "/c"), "POST", "/c", nil)
	require.ErrorIs(t, err, ErrReplayCacheFull, "full and nothing expired: fail closed")
	require.Equal(t, errs.Unavailable, errs.CodeOf(err))

	// Past the window the old entries go; the old request is then stale.
	mu.Lock()
	now = vectorTs + 11
	mu.Unlock()
	_, err = v.Verify(sign(now, "/c"), "POST", "/c", nil)
	require.NoError(t, err)
	require.Equal(t, 1, v.ReplayLen())
	_, err = v.Verify(a, "POST", "/a", nil)
	require.ErrorIs(t, err, ErrTimestampExpired)
}

func TestNodeVerifyConcurrentReplayOnce(t *testing.T) {
	v := NewNodeVerifier(NodeVerifierConfig{Now: fixedNow(vectorTs)})
	h := SignNodeRequest(vectorPriv(), vectorTs, "POST", "/nodes/register", []byte(vectorBody))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(h, "POST", "/nodes/register", []byte(vectorBody)); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, ErrReplayedSignature) {
				t.Errorf("unexpected %v", err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, ok, "exactly one of the identical requests passes")
}

// FuzzParseNodeHeaders: any header values give either a decoded set with
// the right sizes or one of the documented errors; never a panic.
func FuzzParseNodeHeaders(f *testing.F) {
	f.Add(vectorKey, vectorSig, "1700000000")
	f.Add("", "", "")
	f.Add(vectorKey, vectorSig, "-1")
	f.Add(vectorKey[:10], vectorSig+"=", " 1700000000 ")
	f.Add("ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ", vectorSig, "99999999999999999999")
	known := map[string]bool{}
	for _, e := range []*errs.Error{ErrMissingNodeKey, ErrMissingNodeSig, ErrMissingNodeTs, ErrInvalidTimestamp,
		ErrInvalidKeyLength, ErrInvalidKeyEncoding, ErrInvalidSignatureLength, ErrInvalidSignatureEncoding} {
		known[e.Message] = true
	}
	v := NewNodeVerifier(NodeVerifierConfig{Now: fixedNow(vectorTs)})
	f.Fuzz(func(t *testing.T, key, sig, ts string) {
		sh, err := ParseNodeHeaders(NodeHeaders{Key: key, Sig: sig, Ts: ts})
		if err != nil {
			if !known[errs.Find(err).Message] {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if len(sh.Key) != ed25519.PublicKeySize || len(sh.Sig) != ed25519.SignatureSize || sh.TsText != strings.TrimSpace(ts) {
			t.Fatalf("bad decode %+v", sh)
		}
		if fmt.Sprint(sh.Ts) != strings.TrimPrefix(sh.TsText, "+") && !strings.HasPrefix(sh.TsText, "-0") && !strings.HasPrefix(sh.TsText, "0") && !strings.HasPrefix(sh.TsText, "+0") {
			t.Fatalf("ts %q parsed as %d", sh.TsText, sh.Ts)
		}
		_, _ = v.Verify(NodeHeaders{Key: key, Sig: sig, Ts: ts}, "POST", "/x", nil)
	})
}

// BenchmarkNodeVerify is one accepted signed request: header decoding, the
// point check, Ed25519 verification and a replay cache insert (the cache
// grows by one entry per iteration, pruned as the fake clock moves on).
func BenchmarkNodeVerify(b *testing.B) {
	priv := vectorPriv()
	body := []byte(vectorBody)
	now := int64(vectorTs)
	v := NewNodeVerifier(NodeVerifierConfig{Now: func() time.Time { return time.Unix(now, 0) }, MaxReplay: 1 << 30})
	hs := make([]NodeHeaders, 1024)
	for i := range hs {
		hs[i] = SignNodeRequest(priv, vectorTs, "POST", fmt.Sprintf("/p/%d", i), body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(hs) == 0 && i > 0 {
			b.StopTimer()
			now += 601 // the old signatures expire; sign the set again for the new time
			for j := range hs {
				hs[j] = SignNodeRequest(priv, now, "POST", fmt.Sprintf("/p/%d", j), body)
			}
			b.StartTimer()
		}
		if _, err := v.Verify(hs[i%len(hs)], "POST", fmt.Sprintf("/p/%d", i%len(hs)), body); err != nil {
			b.Fatal(err)
		}
	}
}
