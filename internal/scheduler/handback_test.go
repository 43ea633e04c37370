package scheduler_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/scheduler"
	"github.com/switchboard-rt/switchboard/internal/worker"
)

// A node hands a chunk back with its worker pool's shutting-down code;
// the scheduler must read that code as a hand-back.
func TestHandBackCodeIsTheWorkersShuttingDown(t *testing.T) {
	require.Equal(t, worker.CodeShuttingDown, scheduler.CodeShuttingDown)
}
