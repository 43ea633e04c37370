// Package worker runs a supervised pool of worker processes that execute
// tasks and events over a JSON-lines protocol on their stdin and stdout
// (seed 004, issue 5).
//
// Each request is written as one JSON object per line to the least-loaded
// worker and matched with its reply by id, so many requests are in flight per
// worker at once. The pool bounds in-flight requests per worker and the wait
// queue, applies per-request timeouts (sending a "cancel" line), pings
// workers, replaces workers that exit or break the protocol (with backoff),
// and recycles them gracefully on max jobs, TTL, idle TTL, memory or the
// worker's own request (a reply with "recycle":true). A request may carry
// a CallHandler that answers the worker's "call" lines (calls back into
// the server, e.g. the circle store for the sandbox); KillOnTimeout kills
// a worker whose request overran instead of only cancelling it. Every
// failure is reported as an *Error with a stable Code; adapters (the HTTP
// gateway, the hub's rpc via RPCAdapter) map codes to their wire in one
// place each.
//
// Lock order: Pool.mu before proc.mu; neither is held while writing to a
// pipe or waiting on a channel.
package worker
