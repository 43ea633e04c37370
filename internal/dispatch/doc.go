// Package dispatch routes circle `play` requests to each circle's workers
// and returns their results, with per-circle queues so that one circle's
// slow scripts never delay another's.
//
// Local runs scripts in-process: every circle has its own bounded queue and
// its own Concurrency worker goroutines.
//
// Redis uses the rhailib layout so that workers in any language can consume
// the same queues (see docs/circles.md for the exact layout): the caller
// writes hash rhai_task_details:{task_id}, pushes task_id onto list
// rhai_tasks:{circle}, and blocks on list rhai_reply:{task_id}; the server
// also runs Concurrency workers per circle on those queues unless
// DisableWorkers is set.
package dispatch
