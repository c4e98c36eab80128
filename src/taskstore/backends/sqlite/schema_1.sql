-- taskstore SQLite schema, version 1. Times are integer microseconds since the Unix epoch (UTC).
-- Columns are read positionally (SELECT *): later migrations only ever append columns.

CREATE TABLE IF NOT EXISTS tasks (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order; never reused
    id                  TEXT    NOT NULL UNIQUE,
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
    group_id            TEXT
);

-- Exactly the claimable rows, in claim order, per queue and across all queues.
CREATE INDEX IF NOT EXISTS tasks_claim_queue ON tasks (queue, priority DESC, run_at, seq)
    WHERE state IN ('queued', 'failed');
CREATE INDEX IF NOT EXISTS tasks_claim_any ON tasks (priority DESC, run_at, seq)
    WHERE state IN ('queued', 'failed');
CREATE INDEX IF NOT EXISTS tasks_lease_timeouts ON tasks (times_out_at) WHERE state = 'claimed';
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_recurring ON tasks (recurring_id, state) WHERE recurring_id IS NOT NULL;

-- Archived tasks: the same columns plus when they moved. An id may appear more than once here
-- (it becomes free again in ``tasks`` once archived).
CREATE TABLE IF NOT EXISTS tasks_archive (
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
    archived_at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_archive_id ON tasks_archive (id);
