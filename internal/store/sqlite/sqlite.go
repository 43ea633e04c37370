// Package sqlite keeps the circles' durable key-value data in one SQLite
// database file (pure Go driver, no cgo), migrated with goose from
// embedded SQL. Data of different circles never mixes: every row is keyed
// by (circle, key).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/switchboard-rt/switchboard/internal/script"
)

// DefaultFileName is the database file created in the data directory.
const DefaultFileName = "circles.db"

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures a Store.
type Config struct {
	// Dir is the data directory; it is created if missing. Required unless
	// Path is set.
	Dir string
	// Path, when set, is the database file and Dir is ignored. The special
	// value ":memory:" gives a private in-memory database (for tests).
	Path string
	// Now is the clock for updated_at; nil means time.Now.
	Now func() time.Time
}

// Store is a key-value store scoped by circle. It is safe for concurrent
// use; writes are serialised by SQLite. Close releases the database.
type Store struct {
	db    *sql.DB
	now   func() time.Time
	sched schedState // the scheduler's statements (scheduler.go)
}

// Open opens (creating and migrating as needed) the store described by cfg.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	path := cfg.Path
	if path == "" {
		if cfg.Dir == "" {
			return nil, errors.New("sqlite: no data directory configured")
		}
		if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("sqlite: create data directory: %w", err)
		}
		path = filepath.Join(cfg.Dir, DefaultFileName)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and ":memory:" must not
	// be split across connections.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, now: cfg.Now}, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Get returns the value of key in circle; ok is false when it is missing.
func (s *Store) Get(ctx context.Context, circle, key string) (string, bool, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM circle_kv WHERE circle = ? AND key = ?`, circle, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("sqlite: get: %w", err)
	}
	return string(v), true, nil
}

// Set stores value under key in circle, replacing any previous value.
func (s *Store) Set(ctx context.Context, circle, key, value string) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO circle_kv (circle, key, value, updated_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT (circle, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		circle, key, []byte(value), s.now().Unix())
	if err != nil {
		return fmt.Errorf("sqlite: set: %w", err)
	}
	return nil
}

// Delete removes key from circle and reports whether it existed.
func (s *Store) Delete(ctx context.Context, circle, key string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM circle_kv WHERE circle = ? AND key = ?`, circle, key)
	if err != nil {
		return false, fmt.Errorf("sqlite: delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: delete: %w", err)
	}
	return n > 0, nil
}

// Keys returns up to limit keys of circle that start with prefix, in
// ascending byte order. A limit <= 0 means no limit.
func (s *Store) Keys(ctx context.Context, circle, prefix string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = -1
	}
	var rows *sql.Rows
	var err error
	if upper, ok := prefixUpperBound(prefix); ok {
		rows, err = s.db.QueryContext(ctx,
			`SELECT key FROM circle_kv WHERE circle = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?`,
			circle, prefix, upper, limit)
	} else {
		rows, err = s.db.QueryContext(ctx,
			`SELECT key FROM circle_kv WHERE circle = ? AND key >= ? ORDER BY key LIMIT ?`,
			circle, prefix, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: keys: %w", err)
	}
	defer rows.Close()
	keys := []string{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("sqlite: keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: keys: %w", err)
	}
	return keys, nil
}

// prefixUpperBound returns the smallest string greater than every string
// with the given prefix; ok is false when there is none (empty prefix or
// all 0xff bytes).
func prefixUpperBound(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// Usage returns the number of keys of circle and their total size: the sum
// of key and value lengths in bytes.
func (s *Store) Usage(ctx context.Context, circle string) (keys int, bytes int64, err error) {
	return usage(ctx, s.db, circle)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func usage(ctx context.Context, q queryer, circle string) (int, int64, error) {
	var keys int
	var bytes int64
	err := q.QueryRowContext(ctx,
		`SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM circle_kv WHERE circle = ?`,
		circle).Scan(&keys, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: usage: %w", err)
	}
	return keys, bytes, nil
}

// Apply makes writes (in order; a nil Value deletes) in one transaction.
// When the circle would then exceed q in a measure the writes grew, Apply
// changes nothing and returns the *script.Error of q.Check (KindQuota).
func (s *Store) Apply(ctx context.Context, circle string, writes []script.Write, q script.Quota) (err error) {
	if len(writes) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	k0, b0, err := usage(ctx, tx, circle)
	if err != nil {
		return err
	}
	now := s.now().Unix()
	for _, w := range writes {
		if w.Value == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM circle_kv WHERE circle = ? AND key = ?`, circle, w.Key)
		} else {
			_, err = tx.ExecContext(ctx,
				`INSERT INTO circle_kv (circle, key, value, updated_at) VALUES (?, ?, ?, ?)
				 ON CONFLICT (circle, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
				circle, w.Key, []byte(*w.Value), now)
		}
		if err != nil {
			return fmt.Errorf("sqlite: apply: %w", err)
		}
	}
	k1, b1, err := usage(ctx, tx, circle)
	if err != nil {
		return err
	}
	if err = q.Check(k0, k1, b0, b1); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply: %w", err)
	}
	return nil
}
