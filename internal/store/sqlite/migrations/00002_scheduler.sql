-- +goose Up
-- The compute scheduler (internal/scheduler): nodes, grants, jobs, chunks
-- and every lease granted. Times are unix microseconds, 0 = unset.
CREATE TABLE sched_nodes (
    id            TEXT    PRIMARY KEY,
    public_key    BLOB    NOT NULL UNIQUE,
    claim_code    TEXT    NOT NULL,
    name          TEXT    NOT NULL DEFAULT '',
    hostname      TEXT    NOT NULL DEFAULT '',
    platform      TEXT    NOT NULL DEFAULT '',
    version       TEXT    NOT NULL DEFAULT '',
    total_cores   INTEGER NOT NULL DEFAULT 0,
    enabled_cores INTEGER NOT NULL DEFAULT 0,
    max_parallel  INTEGER NOT NULL DEFAULT 0,
    owner_id      TEXT,
    status        TEXT    NOT NULL DEFAULT '',
    running       INTEGER NOT NULL DEFAULT 0 CHECK (running >= 0),
    last_seen_at  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE INDEX sched_nodes_claim_code ON sched_nodes (claim_code);
CREATE INDEX sched_nodes_owner ON sched_nodes (owner_id, created_at);

CREATE TABLE sched_grants (
    node_id    TEXT    NOT NULL REFERENCES sched_nodes (id),
    user_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (node_id, user_id)
) WITHOUT ROWID;

CREATE TABLE sched_jobs (
    id              TEXT    PRIMARY KEY,
    owner_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    access_type     TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    iterations      INTEGER NOT NULL,
    config_hash     TEXT    NOT NULL,
    config          BLOB    NOT NULL,
    n_total         INTEGER NOT NULL,
    n_pending       INTEGER NOT NULL,
    n_running       INTEGER NOT NULL,
    n_completed     INTEGER NOT NULL,
    n_failed        INTEGER NOT NULL,
    n_cancelled     INTEGER NOT NULL,
    iterations_done INTEGER NOT NULL,
    result          BLOB,
    error           TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sched_jobs_owner ON sched_jobs (owner_id, created_at);
CREATE INDEX sched_jobs_created ON sched_jobs (created_at);
CREATE INDEX sched_jobs_runnable ON sched_jobs (status, priority, created_at);

CREATE TABLE sched_chunks (
    id           TEXT    PRIMARY KEY,
    job_id       TEXT    NOT NULL REFERENCES sched_jobs (id),
    idx          INTEGER NOT NULL,
    iterations   INTEGER NOT NULL,
    seed_offset  INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    node_id      TEXT,
    lease_id     TEXT,
    deadline     INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL DEFAULT 0,
    done         INTEGER NOT NULL DEFAULT 0,
    result       BLOB,
    error        TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
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
    created_at INTEGER NOT NULL
);
CREATE INDEX sched_leases_chunk ON sched_leases (chunk_id, node_id);

-- +goose Down
DROP TABLE sched_leases;
DROP TABLE sched_chunks;
DROP TABLE sched_jobs;
DROP TABLE sched_grants;
DROP TABLE sched_nodes;
