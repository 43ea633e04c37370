package postgres

import (
	"testing"

	"github.com/switchboard-rt/switchboard/internal/scheduler/schedtest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

func benchStore(b *testing.B) *Store {
	url := testenv.PostgresURL(b)
	return open(b, url, testenv.PostgresSchema(b, url))
}

// SWITCHBOARD_TEST_POSTGRES_URL=… go test -run XXX -bench Scheduler -benchtime 5000x ./internal/store/postgres/
func BenchmarkSchedulerThroughput(b *testing.B) { schedtest.BenchThroughput(b, benchStore(b)) }

func BenchmarkSchedulerFirstAssignment(b *testing.B) {
	schedtest.BenchFirstAssignment(b, benchStore(b))
}
