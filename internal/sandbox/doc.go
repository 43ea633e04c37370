// Package sandbox runs circle `play` scripts in a small supervised pool of
// sandbox processes, so that a script cannot exhaust the server's memory or
// cores (issue 8).
//
// The parent side, Runner, implements the dispatchers' Runner on top of a
// worker.Pool whose command is the server binary's hidden `sandbox-worker`
// subcommand (ChildMain). A play is one task on the worker line protocol;
// the child runs it with the script engine and reaches the circle store and
// the hub through worker calls answered by the parent, which keeps the
// store. Store writes are staged in the parent and applied in one
// transaction when the play succeeds, under the per-circle quota: a play
// that fails, or would exceed the quota, writes nothing.
//
// Limits, from first to last line of defence:
//   - output: capped while it is written (internal/script);
//   - memory: a watchdog in the child samples the heap and cancels the play
//     with "memory limit exceeded (N MiB)"; debug.SetMemoryLimit makes the
//     GC work near the cap; RLIMIT_DATA kills the process when a single
//     allocation jumps past it, and the parent then names the memory limit;
//   - CPU: a per-play RLIMIT_CPU (SIGXCPU cancels the play, a second one
//     exits the process), and the child runs at nice 19 with GOMAXPROCS 1;
//   - wall time: the engine's timeout, and the parent kills and replaces a
//     sandbox that overruns it.
//
// Every limit reaches the client as a *script.Error naming it.
package sandbox
