package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/hub/controltest"
	"github.com/switchboard-rt/switchboard/internal/testenv"
)

// newTestControl returns a control plane on a broker of prefix, closed at
// cleanup.
func newTestControl(t *testing.T, cfg Config) *Control {
	t.Helper()
	b := newTestBroker(t, cfg)
	p, err := b.ControlPlane()
	require.NoError(t, err)
	c := p.(*Control)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, c.Close(ctx))
	})
	return c
}

func TestControlConformance(t *testing.T) {
	testenv.RedisURL(t)
	controltest.Run(t, func(t *testing.T) func() hub.ControlPlane {
		prefix := testPrefix(t)
		return func() hub.ControlPlane { return newTestControl(t, Config{Prefix: prefix}) }
	})
}
