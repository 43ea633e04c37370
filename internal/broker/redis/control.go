package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// DefaultControlQueue bounds the control messages received and not yet
// handed to the hub.
const DefaultControlQueue = 4096

var (
	_ hub.ControlPlane = (*Control)(nil)
	_ hub.Closer       = (*Control)(nil)
)

// Control is the Redis hub.ControlPlane. Broadcasts go to the PUB/SUB
// channel p.control, messages to one node to p.control.node.ID; a node's
// one dedicated PUB/SUB connection subscribes both, so one sender's
// messages arrive in order. Like the broker's shards, the connection is
// probed with PING and redialled with a growing pause; messages published
// while it is down are lost (the contract is at most once). The reader
// hands messages to a queue that one goroutine delivers to the hub, so a
// handler that sends a reply never stalls the connection.
type Control struct {
	client    rueidis.Client
	log       *slog.Logger
	broadcast string
	nodeCh    string // p.control.node. + id
	cfg       Config // timeouts and reconnect pauses of the broker

	mu      sync.Mutex
	node    string
	handler hub.ControlHandler
	queue   chan []byte
	ready   chan struct{} // closed when first subscribed
	live    bool
	stop    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	closed  bool
}

// ControlPlane returns a control plane on the broker's client and prefix.
// The caller closes it (before the broker, which may own the client).
func (b *Broker) ControlPlane() (hub.ControlPlane, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &Control{client: b.client, log: b.cfg.Logger.With("component", "redis_control"), cfg: b.cfg,
		broadcast: b.prefix + ".control", nodeCh: b.prefix + ".control.node.",
		queue: make(chan []byte, DefaultControlQueue), ready: make(chan struct{}), stop: make(chan struct{}),
		ctx: ctx, cancel: cancel}, nil
}

// Run subscribes the node's channels and starts delivering to h. It waits
// up to the broker's StartWait for the first subscription, so that answers
// to the node's first announcement are not missed; Redis being down is
// not an error (the connection keeps retrying).
func (c *Control) Run(node string, h hub.ControlHandler) error {
	if node == "" || h == nil {
		return errors.New("redis control: a node id and a handler are required")
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return errors.New("redis control: closed")
	case c.handler != nil:
		c.mu.Unlock()
		return errors.New("redis control: Run called twice")
	}
	c.node, c.handler = node, h
	c.mu.Unlock()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.deliver() }()
	go func() { defer c.wg.Done(); c.connect() }()
	t := time.NewTimer(c.cfg.StartWait)
	defer t.Stop()
	select {
	case <-c.ready:
	case <-t.C:
		c.log.Warn("control channel not subscribed yet; messages to this node are lost until it is")
	}
	return nil
}

// Broadcast publishes data to every node.
func (c *Control) Broadcast(ctx context.Context, data []byte) error {
	return c.publish(ctx, c.broadcast, data)
}

// Send publishes data to one node.
func (c *Control) Send(ctx context.Context, node string, data []byte) error {
	return c.publish(ctx, c.nodeCh+node, data)
}

func (c *Control) publish(ctx context.Context, channel string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis control: publish: %w", err)
	}
	cmd := c.client.B().Publish().Channel(channel).Message(rueidis.BinaryString(data)).Build()
	if err := c.client.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("redis control: publish: %w", err)
	}
	return nil
}

// Close unsubscribes and stops the goroutines, waiting for them until ctx
// ends. It does not close the client. It is idempotent.
func (c *Control) Close(ctx context.Context) error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		c.cancel()
	})
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis control: close: %w", ctx.Err())
	}
}

// deliver hands queued messages to the hub in arrival order.
func (c *Control) deliver() {
	for {
		select {
		case <-c.stop:
			return
		case m := <-c.queue:
			c.handler.HandleControl(m)
		}
	}
}

func (c *Control) onMessage(m rueidis.PubSubMessage) {
	select {
	case c.queue <- []byte(m.Message):
	default:
		c.log.Warn("control message dropped: queue full", "queue", cap(c.queue), "channel", m.Channel)
	}
}

// connect keeps the subscription up until Close.
func (c *Control) connect() {
	delay := c.cfg.ReconnectDelay
	for {
		live, err := c.serve()
		if live {
			delay = c.cfg.ReconnectDelay
		}
		select {
		case <-c.stop:
			return
		default:
		}
		c.log.Warn("control PUB/SUB connection lost", "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if delay *= 2; delay > MaxReconnectDelay {
			delay = MaxReconnectDelay
		}
	}
}

func (c *Control) serve() (live bool, err error) {
	conn, _ := c.client.Dedicate()
	defer conn.Close()
	lost := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: c.onMessage})
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.SubscribeTimeout)
	err = conn.Do(ctx, conn.B().Subscribe().Channel(c.broadcast, c.nodeCh+c.node).Build()).Error()
	cancel()
	if err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	c.mu.Lock()
	if !c.live {
		c.live = true
		close(c.ready)
	}
	c.mu.Unlock()
	return true, watch(c.ctx, conn, lost, c.stop, c.cfg.PingInterval, c.cfg.PingTimeout)
}
