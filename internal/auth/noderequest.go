package auth

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Signed node requests (the compute scheduler's node API, wire-compatible
// with the origin's nodes): the headers X-Node-Key (standard base64 of the
// 32-byte Ed25519 public key), X-Node-Sig (standard base64 of the 64-byte
// signature) and X-Node-Ts (unix seconds) sign the message
//
//	{ts}\0{METHOD}\0{path without query}\0{lowercase hex sha256 of the raw body}
//
// with ts exactly as sent. This file knows no HTTP: the adapter passes the
// header values, method, path and body in.

// Header names of a signed node request.
const (
	HeaderNodeKey = "X-Node-Key"
	HeaderNodeSig = "X-Node-Sig"
	HeaderNodeTs  = "X-Node-Ts"
)

// Defaults of NodeVerifierConfig.
const (
	DefaultNodeSkew       = 300 * time.Second
	DefaultNodeMaxBody    = 1 << 20
	DefaultMaxReplayCache = 1_000_000
)

// Reasons of the signed-request errors. Each is also the client-facing
// message, exactly the origin's (plus ReasonReplayedSignature and
// ReasonReplayCacheFull, which the origin lacks).
const (
	ReasonMissingNodeKey           = "Missing X-Node-Key"
	ReasonMissingNodeSig           = "Missing X-Node-Sig"
	ReasonMissingNodeTs            = "Missing X-Node-Ts"
	ReasonInvalidTimestamp         = "Invalid timestamp"
	ReasonTimestampExpired         = "Timestamp expired"
	ReasonInvalidKeyLength         = "Invalid key length"
	ReasonInvalidKeyEncoding       = "Invalid key encoding"
	ReasonInvalidSignatureLength   = "Invalid signature length"
	ReasonInvalidSignatureEncoding = "Invalid signature encoding"
	ReasonBodyTooLarge             = "Body too large"
	ReasonInvalidNodePublicKey     = "Invalid public key"
	ReasonInvalidNodeSignature     = "Invalid signature"
	ReasonReplayedSignature        = "Replayed signature"
	ReasonReplayCacheFull          = "Too many signed requests, retry later"
)

// Sentinel errors of signed-request verification: match them with
// errors.Is. All are Unauthorized except ErrNodeBodyTooLarge
// (LimitExceeded) and ErrReplayCacheFull (Unavailable, temporary).
var (
	ErrMissingNodeKey           = errs.Sentinel(errs.Unauthorized, ReasonMissingNodeKey)
	ErrMissingNodeSig           = errs.Sentinel(errs.Unauthorized, ReasonMissingNodeSig)
	ErrMissingNodeTs            = errs.Sentinel(errs.Unauthorized, ReasonMissingNodeTs)
	ErrInvalidTimestamp         = errs.Sentinel(errs.Unauthorized, ReasonInvalidTimestamp)
	ErrTimestampExpired         = errs.Sentinel(errs.Unauthorized, ReasonTimestampExpired)
	ErrInvalidKeyLength         = errs.Sentinel(errs.Unauthorized, ReasonInvalidKeyLength)
	ErrInvalidKeyEncoding       = errs.Sentinel(errs.Unauthorized, ReasonInvalidKeyEncoding)
	ErrInvalidSignatureLength   = errs.Sentinel(errs.Unauthorized, ReasonInvalidSignatureLength)
	ErrInvalidSignatureEncoding = errs.Sentinel(errs.Unauthorized, ReasonInvalidSignatureEncoding)
	ErrNodeBodyTooLarge         = errs.Sentinel(errs.LimitExceeded, ReasonBodyTooLarge)
	ErrInvalidNodePublicKey     = errs.Sentinel(errs.Unauthorized, ReasonInvalidNodePublicKey)
	ErrInvalidNodeSignature     = errs.Sentinel(errs.Unauthorized, ReasonInvalidNodeSignature)
	ErrReplayedSignature        = errs.Sentinel(errs.Unauthorized, ReasonReplayedSignature)
	ErrReplayCacheFull          = &errs.Error{Code: errs.Unavailable, Reason: ReasonReplayCacheFull, Message: ReasonReplayCacheFull, Temporary: true}
)

// NodeHeaders are the raw values of a signed request's three headers.
type NodeHeaders struct {
	Key string // X-Node-Key
	Sig string // X-Node-Sig
	Ts  string // X-Node-Ts
}

// SignedHeaders is the decoded form of NodeHeaders.
type SignedHeaders struct {
	Key ed25519.PublicKey // 32 bytes
	Sig []byte            // 64 bytes
	Ts  int64             // unix seconds
	// TsText is the timestamp exactly as sent: the signed message uses it.
	TsText string
}

// ParseNodeHeaders decodes h, checking presence, the timestamp syntax and
// the lengths and encodings of key and signature, in that order. It does
// not look at the clock and does not verify anything. Surrounding spaces
// are ignored; the timestamp is decimal digits with an optional sign.
func ParseNodeHeaders(h NodeHeaders) (SignedHeaders, error) {
	key, sig, ts := strings.TrimSpace(h.Key), strings.TrimSpace(h.Sig), strings.TrimSpace(h.Ts)
	switch {
	case key == "":
		return SignedHeaders{}, ErrMissingNodeKey
	case sig == "":
		return SignedHeaders{}, ErrMissingNodeSig
	case ts == "":
		return SignedHeaders{}, ErrMissingNodeTs
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return SignedHeaders{}, ErrInvalidTimestamp
	}
	rawKey, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return SignedHeaders{}, ErrInvalidKeyEncoding
	}
	if len(rawKey) != ed25519.PublicKeySize {
		return SignedHeaders{}, ErrInvalidKeyLength
	}
	rawSig, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return SignedHeaders{}, ErrInvalidSignatureEncoding
	}
	if len(rawSig) != ed25519.SignatureSize {
		return SignedHeaders{}, ErrInvalidSignatureLength
	}
	return SignedHeaders{Key: rawKey, Sig: rawSig, Ts: sec, TsText: ts}, nil
}

// NodeMessage returns the bytes a node signs: ts as sent, the upper-case
// method, the path without its query, and the lowercase hex SHA-256 of
// body, separated by NUL bytes.
func NodeMessage(ts, method, path string, body []byte) []byte {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	sum := sha256.Sum256(body)
	var b strings.Builder
	b.Grow(len(ts) + len(method) + len(path) + 3 + 2*sha256.Size)
	b.WriteString(ts)
	b.WriteByte(0)
	b.WriteString(strings.ToUpper(method))
	b.WriteByte(0)
	b.WriteString(path)
	b.WriteByte(0)
	b.WriteString(hex.EncodeToString(sum[:]))
	return []byte(b.String())
}

// SignNodeRequest returns the header values of a request signed by priv at
// unix time ts (the node's side, and tests').
func SignNodeRequest(priv ed25519.PrivateKey, ts int64, method, path string, body []byte) NodeHeaders {
	tsText := strconv.FormatInt(ts, 10)
	sig := ed25519.Sign(priv, NodeMessage(tsText, method, path, body))
	pub := priv.Public().(ed25519.PublicKey)
	return NodeHeaders{
		Key: base64.StdEncoding.EncodeToString(pub),
		Sig: base64.StdEncoding.EncodeToString(sig),
		Ts:  tsText,
	}
}

// NodeVerifierConfig configures a NodeVerifier. Zero values mean the
// defaults.
type NodeVerifierConfig struct {
	// Skew is the largest accepted difference between X-Node-Ts and the
	// clock, either way; zero means DefaultNodeSkew.
	Skew time.Duration
	// MaxBody is the largest signed body in bytes; zero means
	// DefaultNodeMaxBody.
	MaxBody int
	// MaxReplay bounds the signatures remembered for replay detection;
	// when it is reached and none has expired, new requests fail with
	// ErrReplayCacheFull (fail closed). Zero means DefaultMaxReplayCache.
	MaxReplay int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NodeVerifier verifies signed node requests and refuses a signature seen
// before within its validity window. It is safe for concurrent use and
// owns no goroutine; memory is bounded by MaxReplay entries.
type NodeVerifier struct {
	skew    time.Duration
	maxBody int
	now     func() time.Time
	replay  *replayCache
}

// NewNodeVerifier returns a verifier configured by cfg.
func NewNodeVerifier(cfg NodeVerifierConfig) *NodeVerifier {
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultNodeSkew
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultNodeMaxBody
	}
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = DefaultMaxReplayCache
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &NodeVerifier{skew: cfg.Skew, maxBody: cfg.MaxBody, now: cfg.Now,
		replay: &replayCache{max: cfg.MaxReplay, seen: map[replayKey]struct{}{}}}
}

// MaxBody returns the largest body Verify accepts; an adapter reads at
// most one byte more.
func (v *NodeVerifier) MaxBody() int { return v.maxBody }

// Verify checks a signed request: the headers (ParseNodeHeaders), the
// timestamp against the clock (±Skew), the body size, the key (a valid
// Ed25519 point), the signature over NodeMessage, and finally that the
// signature was not accepted before (it is then remembered until its
// timestamp leaves the window). It returns the node's public key, or one
// of the sentinel errors above; each failure's Message is the text to
// send to the node.
func (v *NodeVerifier) Verify(h NodeHeaders, method, path string, body []byte) (ed25519.PublicKey, error) {
	sh, err := ParseNodeHeaders(h)
	if err != nil {
		return nil, err
	}
	now := v.now()
	skew := int64(v.skew / time.Second)
	if d := now.Unix() - sh.Ts; d > skew || d < -skew {
		return nil, ErrTimestampExpired
	}
	if len(body) > v.maxBody {
		return nil, ErrNodeBodyTooLarge
	}
	// crypto/ed25519 refuses keys off the curve by failing verification, so
	// the (costly) point check only picks the message of a failure; a key
	// that verifies is a point, and only its canonical form is checked.
	if !ed25519.Verify(sh.Key, NodeMessage(sh.TsText, method, path, body), sh.Sig) {
		if !validEd25519Point(sh.Key) {
			return nil, ErrInvalidNodePublicKey
		}
		return nil, ErrInvalidNodeSignature
	}
	if !canonicalY(sh.Key) {
		return nil, ErrInvalidNodePublicKey
	}
	// The window of this timestamp ends at ts+skew; after that the
	// timestamp check refuses the request anyway.
	if err := v.replay.add(sh.Sig, sh.Ts+skew+1, now.Unix()); err != nil {
		return nil, err
	}
	return sh.Key, nil
}

// ReplayLen returns the number of remembered signatures (expired ones
// included until the next Verify prunes them).
func (v *NodeVerifier) ReplayLen() int {
	v.replay.mu.Lock()
	defer v.replay.mu.Unlock()
	return len(v.replay.seen)
}

// replayCache remembers accepted signatures until they expire; a min-heap
// by expiry lets each add prune the expired ones in O(log n) apiece. An
// entry is about 60 bytes: the key is the signature's first 16 bytes (two
// different valid signatures share them with probability 2^-128) and the
// expiry is in unix seconds.
type replayCache struct {
	max  int
	mu   sync.Mutex
	seen map[replayKey]struct{}
	exp  replayHeap
}

type replayKey [16]byte

type replayEntry struct {
	key replayKey
	at  int64 // unix seconds: the entry goes once the clock reaches it
}

type replayHeap []replayEntry

func (h replayHeap) Len() int           { return len(h) }
func (h replayHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h replayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *replayHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *replayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (c *replayCache) add(sig []byte, expires, now int64) error {
	var k replayKey
	copy(k[:], sig)
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.exp) > 0 && now >= c.exp[0].at {
		delete(c.seen, heap.Pop(&c.exp).(replayEntry).key)
	}
	if _, dup := c.seen[k]; dup {
		return ErrReplayedSignature
	}
	if len(c.seen) >= c.max {
		return ErrReplayCacheFull
	}
	c.seen[k] = struct{}{}
	heap.Push(&c.exp, replayEntry{key: k, at: expires})
	return nil
}

// Curve constants of edwards25519: p = 2^255 - 19 and
// d = -121665/121666 mod p.
var (
	edP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	edD = func() *big.Int {
		inv := new(big.Int).ModInverse(big.NewInt(121666), edP)
		d := new(big.Int).Mul(big.NewInt(-121665), inv)
		return d.Mod(d, edP)
	}()
)

// validEd25519Point reports whether key (32 bytes) decodes to a point of
// edwards25519 as RFC 8032 section 5.1.3 decodes it: y < p, and
// x² = (y²-1)/(d·y²+1) has a root, which must not be 0 when the sign bit
// is set. crypto/ed25519 refuses such keys too, but only by failing the
// verification; this lets the node hear "Invalid public key".
func validEd25519Point(key []byte) bool {
	if len(key) != ed25519.PublicKeySize {
		return false
	}
	if !canonicalY(key) {
		return false
	}
	y, sign := decodeY(key)
	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, edP)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, edP)
	w := new(big.Int).Mul(edD, y2)
	w.Add(w, big.NewInt(1))
	w.Mod(w, edP)
	x2 := new(big.Int).Mul(u, new(big.Int).ModInverse(w, edP))
	x2.Mod(x2, edP)
	if x2.Sign() == 0 {
		return sign == 0
	}
	// Euler's criterion: x2 is a square mod p iff x2^((p-1)/2) = 1.
	e := new(big.Int).Rsh(new(big.Int).Sub(edP, big.NewInt(1)), 1)
	return new(big.Int).Exp(x2, e, edP).Cmp(big.NewInt(1)) == 0
}

// decodeY returns the y coordinate (little-endian, top bit cleared) and
// the sign bit of an encoded point.
func decodeY(key []byte) (*big.Int, byte) {
	be := make([]byte, len(key))
	for i, b := range key {
		be[len(key)-1-i] = b
	}
	sign := be[0] >> 7
	be[0] &= 0x7f
	return new(big.Int).SetBytes(be), sign
}

// canonicalY reports whether the encoded y coordinate of key is below p
// (RFC 8032 refuses the 19 non-canonical encodings y >= p, which
// crypto/ed25519 accepts).
func canonicalY(key []byte) bool {
	y, _ := decodeY(key)
	return y.Cmp(edP) < 0
}
