package scheduler

import (
	"encoding/json"
	"time"
)

// JobStatus is the life cycle state of a job.
type JobStatus string

// Job states. Pending: no chunk has started; running: at least one has;
// the other three are terminal.
const (
	JobPending   JobStatus = "pending"
	JobRunning   JobStatus = "running"
	JobCompleted JobStatus = "completed"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
)

// Terminal reports whether no further change can happen to a job in s.
func (s JobStatus) Terminal() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// ChunkStatus is the life cycle state of a chunk.
type ChunkStatus string

// Chunk states. Running means leased to a node.
const (
	ChunkPending   ChunkStatus = "pending"
	ChunkRunning   ChunkStatus = "running"
	ChunkCompleted ChunkStatus = "completed"
	ChunkFailed    ChunkStatus = "failed"
	ChunkCancelled ChunkStatus = "cancelled"
)

// AccessType says which nodes may run a job's chunks.
type AccessType string

// Access types: private runs on the owner's nodes only, public on any
// node, user on the owner's nodes and nodes whose owners granted the job
// owner access (GrantNode).
const (
	AccessPrivate AccessType = "private"
	AccessPublic  AccessType = "public"
	AccessUser    AccessType = "user"
)

// Valid reports whether a is one of the access types.
func (a AccessType) Valid() bool {
	return a == AccessPrivate || a == AccessPublic || a == AccessUser
}

// Viewer is who calls a user API method. Admin sees and may act on
// everything; otherwise UserID must be non-empty and scopes the call.
type Viewer struct {
	UserID string
	Admin  bool
}

// may reports whether v may see or act on something owned by owner.
func (v Viewer) may(owner string) bool { return v.Admin || (v.UserID != "" && v.UserID == owner) }

// Node is a registered compute node. Its JSON form is the node JSON of the
// user API and the scheduler feeds.
type Node struct {
	ID           string `json:"id"`
	PublicKey    []byte `json:"-"` // raw 32-byte Ed25519 public key
	ClaimCode    string `json:"-"`
	Name         string `json:"name"`
	Hostname     string `json:"hostname"`
	Platform     string `json:"platform"`
	Version      string `json:"version"`
	TotalCores   int    `json:"totalCores"`
	EnabledCores int    `json:"enabledCores"`
	MaxParallel  int    `json:"maxParallel"`
	OwnerID      string `json:"-"` // "" while unclaimed
	Status       string `json:"status"`
	// Draining is set when the node process says it is shutting down (a
	// heartbeat with HeartbeatInfo.Draining, or the first SHUTTING_DOWN
	// hand-back of a chunk leased since it registered): it is offered no
	// chunks until it registers again. Status reads StatusDraining
	// meanwhile. Both persist while the node is offline.
	Draining bool `json:"draining"`
	// Instance is the process id the node sent when it last registered
	// ("" when it sent none): a draining heartbeat naming another
	// instance is ignored.
	Instance string `json:"-"`
	// RegisteredAt is the node's last registration: a hand-back only
	// drains the node when its chunk was leased at or after it.
	RegisteredAt time.Time `json:"-"`
	Running      int       `json:"running"` // chunks leased to it now
	Online       bool      `json:"online"`  // in hub presence of nodes:online (filled by the Service)
	LastSeenAt   time.Time `json:"-"`       // zero = never
	CreatedAt    time.Time `json:"createdAt"`
	// UpdatedAt is the last change of the node's record (registration,
	// claim, heartbeat).
	UpdatedAt time.Time `json:"-"`
	// RowVersion goes up by one with every change of the row (record or
	// running count): feed readers drop a node older than the one they
	// show. (JSON "rowVersion": "version" is the node's software.)
	RowVersion int64 `json:"rowVersion"`
}

// Claimed reports whether a user owns the node.
func (n Node) Claimed() bool { return n.OwnerID != "" }

// Capacity is how many chunks the node runs at once: min(MaxParallel,
// TotalCores), where a non-positive value of either means the other (and
// 1 when both are unset).
func (n Node) Capacity() int {
	p, c := n.MaxParallel, n.TotalCores
	switch {
	case p <= 0 && c <= 0:
		return 1
	case p <= 0:
		return c
	case c <= 0:
		return p
	case p < c:
		return p
	default:
		return c
	}
}

// Free is the capacity not in use.
func (n Node) Free() int {
	if f := n.Capacity() - n.Running; f > 0 {
		return f
	}
	return 0
}

// MarshalJSON writes the node JSON: {id, name, hostname, platform,
// version, totalCores, enabledCores, maxParallel, claimed, ownerId,
// online, running, capacity, status, draining, lastSeenAt, createdAt,
// updatedAt, rowVersion}, ownerId and lastSeenAt null when unset, updatedAt RFC 3339
// with milliseconds.
func (n Node) MarshalJSON() ([]byte, error) {
	type plain Node
	return json.Marshal(struct {
		plain
		Claimed    bool       `json:"claimed"`
		OwnerID    *string    `json:"ownerId"`
		Capacity   int        `json:"capacity"`
		LastSeenAt *time.Time `json:"lastSeenAt"`
		UpdatedAt  string     `json:"updatedAt"`
	}{plain(n), n.Claimed(), strOrNil(n.OwnerID), n.Capacity(), timeOrNil(n.LastSeenAt), msTime(n.UpdatedAt)})
}

// msTime formats t as RFC 3339 with milliseconds, in UTC.
func msTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// ChunkCounts counts a job's chunks by status.
type ChunkCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
}

// Job is a unit of work of one user. Its JSON form is the job JSON of the
// user API and the scheduler feeds.
type Job struct {
	ID         string          `json:"id"`
	OwnerID    string          `json:"ownerId"`
	Status     JobStatus       `json:"status"`
	AccessType AccessType      `json:"accessType"`
	Priority   int             `json:"priority"`
	Iterations int64           `json:"iterations"`
	ConfigHash string          `json:"configHash"`
	Config     json.RawMessage `json:"config"`
	Chunks     ChunkCounts     `json:"chunks"`
	// IterationsDone counts the iterations of completed chunks.
	IterationsDone int64      `json:"-"`
	Result         *Aggregate `json:"result"`
	Error          string     `json:"-"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"-"`
	FinishedAt     time.Time  `json:"-"`
	// RowVersion goes up by one with every change of the row: feed
	// readers drop a job older than the one they show.
	RowVersion int64 `json:"rowVersion"`
}

// Progress is the share of iterations completed, 0..1.
func (j Job) Progress() float64 {
	if j.Iterations <= 0 {
		return 0
	}
	return float64(j.IterationsDone) / float64(j.Iterations)
}

// MarshalJSON writes the job JSON: {id, ownerId, status, accessType,
// priority, iterations, configHash, config, chunks, progress, result,
// error, createdAt, updatedAt, finishedAt, rowVersion}; result, error and
// finishedAt are null when unset, updatedAt is RFC 3339 with milliseconds.
func (j Job) MarshalJSON() ([]byte, error) {
	type plain Job
	return json.Marshal(struct {
		plain
		Progress   float64    `json:"progress"`
		Error      *string    `json:"error"`
		UpdatedAt  string     `json:"updatedAt"`
		FinishedAt *time.Time `json:"finishedAt"`
	}{plain(j), j.Progress(), strOrNil(j.Error), msTime(j.UpdatedAt), timeOrNil(j.FinishedAt)})
}

// Chunk is a slice of a job's iterations and its lease state.
type Chunk struct {
	ID         string
	JobID      string
	Index      int
	Iterations int64
	SeedOffset int64
	Status     ChunkStatus
	// NodeID and LeaseID name the current lease while running, and the
	// lease that completed it once completed.
	NodeID   string
	LeaseID  string
	Deadline time.Time // lease expiry while running
	Attempts int       // leases granted so far
	// AvailableAt is when a pending chunk may be assigned (backoff).
	AvailableAt time.Time
	Done        int64           // iterations reported done by progress
	Result      json.RawMessage // the node's result once completed
	Error       string          // the last error (failure or expiry)
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Assignment is the message published on chunks:{nodeId} and listed by
// AssignedChunks: {id, jobId, leaseId, iterations, configHash, config,
// seedOffset, deadline} (deadline = RFC 3339 lease expiry).
type Assignment struct {
	ID         string          `json:"id"`
	JobID      string          `json:"jobId"`
	LeaseID    string          `json:"leaseId"`
	Iterations int64           `json:"iterations"`
	ConfigHash string          `json:"configHash"`
	Config     json.RawMessage `json:"config"`
	SeedOffset int64           `json:"seedOffset"`
	Deadline   time.Time       `json:"deadline"`
}

// ChunkResult is the result shape a worker returns for a chunk
// ({iterations, meanDps, stdDps, minDps, maxDps}); other shapes are kept
// per chunk but left out of the Aggregate.
type ChunkResult struct {
	Iterations int64   `json:"iterations"`
	MeanDps    float64 `json:"meanDps"`
	StdDps     float64 `json:"stdDps"`
	MinDps     float64 `json:"minDps"`
	MaxDps     float64 `json:"maxDps"`
}

// Aggregate is a job's combined result: the iteration-weighted mean, the
// pooled standard deviation, min, max, total iterations and the number of
// chunks whose results were combined.
type Aggregate struct {
	TotalIterations int64   `json:"totalIterations"`
	MeanDps         float64 `json:"meanDps"`
	StdDps          float64 `json:"stdDps"`
	MinDps          float64 `json:"minDps"`
	MaxDps          float64 `json:"maxDps"`
	ChunksCompleted int     `json:"chunksCompleted"`
}

// NodeInfo is what a node reports when it registers. Every field is
// optional: nil leaves the stored value as it is (a new node starts with
// "" and 0).
type NodeInfo struct {
	Hostname     *string
	TotalCores   *int
	EnabledCores *int
	Platform     *string
	Version      *string
	// Instance names the registering node process (an id it makes up at
	// start, at most MaxNameLength bytes). Unlike the other fields it is
	// always stored: "" (an older node) means the process has no id.
	Instance string
}

// HeartbeatInfo is what a node reports in a heartbeat; the zero value is
// a plain heartbeat.
type HeartbeatInfo struct {
	// Status is free text shown with the node ("" keeps the stored one).
	Status string
	// Draining says the node process is shutting down: the node is
	// offered no chunks from the commit on, until it registers again.
	Draining bool
	// Instance is the sending process's id (NodeInfo.Instance). A
	// draining heartbeat whose non-empty Instance differs from the
	// registered one is from an older process of the same key and is
	// ignored; "" always counts.
	Instance string
}

// apply sets the present fields of i on n.
func (i NodeInfo) apply(n *Node) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	seti := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&n.Hostname, i.Hostname)
	set(&n.Platform, i.Platform)
	set(&n.Version, i.Version)
	seti(&n.TotalCores, i.TotalCores)
	seti(&n.EnabledCores, i.EnabledCores)
}

// Registration answers RegisterNode: {id, claimCode, claimed}; ClaimCode
// is empty (JSON null) once the node is claimed.
type Registration struct {
	ID        string  `json:"id"`
	ClaimCode *string `json:"claimCode"`
	Claimed   bool    `json:"claimed"`
}

// NodeStatus answers Heartbeat and Verify: {id, name, maxParallel, status}.
type NodeStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	MaxParallel int    `json:"maxParallel"`
	Status      string `json:"status"`
}

// JobSpec is what CreateJob needs. Config is any JSON value (usually an
// object); Priority orders jobs (higher first).
type JobSpec struct {
	Config     json.RawMessage
	Iterations int64
	AccessType AccessType // "" = private
	Priority   int
}

// Created answers CreateJob: {jobId, chunks, configHash}.
type Created struct {
	JobID      string `json:"jobId"`
	Chunks     int    `json:"chunks"`
	ConfigHash string `json:"configHash"`
}

// Completion answers CompleteChunk: {success, alreadyCompleted?,
// jobComplete}.
type Completion struct {
	Success          bool `json:"success"`
	AlreadyCompleted bool `json:"alreadyCompleted,omitempty"`
	JobComplete      bool `json:"jobComplete"`
}

// Failure is a node's report that a chunk failed. Retryable false fails
// the chunk and its job at once. A retryable failure coded
// CodeShuttingDown is a hand-back (the node is stopping and did not run
// the chunk, or stopped it): the chunk is pending again without the
// attempt counting, so a draining node cannot use up a chunk's attempts.
type Failure struct {
	Message   string
	Code      string
	Retryable bool
}

// CodeShuttingDown is the failure code of a node handing a chunk back as
// it shuts down (the worker pool's code of the same name). It means "this
// node process is stopping": the first such hand-back of a chunk leased
// since the node last registered also marks the node draining
// (Node.Draining).
const CodeShuttingDown = "SHUTTING_DOWN"

// StatusDraining is the node status of a draining node (Node.Draining):
// it stays so whatever later heartbeats report, until the node registers
// again. Registering also resets a status text "draining" left by an
// older server.
const StatusDraining = "draining"

// StatusIdle is the status of a new node, and of a draining node that
// registers again.
const StatusIdle = "idle"

// JobQuery selects jobs for Jobs. Zero values mean no filter; Limit 0
// means DefaultListLimit.
type JobQuery struct {
	Status JobStatus
	Limit  int
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
