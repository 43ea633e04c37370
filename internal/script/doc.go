// Package script runs circle `play` scripts: Starlark programs, sandboxed
// (no load, no file or network access), with CONTEXT_ID (the circle key)
// and CALLER_ID (the authenticated public key or "") predeclared, a
// per-circle key-value store bound as `store`, `publish(channel, data)`
// into the circle's hub channels, and the `json` module.
//
// The result of a run is everything the script printed (each print adds a
// line ending in "\n") followed, when the last top-level statement is an
// expression whose value is not None, by that value's str(). Runs are
// bounded by a wall-clock timeout, an execution step cap, a script size and
// an output size; all are configurable. The output cap applies while the
// output is written (print and the result value go through a capped
// writer), so a small value with a huge repr never gets formatted in full.
// Memory and CPU are not metered here: internal/sandbox runs the engine in
// limited processes and names those limits through the context's cause.
//
// The package imports no transport and no driver: the key-value store and
// the publisher are interfaces declared here and implemented elsewhere.
package script
