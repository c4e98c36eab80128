-- taskstore SQLite schema, version 8: the failed attempts of a task (Task.failures).
-- A JSON array of objects (attempt, ended_at, worker_id, failure), oldest first, at most
-- transitions.MAX_FAILURES_KEPT of them; NULL while the task has none. Written only when an attempt ends
-- without success, so rows from before this version, and every task that never failed, read as no failures.

ALTER TABLE tasks ADD COLUMN failures TEXT;

-- The archive keeps the tasks table's column order with archived_at last (rows are read positionally),
-- so it is rebuilt with the new column in place.
CREATE TABLE tasks_archive_v8 (
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
    failures            TEXT,
    archived_at         INTEGER NOT NULL
);
INSERT INTO tasks_archive_v8 (seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts,
                              attempts, processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at,
                              report_at, report_data, cancel_requested, result_at, result_value, result_failure,
                              created_at, updated_at, last_enqueued_at, finished_at, version, recurring_id, group_id,
                              unique_key, unique_hold, unique_until, concurrency_key, expires_at, archived_at)
SELECT seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts, attempts,
       processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at, report_at, report_data,
       cancel_requested, result_at, result_value, result_failure, created_at, updated_at, last_enqueued_at,
       finished_at, version, recurring_id, group_id, unique_key, unique_hold, unique_until, concurrency_key,
       expires_at, archived_at
  FROM tasks_archive;
DROP TABLE tasks_archive;
ALTER TABLE tasks_archive_v8 RENAME TO tasks_archive;
CREATE INDEX IF NOT EXISTS tasks_archive_id ON tasks_archive (id);
CREATE INDEX IF NOT EXISTS tasks_archive_group ON tasks_archive (group_id) WHERE group_id IS NOT NULL;
