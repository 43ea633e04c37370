// Package playcli implements the `switchboard keygen` and `switchboard play`
// subcommands on top of the public client SDK. cmd parses flags and calls
// Keygen or Play; ExitCode maps their errors to process exit statuses.
package playcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/switchboard-rt/switchboard/client"
)

// MaxScriptSize is the largest script Play reads, in bytes.
const MaxScriptSize = 1 << 20

// maxKeyFileSize bounds the key file read.
const maxKeyFileSize = 64 << 10

// ErrUsage wraps errors caused by bad arguments or input files (bad URL,
// unreadable or malformed key file, oversized script); ExitCode maps it to 2.
var ErrUsage = errors.New("usage")

// KeyPair is a generated secp256k1 key pair in hex: Private (64 hex),
// Compressed (66 hex, the circle key form) and Uncompressed (130 hex).
type KeyPair struct{ Private, Compressed, Uncompressed string }

// GenerateKeyPair returns a new random secp256k1 key pair.
func GenerateKeyPair() (KeyPair, error) {
	k, err := client.GeneratePrivateKey()
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Private: k.Hex(), Compressed: k.PublicKeyCompressed(), Uncompressed: k.PublicKeyUncompressed()}, nil
}

// KeyFile is the pair as three "name: value" lines (private_key,
// public_key_compressed, public_key_uncompressed): a valid key file for Play.
func (k KeyPair) KeyFile() string {
	return "private_key: " + k.Private + "\n" + k.PublicText()
}

// PublicText is the two public key lines of KeyFile, without the private key.
func (k KeyPair) PublicText() string {
	return "public_key_compressed: " + k.Compressed + "\npublic_key_uncompressed: " + k.Uncompressed + "\n"
}

// Keygen generates a key pair and writes its KeyFile text to w.
func Keygen(w io.Writer) error {
	k, err := GenerateKeyPair()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, k.KeyFile()); err != nil {
		return fmt.Errorf("keygen: write: %w", err)
	}
	return nil
}

// ReadKeyFile returns the hex private key stored at path. The file holds
// either the bare hex key (optionally 0x-prefixed) or Keygen's output (the
// private_key line is used). Errors wrap ErrUsage.
func ReadKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: key file: %w", ErrUsage, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return "", fmt.Errorf("%w: key file %s: %w", ErrUsage, path, err)
	}
	if len(data) > maxKeyFileSize {
		return "", fmt.Errorf("%w: key file %s is larger than %d bytes", ErrUsage, path, maxKeyFileSize)
	}
	key := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			if strings.TrimSpace(name) == "private_key" {
				key = strings.TrimSpace(value)
				break
			}
			continue
		}
		if key == "" {
			key = line
		}
	}
	if key == "" {
		return "", fmt.Errorf("%w: key file %s holds no private key", ErrUsage, path)
	}
	if _, err := client.ParsePrivateKey(key); err != nil {
		return "", fmt.Errorf("%w: key file %s: %w", ErrUsage, path, err)
	}
	return key, nil
}

// Play connects to the circle at url, authenticates with the key in keyFile
// (no authentication when keyFile is ""), runs the script read from script
// and writes its output to out, adding a final newline when the output lacks
// one. ctx bounds the whole run. Script failures are returned as
// *circles.Error (errors.As); argument problems wrap ErrUsage.
func Play(ctx context.Context, url, keyFile string, script io.Reader, out io.Writer) error {
	if err := client.ValidateURL(url); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	key := ""
	if keyFile != "" {
		k, err := ReadKeyFile(keyFile)
		if err != nil {
			return err
		}
		key = k
	}
	src, err := io.ReadAll(io.LimitReader(script, MaxScriptSize+1))
	if err != nil {
		return fmt.Errorf("play: read script: %w", err)
	}
	if len(src) > MaxScriptSize {
		return fmt.Errorf("%w: script is larger than %d bytes", ErrUsage, MaxScriptSize)
	}
	c, err := client.Dial(ctx, client.Config{URL: url, PrivateKey: key})
	if err != nil {
		return fmt.Errorf("play: %w", err)
	}
	defer c.Close()
	result, err := c.Play(ctx, string(src))
	if err != nil {
		return fmt.Errorf("play: %w", err)
	}
	if result != "" && !strings.HasSuffix(result, "\n") {
		result += "\n"
	}
	if _, err := io.WriteString(out, result); err != nil {
		return fmt.Errorf("play: write output: %w", err)
	}
	return nil
}

// OpenScript opens the script argument of `switchboard play`: "-" or "" is
// stdin (returned with a no-op Close), anything else a file. Errors wrap
// ErrUsage.
func OpenScript(path string, stdin io.Reader) (io.ReadCloser, error) {
	if path == "" || path == "-" {
		return io.NopCloser(stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: script: %w", ErrUsage, err)
	}
	return f, nil
}

// ExitCode maps an error from Keygen or Play to a process exit status: 0 for
// nil, 2 for usage errors, 1 for everything else (connection, authentication
// and script failures).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}
