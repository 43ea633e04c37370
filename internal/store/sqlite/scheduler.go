package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/store/schedsql"
)

// The scheduler's tables live in the same database as the circles' data
// (one handle per store). SQLite has one writer, and this Store one
// connection, so transactions run one at a time: no row locks are needed
// and no chunk can be leased twice.
var schedQueries = schedsql.New(schedsql.Dialect{
	IsDuplicate: func(err error) bool {
		return strings.Contains(err.Error(), "UNIQUE constraint failed") || strings.Contains(err.Error(), "PRIMARY KEY")
	},
})

var _ scheduler.Store = (*Store)(nil)

// InTx implements scheduler.Store: fn runs in one transaction.
func (s *Store) InTx(ctx context.Context, fn func(scheduler.Tx) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err = fn(schedQueries.Tx(tx)); err != nil {
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
