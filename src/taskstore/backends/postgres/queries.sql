-- Named queries of the PostgreSQL backend. {schema} is the store's schema (validated, quoted as an
-- identifier); {now} is the store's clock: the database's now(), or a clock injected for tests.
-- Everything else is a bound parameter.

-- A batch travels as one JSON array (payloads in base64), parsed once into jsonb: far
-- cheaper per task than thirteen bound text arrays. Rows keep the batch's order, so seq does too.
-- name: insert_tasks
WITH clock AS (SELECT {now} AS now)
INSERT INTO {schema}.tasks (id, queue, kind, args, context, reference_id, priority, run_at, max_attempts, attempts,
                            processing_timeout, retry, state, created_at, updated_at, last_enqueued_at, version,
                            recurring_id, group_id)
SELECT r->>0, r->>1, r->>2, decode(r->>3, 'base64'), nullif(r->4, 'null'), r->>5, (r->>6)::int,
       coalesce((r->>7)::timestamptz, clock.now), (r->>8)::int, 0, (r->>9)::float8, nullif(r->10, 'null'), 'queued',
       clock.now, clock.now, clock.now, 1, r->>11, r->>12
  FROM clock, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS batch(r, ord)
 ORDER BY batch.ord
-- The notification rides in the same statement (an uncorrelated subquery runs once), so a single enqueue is one
-- round trip; it is delivered when the enqueuing transaction commits.
RETURNING seq, id, created_at, (SELECT pg_notify(%(channel)s, '') WHERE %(channel)s <> '')::text

-- name: notify
SELECT pg_notify(%(channel)s, '')

-- name: existing_ids
SELECT id FROM {schema}.tasks WHERE id = ANY(%(ids)s)

-- name: get_task
SELECT * FROM {schema}.tasks WHERE id = %(id)s

-- name: get_archived
SELECT * FROM {schema}.tasks_archive WHERE id = %(id)s ORDER BY seq DESC LIMIT 1

-- name: lock_tasks
SELECT *, {now} FROM {schema}.tasks WHERE id = ANY(%(ids)s) FOR UPDATE

-- name: current_time
SELECT {now}

-- A store exists once its first migration made the tasks table; a read-only open creates nothing.
-- name: store_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %(schema)s AND tablename = 'tasks')

-- Claims: one statement picks the rows (skipping rows other claimers hold) and claims them. It sets
-- what transitions.claim sets; the lease token is 122 random bits. A test compares the two.

-- Fragments (names starting with an underscore) are not queries: queries include them by name (see _sql.py).
-- The claim of the rows a query's "picked" CTE chose.
-- name: _claim_picked
UPDATE {schema}.tasks t
   SET state = 'claimed', attempts = t.attempts + 1, worker_id = %(worker)s,
       token = replace(gen_random_uuid()::text, '-', ''), claimed_at = {now},
       times_out_at = {now} + t.processing_timeout * interval '1 second',
       report_at = NULL, report_data = NULL, cancel_requested = false, updated_at = {now}, version = t.version + 1
  FROM picked
 WHERE t.seq = picked.seq
RETURNING t.*

-- name: claim_queue
WITH picked AS (
    SELECT seq FROM {schema}.tasks
     WHERE queue = %(queue)s AND state IN ('queued', 'failed') AND run_at <= {now}
     ORDER BY priority DESC, run_at, seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
{claim_picked}

-- name: claim_any
WITH picked AS (
    SELECT seq FROM {schema}.tasks
     WHERE state IN ('queued', 'failed') AND run_at <= {now}
     ORDER BY priority DESC, run_at, seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
{claim_picked}

-- Several queues: each queue's claimable rows are read in index order, then merged.
-- name: claim_queues
WITH candidates AS (
    SELECT c.seq, c.priority, c.run_at
      FROM unnest(%(queues)s::text[]) AS q(name)
     CROSS JOIN LATERAL (
        SELECT seq, priority, run_at FROM {schema}.tasks
         WHERE queue = q.name AND state IN ('queued', 'failed') AND run_at <= {now}
         ORDER BY priority DESC, run_at, seq
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
     ) c
),
picked AS (SELECT seq FROM candidates ORDER BY priority DESC, run_at, seq LIMIT %(limit)s)
{claim_picked}

-- name: available_any
SELECT * FROM {schema}.tasks
 WHERE state IN ('queued', 'failed') AND run_at <= {now}
 ORDER BY priority DESC, run_at, seq
 LIMIT %(limit)s

-- name: available_queues
SELECT * FROM {schema}.tasks
 WHERE queue = ANY(%(queues)s) AND state IN ('queued', 'failed') AND run_at <= {now}
 ORDER BY priority DESC, run_at, seq
 LIMIT %(limit)s

-- name: any_claimable
SELECT EXISTS (SELECT 1 FROM {schema}.tasks WHERE state IN ('queued', 'failed') AND run_at <= {now})

-- name: any_claimable_in_queues
SELECT EXISTS (
    SELECT 1 FROM {schema}.tasks WHERE queue = ANY(%(queues)s) AND state IN ('queued', 'failed') AND run_at <= {now}
)

-- Writes of transitions decided in Python, each fenced on the version read under FOR UPDATE.

-- name: update_task
UPDATE {schema}.tasks
   SET state = %s, attempts = %s, run_at = %s, worker_id = %s, token = %s, claimed_at = %s, times_out_at = %s,
       report_at = %s, report_data = %s::jsonb, cancel_requested = %s, result_at = %s, result_value = %s,
       result_failure = %s::jsonb, updated_at = %s, last_enqueued_at = %s, finished_at = %s, version = %s
 WHERE seq = %s AND version = %s

-- name: write_report
UPDATE {schema}.tasks
   SET times_out_at = %s, report_at = %s, report_data = %s::jsonb, updated_at = %s, version = %s
 WHERE seq = %s AND version = %s

-- A batch of completions in one fenced statement (the completer's hot path). It sets what
-- transitions.mark_done sets; rows whose lease does not match are left alone and read back. The same
-- statement tells status watchers in other processes (one notification, delivered at commit).
-- name: _complete_batch
WITH clock AS (SELECT {now} AS now),
batch AS (
    SELECT e->>0 AS id, e->>1 AS token, e->>2 AS worker_id, decode(e->>3, 'base64') AS value
      FROM jsonb_array_elements(%(items)s::jsonb) AS b(e)
)
UPDATE {schema}.tasks t
   SET state = 'done', worker_id = NULL, token = NULL, claimed_at = NULL, times_out_at = NULL, report_at = NULL,
       report_data = NULL, cancel_requested = false, result_at = clock.now, result_value = batch.value,
       result_failure = NULL, finished_at = clock.now, updated_at = clock.now, version = t.version + 1
  FROM clock, batch
 WHERE t.id = batch.id AND t.state = 'claimed' AND t.token = batch.token AND t.worker_id = batch.worker_id

-- name: complete_many
{complete_batch}
RETURNING t.*, (SELECT pg_notify(%(status_channel)s, '') WHERE %(status_channel)s <> '')::text

-- name: complete_many_ids
{complete_batch}
RETURNING t.id, (SELECT pg_notify(%(status_channel)s, '') WHERE %(status_channel)s <> '')::text

-- name: lock_timed_out
SELECT *, {now} FROM {schema}.tasks
 WHERE state = 'claimed' AND times_out_at <= {now}
 ORDER BY times_out_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: archive
WITH clock AS (SELECT {now} AS now),
moved AS (
    DELETE FROM {schema}.tasks WHERE seq IN (
        SELECT seq FROM {schema}.tasks
         WHERE state IN ('done', 'dead', 'cancelled') AND finished_at IS NOT NULL AND finished_at <= %(before)s
         ORDER BY finished_at
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED)
    RETURNING *
)
INSERT INTO {schema}.tasks_archive SELECT moved.*, clock.now FROM moved, clock

-- A listing's filter: every condition is optional (NULL leaves it out); `after` is the keyset cursor.
-- name: _list_filter
 WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(ready)s::timestamptz IS NULL OR run_at <= %(ready)s)

-- name: list_asc
SELECT * FROM {schema}.tasks
{list_filter} AND (%(after)s::bigint IS NULL OR seq > %(after)s)
 ORDER BY seq LIMIT %(limit)s

-- name: list_desc
SELECT * FROM {schema}.tasks
{list_filter} AND (%(after)s::bigint IS NULL OR seq < %(after)s)
 ORDER BY seq DESC LIMIT %(limit)s

-- name: list_archived_asc
SELECT * FROM {schema}.tasks_archive
{list_filter} AND (%(after)s::bigint IS NULL OR seq > %(after)s)
 ORDER BY seq LIMIT %(limit)s

-- name: list_archived_desc
SELECT * FROM {schema}.tasks_archive
{list_filter} AND (%(after)s::bigint IS NULL OR seq < %(after)s)
 ORDER BY seq DESC LIMIT %(limit)s

-- name: count
SELECT count(*) FROM {schema}.tasks
 WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: count_archived
SELECT count(*) FROM {schema}.tasks_archive
 WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: outstanding
SELECT count(*) FROM {schema}.tasks WHERE recurring_id = %(id)s AND state IN ('queued', 'failed', 'claimed')

-- name: put_recurring
INSERT INTO {schema}.recurring AS r (id, schedule, template, args, skip_if_outstanding, next_at, updated_at)
VALUES (%(id)s, %(schedule)s, %(template)s, %(args)s, %(skip)s, %(next_at)s, {now})
ON CONFLICT (id) DO UPDATE
   SET template = excluded.template, args = excluded.args, skip_if_outstanding = excluded.skip_if_outstanding,
       next_at = CASE WHEN r.schedule = excluded.schedule THEN r.next_at ELSE excluded.next_at END,
       schedule = excluded.schedule, updated_at = excluded.updated_at
RETURNING id, schedule, template, args, skip_if_outstanding, next_at

-- name: delete_recurring
DELETE FROM {schema}.recurring WHERE id = %(id)s

-- name: list_recurring
SELECT id, schedule, template, args, skip_if_outstanding, next_at FROM {schema}.recurring ORDER BY id

-- name: advance_recurring
UPDATE {schema}.recurring SET next_at = %(next_at)s, updated_at = {now} WHERE id = %(id)s AND next_at = %(expected)s

-- name: put_heartbeat
INSERT INTO {schema}.worker_heartbeats (worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras)
VALUES (%(worker_id)s, %(queues)s::jsonb, %(inflight)s, %(host)s, %(pid)s, %(version)s, %(started_at)s, {now},
        %(extras)s::jsonb)
ON CONFLICT (worker_id) DO UPDATE
   SET queues = excluded.queues, inflight = excluded.inflight, host = excluded.host, pid = excluded.pid,
       version = excluded.version, started_at = excluded.started_at, timestamp = excluded.timestamp,
       extras = excluded.extras
RETURNING timestamp

-- name: get_heartbeat
SELECT worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras
  FROM {schema}.worker_heartbeats WHERE worker_id = %(worker_id)s AND timestamp >= %(since)s

-- name: list_heartbeats
SELECT worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras
  FROM {schema}.worker_heartbeats WHERE timestamp >= %(since)s ORDER BY worker_id

-- name: purge_heartbeats
DELETE FROM {schema}.worker_heartbeats WHERE timestamp < %(before)s

-- name: put_group
INSERT INTO {schema}.groups AS g (id, expected, results, meta, chord_claimed, created_at, updated_at, expires_at)
VALUES (%(id)s, %(expected)s, '{{}}', %(meta)s::jsonb, false, {now}, {now}, %(expires_at)s)
ON CONFLICT (id) DO UPDATE
   SET expected = excluded.expected, results = '{{}}', meta = excluded.meta, chord_claimed = false,
       chord_callback_id = NULL, chord_dispatched_at = NULL, updated_at = excluded.updated_at,
       expires_at = excluded.expires_at,
       created_at = CASE WHEN g.expires_at > excluded.updated_at THEN g.created_at ELSE excluded.created_at END
RETURNING *

-- One statement, so concurrent members never lose each other's results.
-- name: add_group_result
UPDATE {schema}.groups
   SET results = results || jsonb_build_object(%(member)s::text, %(status)s::jsonb), updated_at = {now}
 WHERE id = %(id)s AND expires_at > {now}
RETURNING *

-- name: get_group
SELECT * FROM {schema}.groups WHERE id = %(id)s AND expires_at > {now}

-- name: claim_chord
UPDATE {schema}.groups
   SET chord_claimed = true, chord_callback_id = %(callback)s, chord_dispatched_at = %(dispatched_at)s,
       updated_at = {now}
 WHERE id = %(id)s AND NOT chord_claimed AND expires_at > {now}

-- name: purge_groups
DELETE FROM {schema}.groups WHERE expires_at <= {now}

-- name: put_status
INSERT INTO {schema}.statuses AS s (id, state, payload, error, attempt, meta, queue, created_at, updated_at, expires_at)
VALUES (%(id)s, %(state)s, %(payload)s::jsonb, %(error)s::jsonb, %(attempt)s, %(meta)s::jsonb, %(queue)s,
        %(at)s, %(at)s, %(expires_at)s)
ON CONFLICT (id) DO UPDATE
   SET state = excluded.state, payload = excluded.payload, error = excluded.error, attempt = excluded.attempt,
       meta = excluded.meta, queue = excluded.queue, updated_at = excluded.updated_at,
       expires_at = excluded.expires_at,
       created_at = CASE WHEN s.expires_at > excluded.updated_at THEN s.created_at ELSE excluded.created_at END
RETURNING *

-- name: get_status
SELECT * FROM {schema}.statuses WHERE id = %(id)s AND expires_at > {now}

-- name: expire_status
UPDATE {schema}.statuses SET expires_at = %(expires_at)s WHERE id = %(id)s AND expires_at > {now}

-- name: list_statuses
SELECT * FROM {schema}.statuses
 WHERE expires_at > {now} AND (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(before_at)s::timestamptz IS NULL OR (created_at, id) < (%(before_at)s, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s

-- name: purge_statuses
DELETE FROM {schema}.statuses WHERE expires_at <= {now}
