-- +goose Up
-- An ordering token per node and job row (internal/scheduler): row_version
-- goes up by one on every change, so a live page can drop feed updates
-- older than the row it shows. Nodes get updated_at (unix microseconds).
ALTER TABLE sched_nodes ADD COLUMN row_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sched_nodes ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE sched_nodes SET updated_at = MAX(created_at, last_seen_at);
ALTER TABLE sched_jobs ADD COLUMN row_version INTEGER NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE sched_jobs DROP COLUMN row_version;
ALTER TABLE sched_nodes DROP COLUMN updated_at;
ALTER TABLE sched_nodes DROP COLUMN row_version;
