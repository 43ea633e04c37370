-- +goose Up
-- A node that is shutting down (internal/scheduler Node.Draining) is
-- offered no chunks until it registers again (0 or 1).
ALTER TABLE sched_nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE sched_nodes DROP COLUMN draining;
