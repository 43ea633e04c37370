package scheduler

import "github.com/switchboard-rt/switchboard/internal/errs"

// Reasons of the scheduler's domain errors, for adapters that branch on
// more than the error code (errors.Is works with the sentinels below).
const (
	ReasonNodeNotFound    = "node not found"
	ReasonNodeNotClaimed  = "node not claimed"
	ReasonChunkNotFound   = "chunk not found"
	ReasonJobNotFound     = "job not found"
	ReasonLeaseLost       = "lease lost"
	ReasonNotOwner        = "not owner"
	ReasonNotYours        = "not yours"
	ReasonUnknownCode     = "unknown claim code"
	ReasonAlreadyClaimed  = "already claimed"
	ReasonNotCancellable  = "job not cancellable"
	ReasonChunkNotRunning = "chunk not running"
	ReasonConfigTooLarge  = "config too large"
	ReasonStopped         = "scheduler stopped"
)

// Sentinel errors. Adapters map them by Code (NotFound → 404,
// PermissionDenied → 403, Conflict → 409, Invalid → 400, Unavailable →
// 503); the Message is client-safe.
var (
	// ErrNodeNotFound: no node has this id or key.
	ErrNodeNotFound = errs.Sentinel(errs.NotFound, ReasonNodeNotFound)
	// ErrNodeNotClaimed: the node exists but no user has claimed it (the
	// origin's heartbeat answers 404 "Node not found or not claimed").
	ErrNodeNotClaimed = &errs.Error{Code: errs.NotFound, Reason: ReasonNodeNotClaimed, Message: "Node not found or not claimed"}
	// ErrChunkNotFound: no chunk has this id.
	ErrChunkNotFound = errs.Sentinel(errs.NotFound, ReasonChunkNotFound)
	// ErrJobNotFound: no job has this id, or the viewer may not see it.
	ErrJobNotFound = errs.Sentinel(errs.NotFound, ReasonJobNotFound)
	// ErrLeaseLost: the caller held the chunk once but its lease expired
	// and the chunk was reassigned (or the job was cancelled or failed).
	ErrLeaseLost = errs.Sentinel(errs.Conflict, ReasonLeaseLost)
	// ErrNotOwner: the chunk is not (and never was) leased to this node.
	ErrNotOwner = &errs.Error{Code: errs.PermissionDenied, Reason: ReasonNotOwner, Message: "Chunk not owned by this node"}
	// ErrNotYours: the job or node belongs to another user.
	ErrNotYours = errs.Sentinel(errs.PermissionDenied, ReasonNotYours)
	// ErrUnknownClaimCode: no unclaimed node has this claim code.
	ErrUnknownClaimCode = errs.Sentinel(errs.NotFound, ReasonUnknownCode)
	// ErrAlreadyClaimed: the node with this code is claimed already.
	ErrAlreadyClaimed = errs.Sentinel(errs.Conflict, ReasonAlreadyClaimed)
	// ErrNotCancellable: the job is completed, failed or cancelled.
	ErrNotCancellable = errs.Sentinel(errs.Conflict, ReasonNotCancellable)
	// ErrStopped: the Service is shutting down or not running.
	ErrStopped = &errs.Error{Code: errs.Unavailable, Reason: ReasonStopped, Message: ReasonStopped, Temporary: true}
)

// invalid returns an Invalid error whose message names field.
func invalid(field, msg string) *errs.Error {
	return errs.New(errs.Invalid, field+": "+msg)
}
