package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/schedsql"
)

// The scheduler's tables live in the same database as the circles' data
// (one handle per store). SQLite has one writer, and this Store one
// connection, so transactions run one at a time: no row locks are needed
// and no chunk can be leased twice.
var sqliteDialect = schedsql.Dialect{
	IsDuplicate: func(err error) bool {
		return strings.Contains(err.Error(), "UNIQUE constraint failed") || strings.Contains(err.Error(), "PRIMARY KEY")
	},
}

// schedState holds the scheduler's prepared statements, made on first use
// (modernc's driver does not cache statements; preparing each query was a
// quarter of a completion's CPU time).
type schedState struct {
	once sync.Once
	q    *schedsql.Queries
}

func (s *Store) schedQueries() *schedsql.Queries {
	s.sched.once.Do(func() {
		s.sched.q = schedsql.New(sqliteDialect)
		s.sched.q.Prepare(s.db)
	})
	return s.sched.q
}

var _ scheduler.Store = (*Store)(nil)

// InTx implements scheduler.Store: fn runs in one transaction.
func (s *Store) InTx(ctx context.Context, fn func(scheduler.Tx) error) (err error) {
	q := s.schedQueries()
	q.PrepareWanted(ctx)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err = fn(q.Tx(tx)); err != nil {
		if rb := tx.Rollback(); rb != nil && !errors.Is(rb, context.Canceled) {
			return errors.Join(err, fmt.Errorf("sqlite: rollback: %w", rb))
		}
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Notify implements scheduler.Store: one process, nobody to tell.
func (s *Store) Notify(context.Context) error { return nil }

// Wakeups implements scheduler.Store: nil, no other process.
func (s *Store) Wakeups() <-chan struct{} { return nil }

// Serialized tells the scheduler that transactions run one at a time (one
// connection), so a read is already locked.
func (s *Store) Serialized() bool { return true }
