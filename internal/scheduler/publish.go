package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// publishTimeout bounds one publication of the scheduler.
const publishTimeout = 5 * time.Second

// Event types on jobs:{id} and the feeds.
const (
	EventProgress  = "progress"
	EventCompleted = "completed"
	EventFailed    = "failed"
	EventCancelled = "cancelled"
	EventJob       = "job"
	EventNode      = "node"
	EventConfig    = "config"
	EventCancel    = "cancel"
)

// Event is the envelope of jobs:{id} and the feeds: {type, payload}.
type Event struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// NodeConfig is the config message on nodes:{id}.
type NodeConfig struct {
	Type        string `json:"type"` // "config"
	UserID      string `json:"userId"`
	Name        string `json:"name"`
	TotalCores  int    `json:"totalCores"`
	MaxParallel int    `json:"maxParallel"`
}

// CancelMessage on nodes:{id} tells a node to stop chunks.
type CancelMessage struct {
	Type     string   `json:"type"` // "cancel"
	JobID    string   `json:"jobId"`
	ChunkIDs []string `json:"chunkIds"`
}

// ChunkProgress is added to a progress event caused by a chunk's report.
type ChunkProgress struct {
	ID         string `json:"id"`
	Done       int64  `json:"done"`
	Iterations int64  `json:"iterations"`
}

// publish marshals v and publishes it into channel.
func (s *Service) publish(ctx context.Context, channel string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("scheduler: encode for %s: %w", channel, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if _, err := s.pub.Publish(ctx, channel, data, nil, nil); err != nil {
		return fmt.Errorf("scheduler: publish to %s: %w", channel, err)
	}
	return nil
}

// publishBestEffort publishes an event whose loss is repaired by reading
// the API (feeds, job events): failures are logged and counted.
func (s *Service) publishBestEffort(channel string, v any) {
	if err := s.publish(s.ctx, channel, v); err != nil {
		s.metrics.publishFailures.Inc()
		s.log.Warn("publish failed", "error", err)
	}
}

// jobEvent publishes a job's state to jobs:{id} (typ progress, completed,
// failed or cancelled; payload the job JSON, plus "chunk" for a chunk's
// progress report) and to the admin and owner job feeds.
func (s *Service) jobEvent(typ string, j Job, chunk *ChunkProgress) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	s.publishJob(typ, j, chunk)
}

// publishJob is jobEvent with evMu held.
func (s *Service) publishJob(typ string, j Job, chunk *ChunkProgress) {
	payload, err := json.Marshal(j)
	if err != nil {
		s.log.Error("encode job", "error", err)
		return
	}
	if chunk != nil {
		c, _ := json.Marshal(chunk)
		payload = append(append(append(payload[:len(payload)-1:len(payload)-1], `,"chunk":`...), c...), '}')
	}
	s.publishBestEffort(JobChannel(j.ID), Event{Type: typ, Payload: payload})
	s.jobFeed(j)
}

// jobFeed publishes the job JSON on the admin and owner job feeds.
func (s *Service) jobFeed(j Job) {
	payload, err := json.Marshal(j)
	if err != nil {
		return
	}
	e := Event{Type: EventJob, Payload: payload}
	s.feed.publish("job:"+j.ID, j.RowVersion, j.Status.Terminal(), func() {
		s.publishBestEffort(ChannelAdminJobs, e)
		s.publishBestEffort(OwnerJobsChannel(j.OwnerID), e)
	})
}

// feedOrder keeps the last rowVersion published per row.
type feedOrder struct {
	mu   sync.Mutex
	last map[string]int64
}

// publish runs send unless a newer version of row went out already;
// done forgets the row afterwards (it changes no more).
func (f *feedOrder) publish(row string, version int64, done bool, send func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if version < f.last[row] {
		return
	}
	send()
	if done {
		delete(f.last, row)
		return
	}
	if f.last == nil {
		f.last = map[string]int64{}
	}
	f.last[row] = version
}

// nodeFeed publishes the node JSON on the admin and owner node feeds.
func (s *Service) nodeFeed(n Node) {
	n.Online = s.isOnline(n.ID)
	payload, err := json.Marshal(n)
	if err != nil {
		return
	}
	e := Event{Type: EventNode, Payload: payload}
	s.feed.publish("node:"+n.ID, n.RowVersion, false, func() {
		s.publishBestEffort(ChannelAdminNode, e)
		if n.OwnerID != "" {
			s.publishBestEffort(OwnerNodesChannel(n.OwnerID), e)
		}
	})
}

// publishNodes reads the nodes ids from the store and publishes them on
// the feeds (presence changes).
func (s *Service) publishNodes(ids []string) {
	if len(ids) == 0 {
		return
	}
	var nodes []Node
	err := s.store.InTx(s.ctx, func(tx Tx) (err error) {
		nodes, err = tx.Nodes(s.ctx, "", ids)
		return err
	})
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("read nodes for the feed failed", "error", err)
		}
		return
	}
	for _, n := range nodes {
		s.nodeFeed(n)
	}
}

// sendCancels tells each node in held (node id → chunk ids) to stop those
// chunks of job.
func (s *Service) sendCancels(jobID string, held map[string][]string) {
	ids := make([]string, 0, len(held))
	for id := range held {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.publishBestEffort(NodeChannel(id), CancelMessage{Type: EventCancel, JobID: jobID, ChunkIDs: held[id]})
	}
}
