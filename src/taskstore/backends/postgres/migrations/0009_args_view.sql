-- taskstore PostgreSQL schema, migration 9: JSON views of tasks for ad-hoc queries.
-- args and result_value stay bytea (the codec's bytes): with a jsonb column, bulk enqueue of 1 KB payloads took
-- 12-80% longer and 45% more space (small ones: within noise) (bench/pg_args_jsonb.py). These views decode the
-- payload at read time instead, for people and reports, never for taskstore's own queries:
--     SELECT id, state, args->'args'->>0 FROM taskstore.tasks_json WHERE args->'kwargs'->>'to' = 'a@b';
-- A payload that is not JSON (another codec) reads as NULL, never as an error that would fail the query.
-- The views name their columns: a later migration that rebuilds tasks or tasks_archive drops and re-creates them.

-- Not PARALLEL SAFE: its exception block starts a subtransaction, which a parallel worker may not.
CREATE FUNCTION {schema}.json_or_null(payload bytea) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN convert_from(payload, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;  -- not UTF-8, or not JSON: written by another codec
END
$$;

CREATE VIEW {schema}.tasks_json AS
SELECT seq, id, queue, kind, state, {schema}.json_or_null(args) AS args, context, reference_id, priority, run_at,
       attempts, max_attempts, worker_id, claimed_at, times_out_at, cancel_requested, result_at,
       {schema}.json_or_null(result_value) AS result_value, result_failure, created_at, updated_at, finished_at,
       recurring_id, group_id, unique_key, concurrency_key, expires_at
  FROM {schema}.tasks;

CREATE VIEW {schema}.tasks_archive_json AS
SELECT seq, id, queue, kind, state, {schema}.json_or_null(args) AS args, context, reference_id, priority, run_at,
       attempts, max_attempts, worker_id, claimed_at, times_out_at, cancel_requested, result_at,
       {schema}.json_or_null(result_value) AS result_value, result_failure, created_at, updated_at, finished_at,
       recurring_id, group_id, unique_key, concurrency_key, expires_at, archived_at
  FROM {schema}.tasks_archive;
