package brokertest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		return memory.New(nil), memory.NewPresence()
	})
}
