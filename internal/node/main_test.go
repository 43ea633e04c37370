package node

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of a Node ends with Shutdown (the hub and the fake API
// of the tests stop in their cleanups).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
