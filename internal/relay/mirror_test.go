package relay

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-rt/switchboard/internal/clock/clocktest"
	"github.com/switchboard-rt/switchboard/internal/hub"
	"github.com/switchboard-rt/switchboard/internal/testenv"
	wire "github.com/switchboard-rt/switchboard/protocol/relay"
)

// mirrorRecorder is a MirrorPublisher keeping what it is given; with
// hold set, each Publish waits for it to close.
type mirrorRecorder struct {
	mu   sync.Mutex
	pubs map[string][]MirroredEvent
	hold chan struct{}
}

func (m *mirrorRecorder) Publish(_ context.Context, channel string, data []byte, _ *hub.ClientInfo, _ map[string]string) (hub.StreamPosition, error) {
	if m.hold != nil {
		<-m.hold
	}
	var ev MirroredEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return hub.StreamPosition{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pubs[channel] = append(m.pubs[channel], ev)
	return hub.StreamPosition{}, nil
}

func (m *mirrorRecorder) count(channel string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pubs[channel])
}

func (m *mirrorRecorder) events(channel string) []MirroredEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MirroredEvent(nil), m.pubs[channel]...)
}

func TestMirrorRateCap(t *testing.T) {
	clk := clocktest.New(time.Now())
	rec := &mirrorRecorder{pubs: map[string][]MirroredEvent{}}
	s := newTestServer(t, func(c *Config) {
		c.Clock, c.HeartbeatInterval = clk, time.Hour
		c.Mirror = MirrorConfig{Enabled: true, Rate: 5, Burst: 5, RoomPrefix: "watch-"}
		c.MirrorTo = rec
	})
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	ja := a.Join("watch-1")
	b.Join("watch-1")
	hidden := a.Join("private")
	b.Join("private")
	send := func(from, to uint64) {
		for i := from; i < to; i++ {
			a.Send(&wire.NativeEvent{Handle: ja.Handle, Sequence: i, Payload: []byte{byte(i)}})
			require.Equal(t, i, b.NextEvent().Sequence, "members get every event")
		}
	}
	send(0, 20)
	a.Send(&wire.NativeEvent{Handle: hidden.Handle, Sequence: 100})
	require.Equal(t, uint64(100), b.NextEvent().Sequence)
	require.Eventually(t, func() bool { return rec.count("relay:watch-1") == 5 }, testenv.Wait, testenv.Tick)
	require.Equal(t, 15.0, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropMirrorRate)))

	clk.Advance(time.Second) // five more tokens
	send(20, 30)
	require.Eventually(t, func() bool { return rec.count("relay:watch-1") == 10 }, testenv.Wait, testenv.Tick)
	require.Equal(t, 20.0, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropMirrorRate)))
	got := rec.events("relay:watch-1")
	for i, want := range []uint64{0, 1, 2, 3, 4, 20, 21, 22, 23, 24} {
		require.Equal(t, MirroredEvent{Sender: "1", Sequence: want, Reliable: true, Payload: []byte{byte(want)}}, got[i])
	}
	require.Zero(t, rec.count("relay:private"), "room_prefix leaves other rooms out")
}

// A publisher that does not keep up never holds up the room: the queue
// fills and the rest is dropped and counted.
func TestMirrorQueueFullDrops(t *testing.T) {
	rec := &mirrorRecorder{pubs: map[string][]MirroredEvent{}, hold: make(chan struct{})}
	s := newTestServer(t, func(c *Config) {
		c.Mirror = MirrorConfig{Enabled: true, Rate: 1000, Burst: 1000, Queue: 1}
		c.MirrorTo = rec
	})
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	j := a.Join("busy")
	b.Join("busy")
	const n = 10
	for i := range n {
		a.Send(&wire.NativeEvent{Handle: j.Handle, Sequence: uint64(i)})
	}
	for i := range n {
		require.Equal(t, uint64(i), b.NextEvent().Sequence)
	}
	drops := testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropMirrorQueue))
	require.GreaterOrEqual(t, drops, float64(n-2), "one being published, one queued")
	close(rec.hold)
	require.Eventually(t, func() bool { return float64(rec.count("relay:busy"))+drops == n }, testenv.Wait, testenv.Tick)
}

// stuckPublisher holds each Publish until its context ends, and keeps
// why it ended.
type stuckPublisher struct {
	entered chan struct{}
	ended   chan error
}

func (p stuckPublisher) Publish(ctx context.Context, _ string, _ []byte, _ *hub.ClientInfo, _ map[string]string) (hub.StreamPosition, error) {
	p.entered <- struct{}{}
	<-ctx.Done()
	p.ended <- ctx.Err()
	return hub.StreamPosition{}, ctx.Err()
}

// Shutdown does not wait out a publish the hub does not answer: when
// Shutdown's own context ends, the publish is cancelled and counted.
func TestMirrorShutdownCancelsStuckPublish(t *testing.T) {
	pub := stuckPublisher{entered: make(chan struct{}, 1), ended: make(chan error, 1)}
	s := newTestServer(t, func(c *Config) {
		c.Mirror = MirrorConfig{Enabled: true, Rate: 1000, Burst: 1000}
		c.MirrorTo = pub
	})
	a, b := dialNative(t, s, 1), dialNative(t, s, 2)
	j := a.Join("final")
	b.Join("final")
	a.Send(&wire.NativeEvent{Handle: j.Handle, Sequence: 1})
	require.Equal(t, uint64(1), b.NextEvent().Sequence)
	<-pub.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = s.Shutdown(ctx)
	select {
	case err := <-pub.ended:
		require.ErrorIs(t, err, context.Canceled, "cancelled by Shutdown, not by its own timeout")
	case <-time.After(testenv.Wait):
		t.Fatal("the publish was never cancelled")
	}
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.drops.WithLabelValues(dropMirrorPublish)))
}

func TestMirrorConfigRefused(t *testing.T) {
	_, err := New(Config{Address: "127.0.0.1:0", Mirror: MirrorConfig{Enabled: true}})
	require.ErrorContains(t, err, "mirror: enabled without a hub")
	_, err = New(Config{Address: "127.0.0.1:0", Mirror: MirrorConfig{Rate: -1}})
	require.ErrorContains(t, err, "mirror.rate: -1")
}
