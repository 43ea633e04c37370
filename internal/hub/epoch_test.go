package hub

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// epochBroker is a slowBroker (its Subscribe of other channels returns at
// once) whose stream top has the epoch "new".
type epochBroker struct{ slowBroker }

func (b *epochBroker) History(context.Context, string, HistoryOptions) (HistoryResult, error) {
	return HistoryResult{Position: StreamPosition{Offset: 1, Epoch: "new"}}, nil
}

// checkRecorder is a PositionSubscriber that records the checks it is shown.
type checkRecorder struct {
	nopSub
	mu     sync.Mutex
	checks []PositionCheck
}

func (r *checkRecorder) CheckPosition(_ string, c PositionCheck) {
	r.mu.Lock()
	r.checks = append(r.checks, c)
	r.mu.Unlock()
}

func (r *checkRecorder) numChecks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.checks)
}

// A publication of another epoch than the channel's previous one starts a
// position check at once; publications of one epoch start none.
func TestEpochChangeChecksPositions(t *testing.T) {
	b := &epochBroker{slowBroker{release: make(chan struct{}), entered: make(chan struct{})}}
	ns := Namespaces{Default: ChannelOptions{HistorySize: 10, HistoryTTL: time.Minute}}
	h, err := New(Config{Broker: b, Presence: nopPresence{}, Namespaces: ns, PositionCheckInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	f, err := h.RegisterFormat("nop", nopEncoder{})
	require.NoError(t, err)
	sub := &checkRecorder{nopSub: nopSub{f}}
	require.NoError(t, h.AddSubscriber("ch", sub, false))

	for off := uint64(1); off <= 3; off++ {
		h.HandlePublication("ch", &Publication{Offset: off}, StreamPosition{Offset: off, Epoch: "old"})
	}
	h.HandlePublication("ch", &Publication{}, StreamPosition{}) // no history: no epoch
	require.Never(t, func() bool { return sub.numChecks() > 0 }, 100*time.Millisecond, 5*time.Millisecond, "one epoch: no check")

	h.HandlePublication("ch", &Publication{Offset: 1}, StreamPosition{Offset: 1, Epoch: "new"})
	require.Eventually(t, func() bool { return sub.numChecks() > 0 }, 5*time.Second, 5*time.Millisecond, "a new epoch is checked at once")
	sub.mu.Lock()
	require.Equal(t, "new", sub.checks[0].Top.Epoch)
	sub.mu.Unlock()
}
