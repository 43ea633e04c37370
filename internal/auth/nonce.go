package auth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/errs"
)

// Defaults of NonceConfig.
const (
	DefaultNonceTTL         = 5 * time.Minute
	DefaultMaxNonces        = 100_000
	DefaultMaxNoncesPerConn = 16
	nonceBytes              = 32
)

// Sentinel errors of the nonce store.
var (
	ErrNonceNotFound = &errs.Error{Code: errs.NotFound, Reason: "no nonce issued", Message: "auth: no nonce issued"}
	ErrNonceExpired  = &errs.Error{Code: errs.Unauthorized, Reason: "nonce expired", Message: "auth: nonce expired"}
	ErrNonceLimit    = &errs.Error{Code: errs.LimitExceeded, Reason: "too many outstanding nonces", Message: "auth: too many outstanding nonces"}
)

// NonceConfig configures a NonceStore. Zero values mean the defaults.
type NonceConfig struct {
	// TTL is how long an issued nonce stays valid; zero means DefaultNonceTTL.
	TTL time.Duration
	// MaxNonces bounds the outstanding nonces of all connections; zero
	// means DefaultMaxNonces.
	MaxNonces int
	// MaxPerConn bounds the outstanding nonces of one connection; zero
	// means DefaultMaxNoncesPerConn.
	MaxPerConn int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness source; nil means crypto/rand.Reader.
	Rand io.Reader
}

// NonceBinding is what a nonce is bound to: one connection, one circle and
// one public key (both in canonical form).
type NonceBinding struct {
	Conn   uint64
	Circle string
	PubKey string
}

type nonceEntry struct {
	nonce   string
	expires time.Time
}

// NonceStore issues random single-use nonces bound to a NonceBinding. At
// most one nonce is outstanding per binding: issuing again replaces the
// previous one. Expired entries are pruned on the way. It is safe for
// concurrent use and owns no goroutine.
type NonceStore struct {
	ttl        time.Duration
	max        int
	maxPerConn int
	now        func() time.Time
	rand       io.Reader

	mu        sync.Mutex
	entries   map[NonceBinding]nonceEntry
	perConn   map[uint64]int
	lastPrune time.Time
}

// NewNonceStore returns an empty store configured by cfg.
func NewNonceStore(cfg NonceConfig) *NonceStore {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultNonceTTL
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = DefaultMaxNonces
	}
	if cfg.MaxPerConn <= 0 {
		cfg.MaxPerConn = DefaultMaxNoncesPerConn
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &NonceStore{
		ttl: cfg.TTL, max: cfg.MaxNonces, maxPerConn: cfg.MaxPerConn, now: cfg.Now, rand: cfg.Rand,
		entries: make(map[NonceBinding]nonceEntry), perConn: make(map[uint64]int),
	}
}

// TTL returns how long issued nonces stay valid.
func (s *NonceStore) TTL() time.Duration { return s.ttl }

// Issue creates a fresh nonce (64 lowercase hex characters) for b,
// replacing any nonce outstanding for b, and returns it with its expiry.
// It returns ErrNonceLimit when the store or the connection is full.
func (s *NonceStore) Issue(b NonceBinding) (string, time.Time, error) {
	var raw [nonceBytes]byte
	if _, err := io.ReadFull(s.rand, raw[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: nonce randomness: %w", err)
	}
	nonce := hex.EncodeToString(raw[:])

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.lastPrune) >= s.ttl/5 || len(s.entries) >= s.max {
		s.pruneLocked(now)
	}
	_, replacing := s.entries[b]
	if !replacing {
		if len(s.entries) >= s.max {
			return "", time.Time{}, ErrNonceLimit
		}
		if s.perConn[b.Conn] >= s.maxPerConn {
			return "", time.Time{}, ErrNonceLimit
		}
		s.perConn[b.Conn]++
	}
	exp := now.Add(s.ttl)
	s.entries[b] = nonceEntry{nonce: nonce, expires: exp}
	return nonce, exp, nil
}

// Take removes and returns the nonce outstanding for b. It fails with
// ErrNonceNotFound when none was issued (or it was already taken) and with
// ErrNonceExpired when it has expired; in both cases nothing remains
// outstanding for b.
func (s *NonceStore) Take(b NonceBinding) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[b]
	if !ok {
		return "", ErrNonceNotFound
	}
	s.deleteLocked(b)
	if !s.now().Before(e.expires) {
		return "", ErrNonceExpired
	}
	return e.nonce, nil
}

// DropConn forgets every nonce of connection conn; call it when the
// connection closes.
func (s *NonceStore) DropConn(conn uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perConn[conn] == 0 {
		return
	}
	for b := range s.entries {
		if b.Conn == conn {
			s.deleteLocked(b)
		}
	}
}

// Len returns the number of outstanding (possibly expired, not yet
// pruned) nonces.
func (s *NonceStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Prune removes expired nonces now.
func (s *NonceStore) Prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
}

func (s *NonceStore) pruneLocked(now time.Time) {
	s.lastPrune = now
	for b, e := range s.entries {
		if !now.Before(e.expires) {
			s.deleteLocked(b)
		}
	}
}

func (s *NonceStore) deleteLocked(b NonceBinding) {
	delete(s.entries, b)
	if n := s.perConn[b.Conn] - 1; n > 0 {
		s.perConn[b.Conn] = n
	} else {
		delete(s.perConn, b.Conn)
	}
}
