package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/auth"
)

// Headers of the signed node API (PROTOCOLS.md, "Compute scheduler").
const (
	HeaderKey = auth.HeaderNodeKey
	HeaderSig = auth.HeaderNodeSig
	HeaderTS  = auth.HeaderNodeTs
)

// Sign sets the X-Node-Key, X-Node-Sig and X-Node-Ts headers of h for a
// request with the given method, path (without query) and raw body, signed
// by key at unix time ts.
func Sign(h http.Header, key ed25519.PrivateKey, ts int64, method, path string, body []byte) {
	s := auth.SignNodeRequest(key, ts, method, path, body)
	h.Set(HeaderKey, s.Key)
	h.Set(HeaderSig, s.Sig)
	h.Set(HeaderTS, s.Ts)
}

// stamper picks request timestamps so that no two identical requests get
// the same signature: Ed25519 signatures are deterministic and the server
// refuses a signature it has seen (its replay cache), so a request
// identical to one already stamped with this second (a heartbeat, a
// progress report with the same count, a retried completion) waits for
// the next second. It is safe for concurrent use.
type stamper struct {
	mu   sync.Mutex
	last map[[sha256.Size]byte]int64
}

// reserve returns the stamp of a request and how long to wait before
// sending it (zero unless an identical request has this second already).
func (s *stamper) reserve(now time.Time, method, path string, body []byte) (int64, time.Duration) {
	ts := now.Unix()
	h := sha256.New()
	h.Write([]byte(method + "\x00" + path + "\x00"))
	h.Write(body)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[[sha256.Size]byte]int64{}
	}
	if prev, ok := s.last[k]; ok && prev >= ts {
		ts = prev + 1
	}
	s.last[k] = ts
	if len(s.last) > 4096 {
		for key, v := range s.last {
			if v < now.Unix() {
				delete(s.last, key)
			}
		}
	}
	return ts, max(time.Unix(ts, 0).Sub(now), 0)
}
