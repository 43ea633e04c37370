package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/clock"
	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Channels of the console's live views. The scheduler publishes every job
// and node change to the admin feeds and to the owner's user-limited ones
// (JobsChannel+"#"+user); the console publishes the hub figures.
const (
	JobsChannel  = "scheduler:jobs"
	NodesChannel = "scheduler:nodes"
	FeedChannel  = "scheduler:hub"
)

// Hub is what the console needs of the hub: the cluster's figures and a
// way to publish them.
type Hub interface {
	Nodes() []hub.NodeInfo
	ChannelOptions(channel string) (hub.ChannelOptions, error)
	PublishWithOptions(ctx context.Context, channel string, pub *hub.Publication, opts hub.ChannelOptions, skipHistory bool) (hub.StreamPosition, error)
}

// HubFigures is the payload of the hub feed: totals over the cluster's
// nodes and each node's own figures. Users and channels are summed per
// node, so a user connected to two nodes counts twice.
type HubFigures struct {
	Connections int       `json:"connections"`
	Channels    int       `json:"channels"`
	Users       int       `json:"users"`
	Subs        int       `json:"subs"`
	Nodes       []HubNode `json:"nodes"`
	Time        time.Time `json:"time"`
}

// HubNode is one Switchboard node of the cluster.
type HubNode struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Version       string `json:"version,omitempty"`
	Connections   int    `json:"connections"`
	Users         int    `json:"users"`
	Channels      int    `json:"channels"`
	Subs          int    `json:"subs"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
}

// figures gathers the hub figures now.
func figures(h Hub, now time.Time) HubFigures {
	nodes := h.Nodes()
	f := HubFigures{Nodes: make([]HubNode, 0, len(nodes)), Time: now.UTC()}
	for _, n := range nodes {
		f.Connections += n.NumClients
		f.Users += n.NumUsers
		f.Channels += n.NumChannels
		f.Subs += n.NumSubs
		f.Nodes = append(f.Nodes, HubNode{ID: n.ID, Name: n.Name, Version: n.Version, Connections: n.NumClients,
			Users: n.NumUsers, Channels: n.NumChannels, Subs: n.NumSubs, UptimeSeconds: int64(n.Uptime / time.Second)})
	}
	return f
}

// feedMessage is the publication on FeedChannel.
type feedMessage struct {
	Type    string     `json:"type"`
	Payload HubFigures `json:"payload"`
}

// feed publishes the hub figures to FeedChannel every interval, without
// history (only the latest figures matter). Each tick runs on the clock's
// timer goroutine and re-arms the timer when done, so ticks never overlap.
type feed struct {
	hub      Hub
	clock    clock.Clock
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	timer   clock.Timer
	stopped bool
	cancel  context.CancelFunc // of the running tick's publish
	running sync.WaitGroup
}

func (f *feed) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped && f.timer == nil {
		f.timer = f.clock.AfterFunc(f.interval, f.tick)
	}
}

func (f *feed) tick() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	f.cancel = cancel
	f.running.Add(1)
	f.mu.Unlock()
	defer f.running.Done()

	f.publish(ctx)
	cancel()

	f.mu.Lock()
	f.cancel = nil
	if !f.stopped {
		f.timer.Reset(f.interval)
	}
	f.mu.Unlock()
}

// publish sends the figures once; errors are logged (the next tick tries
// again).
func (f *feed) publish(ctx context.Context) {
	opts, err := f.hub.ChannelOptions(FeedChannel)
	if err != nil {
		f.log.Warn("hub figures not published", "channel", FeedChannel, "error", err)
		return
	}
	data, err := json.Marshal(feedMessage{Type: "hub", Payload: figures(f.hub, f.clock.Now())})
	if err != nil {
		f.log.Error("hub figures not encoded", "error", err)
		return
	}
	if _, err := f.hub.PublishWithOptions(ctx, FeedChannel, &hub.Publication{Data: data}, opts, true); err != nil {
		f.log.Warn("hub figures not published", "channel", FeedChannel, "error", err)
	}
}

// stop stops the ticks and waits for a running one; ctx bounds the wait
// (the running publish is cancelled when ctx ends).
func (f *feed) stop(ctx context.Context) error {
	f.mu.Lock()
	f.stopped = true
	if f.timer != nil {
		f.timer.Stop()
	}
	cancel := f.cancel
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if cancel != nil {
			cancel()
		}
		<-done
		return nil
	}
}
