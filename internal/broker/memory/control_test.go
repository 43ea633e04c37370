package memory_test

import (
	"testing"

	"github.com/switchboard-rt/switchboard/internal/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/hub/controltest"
)

func TestControlNetworkConformance(t *testing.T) {
	controltest.Run(t, func(t *testing.T) func() hub.ControlPlane {
		n := memory.NewControlNetwork()
		return func() hub.ControlPlane { return n.Node() }
	})
}
