-- taskstore PostgreSQL schema, migration 6: flow control (SPEC §9) — unique tasks, per-key limits, expiry,
-- paused queues — and the owner of an App's recurring schedules.

ALTER TABLE {schema}.tasks
    ADD COLUMN unique_key      text,
    -- The states in which the task still holds its unique key, as ',queued,claimed,failed,'; NULL once
    -- released (it is never taken back). The unique index below keeps two live tasks from sharing a key.
    ADD COLUMN unique_hold     text,
    ADD COLUMN unique_until    timestamptz,   -- the hold lapses for a new create after this
    ADD COLUMN concurrency_key text,
    ADD COLUMN expires_at      timestamptz;   -- never claimed at or after this

CREATE UNIQUE INDEX tasks_unique ON {schema}.tasks (queue, unique_key) WHERE unique_hold IS NOT NULL;
-- The claimed tasks of a key: a claim counts them against the key's concurrency.
CREATE INDEX tasks_concurrency ON {schema}.tasks (concurrency_key)
    WHERE state = 'claimed' AND concurrency_key IS NOT NULL;
-- Waiting tasks that can expire: the reaper ends them.
CREATE INDEX tasks_expiry ON {schema}.tasks (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('queued', 'failed');

-- The archive keeps the tasks table's column order with archived_at last (rows are read positionally),
-- so it is rebuilt with the new columns in place.
CREATE TABLE {schema}.tasks_archive_v6 (LIKE {schema}.tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {schema}.tasks_archive_v6 ADD COLUMN archived_at timestamptz NOT NULL;
INSERT INTO {schema}.tasks_archive_v6 (seq, id, queue, kind, args, context, reference_id, priority, run_at,
                                       max_attempts, attempts, processing_timeout, retry, state, worker_id, token,
                                       claimed_at, times_out_at, report_at, report_data, cancel_requested, result_at,
                                       result_value, result_failure, created_at, updated_at, last_enqueued_at,
                                       finished_at, version, recurring_id, group_id, archived_at)
SELECT seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts, attempts,
       processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at, report_at, report_data,
       cancel_requested, result_at, result_value, result_failure, created_at, updated_at, last_enqueued_at,
       finished_at, version, recurring_id, group_id, archived_at
  FROM {schema}.tasks_archive;
DROP TABLE {schema}.tasks_archive;
ALTER TABLE {schema}.tasks_archive_v6 RENAME TO tasks_archive;
ALTER TABLE {schema}.tasks_archive ADD PRIMARY KEY (seq);
CREATE INDEX tasks_archive_id ON {schema}.tasks_archive (id);
CREATE INDEX tasks_archive_group ON {schema}.tasks_archive (group_id) WHERE group_id IS NOT NULL;

-- Paused queues (a row may stay after a resume: paused = false).
CREATE TABLE {schema}.queues (
    name        text        PRIMARY KEY,
    paused      boolean     NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Per-key limits and their token buckets (tokens at refilled_at; see taskstore.gates).
CREATE TABLE {schema}.limits (
    key          text             PRIMARY KEY,
    concurrency  integer,
    rate         integer,
    per          double precision NOT NULL,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz      NOT NULL,
    updated_at   timestamptz      NOT NULL
);

-- A schedule declared by an App names it; a worker of that App removes the App's schedules it no longer declares.
ALTER TABLE {schema}.recurring ADD COLUMN owner text;
