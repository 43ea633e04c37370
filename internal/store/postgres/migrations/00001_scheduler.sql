-- +goose Up
-- The compute scheduler (internal/scheduler): nodes, grants, jobs, chunks
-- and every lease granted. Times are unix microseconds, 0 = unset.
CREATE TABLE sched_nodes (
    id            TEXT    PRIMARY KEY,
    public_key    BYTEA   NOT NULL UNIQUE,
    claim_code    TEXT    NOT NULL,
    name          TEXT    NOT NULL DEFAULT '',
    hostname      TEXT    NOT NULL DEFAULT '',
    platform      TEXT    NOT NULL DEFAULT '',
    version       TEXT    NOT NULL DEFAULT '',
    total_cores   BIGINT  NOT NULL DEFAULT 0,
    enabled_cores BIGINT  NOT NULL DEFAULT 0,
    max_parallel  BIGINT  NOT NULL DEFAULT 0,
    owner_id      TEXT,
    status        TEXT    NOT NULL DEFAULT '',
    running       BIGINT  NOT NULL DEFAULT 0 CHECK (running >= 0),
    last_seen_at  BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX sched_nodes_claim_code ON sched_nodes (claim_code);
CREATE INDEX sched_nodes_owner ON sched_nodes (owner_id, created_at);

CREATE TABLE sched_grants (
    node_id    TEXT    NOT NULL REFERENCES sched_nodes (id),
    user_id    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (node_id, user_id)
);

CREATE TABLE sched_jobs (
    id              TEXT    PRIMARY KEY,
    owner_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    access_type     TEXT    NOT NULL,
    priority        BIGINT  NOT NULL,
    iterations      BIGINT  NOT NULL,
    config_hash     TEXT    NOT NULL,
    config          BYTEA   NOT NULL,
    n_total         BIGINT  NOT NULL,
    n_pending       BIGINT  NOT NULL,
    n_running       BIGINT  NOT NULL,
    n_completed     BIGINT  NOT NULL,
    n_failed        BIGINT  NOT NULL,
    n_cancelled     BIGINT  NOT NULL,
    iterations_done BIGINT  NOT NULL,
    result          BYTEA,
    error           TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    finished_at     BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX sched_jobs_owner ON sched_jobs (owner_id, created_at);
CREATE INDEX sched_jobs_created ON sched_jobs (created_at);
CREATE INDEX sched_jobs_runnable ON sched_jobs (status, priority, created_at);

CREATE TABLE sched_chunks (
    id           TEXT    PRIMARY KEY,
    job_id       TEXT    NOT NULL REFERENCES sched_jobs (id),
    idx          BIGINT  NOT NULL,
    iterations   BIGINT  NOT NULL,
    seed_offset  BIGINT  NOT NULL,
    status       TEXT    NOT NULL,
    node_id      TEXT,
    lease_id     TEXT,
    deadline     BIGINT  NOT NULL DEFAULT 0,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    available_at BIGINT  NOT NULL DEFAULT 0,
    done         BIGINT  NOT NULL DEFAULT 0,
    result       BYTEA,
    error        TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX sched_chunks_job_status ON sched_chunks (job_id, status, idx);
-- Partial indexes: a chunk row is in at most one of them, so a status
-- change touches few index entries.
CREATE INDEX sched_chunks_deadline ON sched_chunks (deadline) WHERE status = 'running';
CREATE INDEX sched_chunks_available ON sched_chunks (available_at) WHERE status = 'pending';
CREATE INDEX sched_chunks_node ON sched_chunks (node_id) WHERE status = 'running';

CREATE TABLE sched_leases (
    lease_id   TEXT    PRIMARY KEY,
    chunk_id   TEXT    NOT NULL,
    node_id    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX sched_leases_chunk ON sched_leases (chunk_id, node_id);

-- +goose Down
DROP TABLE sched_leases;
DROP TABLE sched_chunks;
DROP TABLE sched_jobs;
DROP TABLE sched_grants;
DROP TABLE sched_nodes;
