package node

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of a Node ends with Shutdown (the hub and the fake API
// of the tests stop in their cleanups). centrifuge-go's per-request reply
// timers outlive a reconnect by up to its ReadTimeout (5 s) by design.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/centrifugal/centrifuge-go.(*Client).sendAsync.func1"))
}
