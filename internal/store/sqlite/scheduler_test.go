package sqlite

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/scheduler/schedtest"
)

func newSchedStore(tb testing.TB) scheduler.Store {
	s, err := Open(context.Background(), Config{Dir: tb.TempDir()})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSchedulerConformance(t *testing.T) {
	schedtest.Run(t, newSchedStore)
}
