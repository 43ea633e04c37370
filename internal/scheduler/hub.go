package scheduler

import (
	"context"

	"github.com/switchboard-rt/switchboard/internal/hub"
)

// Channels the scheduler publishes to and listens on (SCHED.md). The
// namespaces must keep history for chunks, nodes and jobs, and presence
// with join/leave for nodes:online; Run checks this.
const (
	ChannelOnline    = "nodes:online"
	ChannelAdminJobs = "scheduler:jobs"
	ChannelAdminNode = "scheduler:nodes"
)

// ChunksChannel is where a node receives its assignments.
func ChunksChannel(nodeID string) string { return "chunks:" + nodeID }

// NodeChannel is where a node receives its config and cancel messages.
func NodeChannel(nodeID string) string { return "nodes:" + nodeID }

// JobChannel carries a job's progress, completed, failed and cancelled
// events.
func JobChannel(jobID string) string { return "jobs:" + jobID }

// OwnerJobsChannel is the job feed of one user.
func OwnerJobsChannel(userID string) string { return "scheduler:jobs#" + userID }

// OwnerNodesChannel is the node feed of one user.
func OwnerNodesChannel(userID string) string { return "scheduler:nodes#" + userID }

// Publisher publishes into hub channels with their namespace's options;
// *hub.Hub implements it.
type Publisher interface {
	Publish(ctx context.Context, channel string, data []byte, info *hub.ClientInfo, tags map[string]string) (hub.StreamPosition, error)
	ChannelOptions(channel string) (hub.ChannelOptions, error)
}

// PresenceSource tells who is in a channel and pushes joins and leaves to
// an in-process subscriber; *hub.Hub implements it. The Service registers
// its own push format (an encoder of join/leave it decodes itself).
type PresenceSource interface {
	RegisterFormat(name string, enc hub.Encoder) (hub.FormatID, error)
	AddSubscriber(channel string, sub hub.Subscriber, joinLeave bool) error
	RemoveSubscriber(channel string, sub hub.Subscriber) bool
	Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error)
}
