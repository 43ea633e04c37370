-- +goose Up
-- The node process that registered last (internal/scheduler
-- Node.Instance, Node.RegisteredAt, unix microseconds): a late drain from
-- an older process of the same key is ignored. A status "draining"
-- without the flag (written before the flag existed) is reset.
ALTER TABLE sched_nodes ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE sched_nodes ADD COLUMN registered_at INTEGER NOT NULL DEFAULT 0;
UPDATE sched_nodes SET status = 'idle' WHERE status = 'draining' AND NOT draining;

-- +goose Down
ALTER TABLE sched_nodes DROP COLUMN registered_at;
ALTER TABLE sched_nodes DROP COLUMN instance;
