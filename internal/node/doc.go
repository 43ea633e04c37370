// Package node is the compute node program (`switchboard node`): it keeps
// an Ed25519 identity, registers with a Switchboard scheduler over the
// signed node API, waits until a user claims it, connects to the hub with
// the official centrifuge-go client (server-side subscriptions to
// chunks:{id} and nodes:{id} from its connect token, recovery on) and runs
// the chunks assigned to it through a stdio worker pool (package worker),
// reporting progress (which extends the chunk's lease), results and
// failures.
//
// Every goroutine belongs to the Node: Run starts them, Shutdown stops
// them. Shutdown first lets running chunks finish for a grace period, then
// hands the rest back to the scheduler (POST /chunks/fail, retryable, "node
// shutting down") so another node picks them up at once.
//
// Lock order: Node.mu, then chunkRun fields guarded by it; no lock is held
// during an HTTP request or a worker call.
package node
