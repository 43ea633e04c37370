package sqlite

import (
	"testing"

	"github.com/switchboard-rt/switchboard/internal/scheduler/schedtest"
)

// go test -run XXX -bench Scheduler -benchtime 20000x ./internal/store/sqlite/
func BenchmarkSchedulerThroughput(b *testing.B) { schedtest.BenchThroughput(b, newSchedStore(b)) }

func BenchmarkSchedulerFirstAssignment(b *testing.B) {
	schedtest.BenchFirstAssignment(b, newSchedStore(b))
}

func BenchmarkSchedulerPending100k(b *testing.B) {
	schedtest.BenchPending(b, newSchedStore(b), 100_000)
}
