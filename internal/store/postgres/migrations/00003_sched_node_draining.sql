-- +goose Up
-- A node that is shutting down (internal/scheduler Node.Draining) is
-- offered no chunks until it registers again.
ALTER TABLE sched_nodes ADD COLUMN draining BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE sched_nodes DROP COLUMN draining;
