package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

var (
	_ hub.ControlPlane = (*ControlNode)(nil)
	_ hub.Closer       = (*ControlNode)(nil)
)

// ErrControlClosed is returned by a ControlNode used after Close.
var ErrControlClosed = errors.New("memory control: node closed")

// ControlNetwork is an in-process control plane: each of its ControlNodes
// is one node. The memory engine is a network of one node; tests join
// several hubs to one network. Delivery is synchronous, in the sender's
// goroutine, so it keeps each sender's order and loses nothing.
type ControlNetwork struct {
	mu    sync.RWMutex
	nodes map[string]*ControlNode
}

// NewControlNetwork returns an empty network.
func NewControlNetwork() *ControlNetwork {
	return &ControlNetwork{nodes: map[string]*ControlNode{}}
}

// Node returns a new endpoint of the network for one hub
// (hub.ClusterConfig.Control).
func (n *ControlNetwork) Node() *ControlNode { return &ControlNode{net: n} }

// ControlNode is one node's hub.ControlPlane on a ControlNetwork.
type ControlNode struct {
	net    *ControlNetwork
	mu     sync.Mutex
	id     string
	h      hub.ControlHandler
	closed bool
}

// Run joins the network as node and delivers its messages to h.
func (c *ControlNode) Run(node string, h hub.ControlHandler) error {
	if node == "" || h == nil {
		return errors.New("memory control: a node id and a handler are required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrControlClosed
	case c.h != nil:
		return errors.New("memory control: Run called twice")
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if _, dup := c.net.nodes[node]; dup {
		return fmt.Errorf("memory control: node id %q is already on the network", node)
	}
	c.id, c.h = node, h
	c.net.nodes[node] = c
	return nil
}

func (c *ControlNode) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrControlClosed
	}
	return nil
}

// Broadcast delivers data to every running node, this one included.
func (c *ControlNode) Broadcast(ctx context.Context, data []byte) error {
	if err := c.usable(ctx); err != nil {
		return err
	}
	c.net.mu.RLock()
	hs := make([]hub.ControlHandler, 0, len(c.net.nodes))
	for _, n := range c.net.nodes {
		hs = append(hs, n.h)
	}
	c.net.mu.RUnlock()
	// Handlers run without the network's lock: they may send in turn.
	for _, h := range hs {
		h.HandleControl(data)
	}
	return nil
}

// Send delivers data to node; an absent node receives nothing.
func (c *ControlNode) Send(ctx context.Context, node string, data []byte) error {
	if err := c.usable(ctx); err != nil {
		return err
	}
	c.net.mu.RLock()
	n := c.net.nodes[node]
	c.net.mu.RUnlock()
	if n != nil {
		n.h.HandleControl(data)
	}
	return nil
}

// Close leaves the network: nothing is delivered to or sent from the node
// afterwards, as when its process dies. It is idempotent.
func (c *ControlNode) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.h != nil {
		c.net.mu.Lock()
		delete(c.net.nodes, c.id)
		c.net.mu.Unlock()
	}
	return nil
}
