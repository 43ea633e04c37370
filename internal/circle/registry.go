package circle

import (
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-rt/switchboard/internal/auth"
)

// ErrInvalidKey is wrapped by NewRegistry's error for a key that is not a
// secp256k1 public key in hex.
var ErrInvalidKey = errors.New("circle: invalid circle key")

// Registry is the immutable set of circles a server hosts, keyed by the
// canonical (compressed, lowercase hex) form of their public keys. It is
// safe for concurrent use.
type Registry struct {
	keys  map[string]struct{}
	order []string
}

// NewRegistry validates keys (secp256k1 public keys in hex, 66 or 130
// characters, optional 0x) and returns the registry. The first invalid key
// makes it fail with an error wrapping ErrInvalidKey and naming the key.
// The same key given twice, in either encoding, is one circle.
func NewRegistry(keys []string) (*Registry, error) {
	r := &Registry{keys: make(map[string]struct{}, len(keys))}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		pk, err := auth.ParseSecp256k1PublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidKey, k, err)
		}
		c := pk.String()
		if _, dup := r.keys[c]; dup {
			continue
		}
		r.keys[c] = struct{}{}
		r.order = append(r.order, c)
	}
	return r, nil
}

// Lookup returns the canonical key of the circle denoted by s (any accepted
// encoding) and whether the registry hosts it.
func (r *Registry) Lookup(s string) (string, bool) {
	pk, err := auth.ParseSecp256k1PublicKey(s)
	if err != nil {
		return "", false
	}
	_, ok := r.keys[pk.String()]
	return pk.String(), ok
}

// Keys returns the canonical keys in configuration order.
func (r *Registry) Keys() []string { return append([]string(nil), r.order...) }

// Len returns the number of circles.
func (r *Registry) Len() int { return len(r.order) }
