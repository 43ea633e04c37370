// Package gateway is the HTTP adapter of the worker gateway (seed 004,
// issue 5): {base}/task/{taskId}, {base}/event/{eventId} and
// {base}/discovery, with token auth, CORS and body limits, in front of a
// worker pool (package worker). Error codes map to HTTP statuses in one
// place, statusFor.
package gateway
