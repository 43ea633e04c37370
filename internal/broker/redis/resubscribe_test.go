package redis

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// resubRecorder is a Recorder that also keeps HandleResubscribed calls.
type resubRecorder struct {
	*brokertest.Recorder
	mu    sync.Mutex
	resub []string
}

func (r *resubRecorder) HandleResubscribed(chs []string) {
	r.mu.Lock()
	r.resub = append(r.resub, chs...)
	r.mu.Unlock()
}

func (r *resubRecorder) resubscribed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resub)
}

var _ hub.ResubscribeHandler = (*resubRecorder)(nil)

// A replaced PUB/SUB connection tells the handler which channels it
// subscribed again (messages sent meanwhile may be lost): the hub then
// checks its subscribers' positions.
func TestResubscribeReportedToHandler(t *testing.T) {
	srv := startRedis(t)
	cfg := fastConfig(srv.URL())
	cfg.Shards = 1
	b := newTestBroker(t, cfg)
	rec := &resubRecorder{Recorder: brokertest.NewRecorder()}
	require.NoError(t, b.Run(rec))
	subscribe(t, b, "lost")
	require.Empty(t, rec.resubscribed(), "a first connect is no resubscribe")
	admin(t, srv, "CLIENT", "KILL", "TYPE", "pubsub")
	require.Eventually(t, func() bool { return slices.Contains(rec.resubscribed(), "lost") }, 10*time.Second, 10*time.Millisecond,
		"HandleResubscribed names the channel")
}
