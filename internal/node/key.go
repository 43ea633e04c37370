package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const pemType = "PRIVATE KEY"

// DefaultKeyFile returns the default key location,
// os.UserConfigDir()/switchboard/node.key.
func DefaultKeyFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("key file: no user config directory (%w); pass --key-file", err)
	}
	return filepath.Join(dir, "switchboard", "node.key"), nil
}

// LoadOrCreateKey reads the Ed25519 private key at path (PEM, PKCS #8),
// or, when the file does not exist, generates one and writes it there with
// mode 0600 (creating the directory with mode 0700). created reports
// whether a new key was written. A file readable or writable by group or
// others is refused, as is anything that is not an Ed25519 key.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	st, err := os.Stat(path)
	switch {
	case err == nil:
		if st.IsDir() {
			return nil, false, fmt.Errorf("key file %s is a directory", path)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return nil, false, fmt.Errorf("key file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, false, fmt.Errorf("key file: %w", err)
		}
		key, err := ParseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, false, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("key file: generate: %w", err)
	}
	data, err := MarshalKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	return key, true, nil
}

// MarshalKey encodes key as a PEM "PRIVATE KEY" block (PKCS #8), the format
// openssl reads.
func MarshalKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("key file: encode: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// ParseKey decodes a key written by MarshalKey.
func ParseKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != pemType {
		return nil, errors.New(`not a PEM "PRIVATE KEY" block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS #8 key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an Ed25519 key (%T)", k)
	}
	return ek, nil
}
