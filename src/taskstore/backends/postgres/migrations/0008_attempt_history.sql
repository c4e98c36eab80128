-- taskstore PostgreSQL schema, migration 8: the failed attempts of a task (Task.failures).
-- A jsonb array of objects (attempt, ended_at, worker_id, failure), oldest first, at most
-- transitions.MAX_FAILURES_KEPT of them; NULL while the task has none. Written only when an attempt ends
-- without success, so rows from before this migration, and every task that never failed, read as no failures.
-- A nullable column without a default is added without rewriting a row.

ALTER TABLE {schema}.tasks ADD COLUMN failures jsonb;

-- The archive keeps the tasks table's column order with archived_at last (rows are read positionally),
-- so it is rebuilt with the new column in place: the archive is copied once, in this migration's transaction.
CREATE TABLE {schema}.tasks_archive_v8 (LIKE {schema}.tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {schema}.tasks_archive_v8 ADD COLUMN archived_at timestamptz NOT NULL;
INSERT INTO {schema}.tasks_archive_v8 (seq, id, queue, kind, args, context, reference_id, priority, run_at,
                                       max_attempts, attempts, processing_timeout, retry, state, worker_id, token,
                                       claimed_at, times_out_at, report_at, report_data, cancel_requested, result_at,
                                       result_value, result_failure, created_at, updated_at, last_enqueued_at,
                                       finished_at, version, recurring_id, group_id, unique_key, unique_hold,
                                       unique_until, concurrency_key, expires_at, archived_at)
SELECT seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts, attempts,
       processing_timeout, retry, state, worker_id, token, claimed_at, times_out_at, report_at, report_data,
       cancel_requested, result_at, result_value, result_failure, created_at, updated_at, last_enqueued_at,
       finished_at, version, recurring_id, group_id, unique_key, unique_hold, unique_until, concurrency_key,
       expires_at, archived_at
  FROM {schema}.tasks_archive;
DROP TABLE {schema}.tasks_archive;
ALTER TABLE {schema}.tasks_archive_v8 RENAME TO tasks_archive;
ALTER TABLE {schema}.tasks_archive ADD PRIMARY KEY (seq);
CREATE INDEX tasks_archive_id ON {schema}.tasks_archive (id);
CREATE INDEX tasks_archive_group ON {schema}.tasks_archive (group_id) WHERE group_id IS NOT NULL;
