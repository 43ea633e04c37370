package node

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-rt/switchboard/internal/auth"
)

// This file is the node's one table of the node API's HTTP statuses (the
// client side of internal/schedapi's errors.go).

// APIError is a non-2xx answer of the node API: its HTTP status and the
// server's {"error": …} message.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// statusOf returns the HTTP status of an *APIError in err's chain, or 0.
func statusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// success reports whether an HTTP status is a 2xx.
func success(status int) bool { return status >= 200 && status <= 299 }

// retryable reports whether a node API error may go away: a network error,
// 408, 429 or 5xx.
func retryable(err error) bool {
	s := statusOf(err)
	return s == 0 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
}

// notClaimed reports the answer of /nodes/verify and /nodes/heartbeat for
// a node no user has claimed (yet): 404.
func notClaimed(err error) bool { return statusOf(err) == http.StatusNotFound }

// leaseLost reports whether a chunk report was refused because the node no
// longer holds the chunk: 409 (lease lost: expired and reassigned, or the
// job ended), 403 (another node's chunk) or 404 (no such chunk).
func leaseLost(err error) bool {
	switch statusOf(err) {
	case http.StatusConflict, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// tokenRefused reports whether /nodes/token refused for good (the node
// was deleted or unclaimed): the hub client then stops reconnecting.
func tokenRefused(err error) bool {
	s := statusOf(err)
	return s == http.StatusForbidden || s == http.StatusNotFound
}

// replayed reports the server's refusal of a signature it has already
// seen: 401 "Replayed signature" (auth.ReasonReplayedSignature).
func replayed(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Message == auth.ReasonReplayedSignature
}
