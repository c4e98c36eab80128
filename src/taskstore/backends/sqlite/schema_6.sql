-- taskstore SQLite schema, version 6: flow control (SPEC §9) — unique tasks, per-key limits, expiry,
-- paused queues — and the owner of an App's recurring schedules.

ALTER TABLE tasks ADD COLUMN unique_key TEXT;
-- The states in which the task still holds its unique key, as ",queued,claimed,failed,"; NULL once released
-- (it is never taken back). The unique index below is what keeps two live tasks from sharing a key.
ALTER TABLE tasks ADD COLUMN unique_hold TEXT;
ALTER TABLE tasks ADD COLUMN unique_until INTEGER;     -- the hold lapses for a new create after this
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE tasks ADD COLUMN expires_at INTEGER;       -- never claimed at or after this

CREATE UNIQUE INDEX IF NOT EXISTS tasks_unique ON tasks (queue, unique_key) WHERE unique_hold IS NOT NULL;
-- The claimed tasks of a key: a claim counts them against the key's concurrency.
CREATE INDEX IF NOT EXISTS tasks_concurrency ON tasks (concurrency_key)
    WHERE state = 'claimed' AND concurrency_key IS NOT NULL;
-- Waiting tasks that can expire: the reaper ends them.
CREATE INDEX IF NOT EXISTS tasks_expiry ON tasks (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('queued', 'failed');

-- The archive keeps the tasks table's column order with archived_at last (rows are read positionally),
-- so it is rebuilt with the new columns in place.
CREATE TABLE tasks_archive_v6 (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT    NOT NULL,
    queue               TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    args                BLOB,
    context             TEXT,
    reference_id        TEXT,
    priority            INTEGER NOT NULL,
    run_at              INTEGER NOT NULL,
    max_attempts        INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    processing_timeout  REAL    NOT NULL,
    retry               TEXT,
    state               TEXT    NOT NULL,
    worker_id           TEXT,
    token               TEXT,
    claimed_at          INTEGER,
    times_out_at        INTEGER,
    report_at           INTEGER,
    report_data         TEXT,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    result_at           INTEGER,
    result_value        BLOB,
    result_failure      TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_enqueued_at    INTEGER NOT NULL,
    finished_at         INTEGER,
    version             INTEGER NOT NULL,
    recurring_id        TEXT,
    group_id            TEXT,
    unique_key          TEXT,
    unique_hold         TEXT,
    unique_until        INTEGER,
    concurrency_key     TEXT,
    expires_at          INTEGER,
    archived_at         INTEGER NOT NULL
);
INSERT INTO tasks_archive_v6 (seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts,
                              attempts, processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at,
                              report_at, report_data, cancel_requested, result_at, result_value, result_failure,
                              created_at, updated_at, last_enqueued_at, finished_at, version, recurring_id, group_id,
                              archived_at)
SELECT seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts, attempts,
       processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at, report_at, report_data,
       cancel_requested, result_at, result_value, result_failure, created_at, updated_at, last_enqueued_at,
       finished_at, version, recurring_id, group_id, archived_at
  FROM tasks_archive;
DROP TABLE tasks_archive;
ALTER TABLE tasks_archive_v6 RENAME TO tasks_archive;
CREATE INDEX IF NOT EXISTS tasks_archive_id ON tasks_archive (id);
CREATE INDEX IF NOT EXISTS tasks_archive_group ON tasks_archive (group_id) WHERE group_id IS NOT NULL;

-- Paused queues (a row may stay after a resume: paused = 0).
CREATE TABLE IF NOT EXISTS queues (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Per-key limits and their token buckets (tokens at refilled_at; see taskstore.gates).
CREATE TABLE IF NOT EXISTS limits (
    key          TEXT    PRIMARY KEY,
    concurrency  INTEGER,
    rate         INTEGER,
    per          REAL    NOT NULL,
    tokens       REAL    NOT NULL,
    refilled_at  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- A schedule declared by an App names it; a worker of that App removes the App's schedules it no longer declares.
ALTER TABLE recurring ADD COLUMN owner TEXT;
