package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// ErrUnknownServer is returned by Manager methods given a URL that was not
// added to the builder.
var ErrUnknownServer = errors.New("client: unknown server")

// ErrAllFailed is wrapped by Manager.Connect when no server could be reached.
var ErrAllFailed = errors.New("client: all servers failed")

// ManagerBuilder collects the configuration of a Manager fluently. Its
// methods record problems instead of panicking; Build reports them all. A
// builder is not safe for concurrent use.
type ManagerBuilder struct {
	key      string
	keySet   bool
	urls     []string
	template Config
	onStatus func(StatusChange)
	logger   *slog.Logger
}

// NewManagerBuilder returns an empty builder.
func NewManagerBuilder() *ManagerBuilder { return &ManagerBuilder{} }

// PrivateKey sets the hex private key every connection authenticates with.
// Without it connections do not authenticate.
func (b *ManagerBuilder) PrivateKey(hexKey string) *ManagerBuilder {
	b.key, b.keySet = hexKey, true
	return b
}

// AddServer adds a circle URL (ws://host:port/{circle_key}). The exact string
// is the server's name in the Manager's methods.
func (b *ManagerBuilder) AddServer(url string) *ManagerBuilder {
	b.urls = append(b.urls, url)
	return b
}

// Config sets the connection settings shared by all servers (backoff,
// keep-alive, timeouts…). Its URL, PrivateKey and OnStatusChange fields are
// ignored.
func (b *ManagerBuilder) Config(cfg Config) *ManagerBuilder {
	b.template = cfg
	return b
}

// OnStatusChange sets a callback for the status changes of every server;
// StatusChange.URL tells them apart. The Config.OnStatusChange contract
// applies: it must return quickly and must not call Close.
func (b *ManagerBuilder) OnStatusChange(fn func(StatusChange)) *ManagerBuilder {
	b.onStatus = fn
	return b
}

// Logger sets the logger of every connection.
func (b *ManagerBuilder) Logger(l *slog.Logger) *ManagerBuilder {
	b.logger = l
	return b
}

// Build validates the configuration and returns an idle Manager. It returns
// an error (joining every problem found) for an invalid private key
// (ErrInvalidKey), an invalid or duplicate URL (ErrInvalidURL), or no
// servers at all.
func (b *ManagerBuilder) Build() (*Manager, error) {
	var errs []error
	if b.keySet {
		if _, err := ParsePrivateKey(b.key); err != nil {
			errs = append(errs, err)
		}
	}
	if len(b.urls) == 0 {
		errs = append(errs, errors.New("client: no servers added"))
	}
	seen := make(map[string]bool, len(b.urls))
	for _, u := range b.urls {
		if err := ValidateURL(u); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[u] {
			errs = append(errs, fmt.Errorf("%w: %q added twice", ErrInvalidURL, u))
		}
		seen[u] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m := &Manager{conns: make(map[string]*Conn, len(b.urls))}
	for _, u := range b.urls {
		cfg := b.template
		cfg.URL = u
		cfg.PrivateKey = ""
		if b.keySet {
			cfg.PrivateKey = b.key
		}
		cfg.OnStatusChange = b.onStatus
		if b.logger != nil {
			cfg.Logger = b.logger
		}
		c, err := New(cfg)
		if err != nil { // unreachable after validation, kept for safety
			for _, made := range m.conns {
				made.Close()
			}
			return nil, err
		}
		m.conns[u] = c
		m.urls = append(m.urls, u)
	}
	return m, nil
}

// Manager holds one self-managing Conn per server. It only organises them:
// each Conn keeps itself alive. All methods are safe for concurrent use.
type Manager struct {
	urls  []string // in AddServer order
	conns map[string]*Conn
}

// URLs returns the servers in the order they were added.
func (m *Manager) URLs() []string { return append([]string(nil), m.urls...) }

// Conn returns the connection for url, or nil if url is unknown.
func (m *Manager) Conn(url string) *Conn { return m.conns[url] }

// Connect connects to every server concurrently, waiting for each to become
// ready or fail its first attempt (see Conn.Connect). failures maps each
// server that failed to its error; err is non-nil (wrapping ErrAllFailed
// and every failure) only when every server failed. Failed servers keep
// retrying in the background until Close.
func (m *Manager) Connect(ctx context.Context) (failures map[string]error, err error) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	failures = make(map[string]error)
	for _, u := range m.urls {
		c := m.conns[u]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Connect(ctx); err != nil {
				mu.Lock()
				failures[c.URL()] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) == len(m.urls) {
		errs := []error{ErrAllFailed}
		for _, u := range m.urls {
			errs = append(errs, fmt.Errorf("%s: %w", u, failures[u]))
		}
		return failures, errors.Join(errs...)
	}
	return failures, nil
}

// Play runs script on the circle at url. Errors are those of Conn.Play, or
// ErrUnknownServer.
func (m *Manager) Play(ctx context.Context, url, script string) (string, error) {
	c := m.conns[url]
	if c == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownServer, url)
	}
	return c.Play(ctx, script)
}

// Status returns the status of the server at url; ok is false for an
// unknown url.
func (m *Manager) Status(url string) (s Status, ok bool) {
	c := m.conns[url]
	if c == nil {
		return Disconnected, false
	}
	return c.Status(), true
}

// Statuses returns the status of every server.
func (m *Manager) Statuses() map[string]Status {
	out := make(map[string]Status, len(m.conns))
	for u, c := range m.conns {
		out[u] = c.Status()
	}
	return out
}

// Ready returns the servers currently ready for calls, sorted.
func (m *Manager) Ready() []string {
	var out []string
	for u, c := range m.conns {
		if st := c.Status(); st == c.readyStatus() {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

// Close closes every connection concurrently and waits for them. It is
// idempotent and always returns nil.
func (m *Manager) Close() error {
	var wg sync.WaitGroup
	for _, c := range m.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
	return nil
}

// String summarises the manager's servers and statuses, for logs.
func (m *Manager) String() string {
	parts := make([]string, 0, len(m.urls))
	for _, u := range m.urls {
		parts = append(parts, u+"="+m.conns[u].Status().String())
	}
	return "Manager{" + strings.Join(parts, ", ") + "}"
}
