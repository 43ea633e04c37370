package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
)

// Headers of the signed node API (PROTOCOLS.md, "Compute scheduler").
const (
	HeaderKey = "X-Node-Key"
	HeaderSig = "X-Node-Sig"
	HeaderTS  = "X-Node-Ts"
)

// signedMessage is what a node signs: "{ts}\0{METHOD}\0{path}\0{hex
// sha256(body)}", path without the query.
func signedMessage(ts, method, path string, body []byte) []byte {
	sum := sha256.Sum256(body)
	msg := make([]byte, 0, len(ts)+len(method)+len(path)+3+hex.EncodedLen(len(sum)))
	msg = append(msg, ts...)
	msg = append(msg, 0)
	msg = append(msg, method...)
	msg = append(msg, 0)
	msg = append(msg, path...)
	msg = append(msg, 0)
	return hex.AppendEncode(msg, sum[:])
}

// Sign sets the X-Node-Key, X-Node-Sig and X-Node-Ts headers of h for a
// request with the given method, path (without query) and raw body, signed
// by key at time now.
func Sign(h http.Header, key ed25519.PrivateKey, now time.Time, method, path string, body []byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := ed25519.Sign(key, signedMessage(ts, method, path, body))
	h.Set(HeaderKey, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
	h.Set(HeaderSig, base64.StdEncoding.EncodeToString(sig))
	h.Set(HeaderTS, ts)
}
