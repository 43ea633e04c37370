// Package postgres is the PostgreSQL store of the compute scheduler, for
// several Switchboard processes sharing the work: pgx/v5 pool, schema
// migrated by goose from embedded SQL, row locks (FOR UPDATE, SKIP LOCKED
// when leasing) so that no chunk is leased twice, and LISTEN/NOTIFY so
// that a job created or a chunk freed in one process wakes the schedulers
// of the others at once.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/schedsql"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Defaults of Config.
const (
	DefaultMaxConns = 10
	// DefaultChannel is the LISTEN/NOTIFY channel (per schema).
	DefaultChannel = "switchboard_scheduler"
	// maxTxAttempts bounds the retries of a transaction PostgreSQL aborted
	// for a deadlock or serialisation failure.
	maxTxAttempts = 8
	// listenRetry is the pause before the listener reconnects.
	listenRetry = time.Second
)

// Config configures a Store.
type Config struct {
	// URL is the connection string (postgres://…). Required.
	URL string
	// Schema, when set, is created if missing and used as search_path, so
	// several deployments (or tests) share a database without sharing
	// tables; "" = the connection's default.
	Schema string
	// MaxConns bounds the pool; 0 = DefaultMaxConns.
	MaxConns int
	// Logger logs listener trouble; nil = discard.
	Logger *slog.Logger
}

// Store is the PostgreSQL scheduler.Store. It is safe for concurrent use;
// Close releases the pool and stops the listener.
type Store struct {
	pool    *pgxpool.Pool
	db      *sql.DB
	q       *schedsql.Queries
	channel string
	self    string // payload of our own notifications, ignored by our listener
	log     *slog.Logger

	wake   chan struct{} // Wakeups; closed by Close
	notify chan struct{} // coalesced Notify requests
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ scheduler.Store = (*Store)(nil)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects, creates the schema if asked, migrates, and starts the
// listener.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("postgres: no database URL configured")
	}
	if cfg.Schema != "" && !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("postgres: schema %q: use lower-case letters, digits and '_'", cfg.Schema)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: database URL: %w", err)
	}
	pc.MaxConns = int32(cfg.MaxConns)
	channel := DefaultChannel
	if cfg.Schema != "" {
		if err := createSchema(ctx, pc.ConnConfig.ConnString(), cfg.Schema); err != nil {
			return nil, err
		}
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
		channel += "_" + cfg.Schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := migrate(ctx, db); err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool: pool, db: db, channel: channel, self: uuid.NewString(), log: cfg.Logger.With("component", "store.postgres"),
		q: schedsql.New(schedsql.Dialect{
			Numbered: true, ForUpdate: " FOR UPDATE", SkipLocked: true,
			IsDuplicate: func(err error) bool {
				var pe *pgconn.PgError
				return errors.As(err, &pe) && pe.Code == "23505"
			},
		}),
		wake: make(chan struct{}, 1), notify: make(chan struct{}, 1), ctx: sctx, cancel: cancel,
	}
	listening := make(chan error, 1)
	s.wg.Add(2)
	go s.listen(listening)
	go s.notifier()
	select {
	case err := <-listening:
		if err != nil {
			s.Close()
			return nil, err
		}
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("postgres: listen: %w", ctx.Err())
	}
	return s, nil
}

func createSchema(ctx context.Context, url, schema string) error {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.Background())
	// schema is checked against schemaName: safe to quote into the text.
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+schema+`"`).ReadAll(); err != nil {
		return fmt.Errorf("postgres: create schema %s: %w", schema, err)
	}
	return nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Close stops the listener and notifier and closes the pool. It is safe
// to call more than once.
// GroupCommit tells the scheduler to commit the completions that arrive
// together in one transaction.
func (s *Store) GroupCommit() bool { return true }

func (s *Store) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		close(s.wake)
		s.db.Close()
		s.pool.Close()
	})
	return nil
}

// InTx implements scheduler.Store: READ COMMITTED with row locks; a
// transaction aborted for a deadlock (40P01) or serialisation failure
// (40001) is retried.
func (s *Store) InTx(ctx context.Context, fn func(scheduler.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.inTx(ctx, fn)
		if !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * time.Millisecond):
		}
	}
}

func (s *Store) inTx(ctx context.Context, fn func(scheduler.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	if err := fn(s.q.Tx(tx)); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// Notify implements scheduler.Store: it asks the notifier to send one
// NOTIFY (requests coalesce), without waiting for it.
func (s *Store) Notify(context.Context) error {
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// Wakeups implements scheduler.Store: a value whenever another process
// sent NOTIFY on the store's channel.
func (s *Store) Wakeups() <-chan struct{} { return s.wake }

// notifier sends the coalesced NOTIFYs.
func (s *Store) notifier() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.notify:
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.self)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("notify failed", "error", err)
		}
	}
}

// listen holds one connection in LISTEN and turns notifications of other
// processes into Wakeups; it reconnects after errors. The first outcome of
// LISTEN goes to started.
func (s *Store) listen(started chan<- error) {
	defer s.wg.Done()
	first := true
	for s.ctx.Err() == nil {
		err := s.listenOnce(func() {
			if first {
				first = false
				started <- nil
			}
			// A reconnect may have missed notifications: wake anyway.
			s.signal()
		})
		if first {
			started <- fmt.Errorf("postgres: listen: %w", err)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("listener lost its connection; reconnecting", "error", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(listenRetry):
		}
	}
}

func (s *Store) listenOnce(ready func()) error {
	conn, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(s.ctx, `LISTEN "`+s.channel+`"`); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.Conn().WaitForNotification(s.ctx)
		if err != nil {
			// The connection state is unknown after an interrupted wait.
			conn.Hijack().Close(context.Background())
			return err
		}
		if n.Payload != s.self {
			s.signal()
		}
	}
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
