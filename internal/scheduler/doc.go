// Package scheduler is the compute scheduler: users create jobs, a job is
// split into chunks of iterations, chunks are leased to registered compute
// nodes that are online in the hub, nodes report progress, completion or
// failure, and the results of a job are aggregated exactly once.
//
// # Model
//
// A Job of N iterations becomes ceil(N/ChunkSize) Chunks; chunk i has
// min(ChunkSize, rest) iterations and seed offset i*ChunkSize. A pending
// chunk is assigned to the eligible online node with the most free capacity
// (capacity = min(maxParallel, totalCores) minus its running chunks; the
// job owner's nodes are always eligible, any node for public jobs, nodes
// granted to the owner for "user" jobs), highest priority first, then
// oldest. An assignment is a lease: the node must complete the chunk,
// report progress or heartbeat before the lease deadline, otherwise the
// chunk goes back to pending after an exponential backoff with jitter.
// After MaxAttempts leases, or a non-retryable failure, the chunk and its
// job fail with the last error.
//
// A node whose process is shutting down is draining (Node.Draining): the
// process says so in a heartbeat (HeartbeatInfo.Draining) or by its first
// hand-back (CodeShuttingDown) of a chunk leased since it registered, and
// the node gets no chunk from then on until it registers again. A late
// drain of an older process of the same key (another instance, or a
// chunk leased before the last registration) is ignored. A hand-back is
// no attempt and pending again at once, for another node.
//
// # Assign and publish
//
// Leases are granted in one function (leaseIn, inside a store
// transaction) and published in one (publishLeased, the only code that
// writes chunks:{nodeId}), which runs on every committed lease: the
// assignment is committed to the Store first, then published to
// chunks:{nodeId} (a channel with history, so a reconnecting node recovers
// it). If the publication fails the assignment is rolled back in the store
// (guarded by its lease id) and the chunk is pending again; if the process
// dies between commit and publish, the node still finds the chunk through
// AssignedChunks when it (re)connects, and otherwise the lease expires and
// the chunk is reassigned. No assignment is ever silently lost.
//
// # Wake-ups
//
// Assignment passes run when a job is created, a node comes online
// (hub presence join on nodes:online), a chunk is freed (completed,
// failed, expired, cancelled), a backoff elapses, another process's store
// notifies (PostgreSQL LISTEN/NOTIFY), and from a slow safety sweep
// (Config.SweepInterval). Online tracking uses hub join/leave pushes and
// one initial hub.Presence read; nothing polls the hub on a short period.
//
// # Concurrency
//
// The Service is safe for concurrent use. Every state change runs in one
// Store transaction; transactions lock rows in the order job, chunks,
// nodes by id (see Tx; leasing skips locked chunk rows instead of waiting),
// so several Services on one PostgreSQL database never assign a chunk
// twice and aggregate a job exactly once. Completions arriving together
// share one transaction (group commit: SQLite, and PostgreSQL through the
// store's GroupCommit; a batch that holds several jobs' locks may hit a
// deadlock, which the store retries). On a store that serialises
// transactions (SQLite) an assignment pass plans and leases in one.
package scheduler
