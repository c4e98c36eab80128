-- Named queries of the PostgreSQL backend. {schema} is the store's schema (validated, quoted as an
-- identifier); {now} is the store's clock: the database's now(), or a clock injected for tests.
-- Everything else is a bound parameter.

-- A batch travels as one JSON array (payloads in base64), parsed once into jsonb: far
-- cheaper per task than thirteen bound text arrays. Rows keep the batch's order, so seq does too.
-- A row's options come last, the unique ones first, and a row ends at its last option set (``_insert_params``):
-- an element past a row's end reads as NULL, as a JSON null does.
-- name: _insert_rows
INSERT INTO {schema}.tasks (id, queue, kind, args, priority, max_attempts, processing_timeout, unique_key, unique_hold,
                            unique_until, run_at, context, reference_id, retry, recurring_id, group_id,
                            concurrency_key, expires_at, attempts, state, created_at, updated_at, last_enqueued_at,
                            version)
SELECT r->>0, r->>1, r->>2, decode(r->>3, 'base64'), (r->>4)::int, (r->>5)::int, (r->>6)::float8, r->>7, r->>8,
       clock.now + (r->>9)::float8 * interval '1 second', coalesce((r->>10)::timestamptz, clock.now),
       nullif(r->11, 'null'), r->>12, nullif(r->13, 'null'), r->>14, r->>15, r->>16, (r->>17)::timestamptz,
       0, 'queued', clock.now, clock.now, clock.now, 1
  FROM clock, announced, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS batch(r, ord)
 ORDER BY batch.ord

-- The notification rides in the same statement (an uncorrelated subquery runs once), so a single enqueue is one
-- round trip; it is delivered when the enqueuing transaction commits.
-- name: _inserted
RETURNING seq, id, created_at, (SELECT pg_notify(%(channel)s, '') WHERE %(channel)s <> '')::text

-- name: insert_tasks
WITH clock AS (SELECT {now} AS now),
{announce_seqs}
{insert_rows}
{inserted}

-- A large batch by COPY (_insert_copied): its seqs first, in order, after the announcement, with the clock.
-- name: allocate_seqs
WITH clock AS (SELECT {now} AS now),
{announce_seqs}
SELECT clock.now, nextval('{schema}.tasks_seq_seq') FROM clock, announced, generate_series(1, %(n)s::int) AS g(i)
 ORDER BY g.i

-- The columns _copy_row writes, in its order.
-- name: copy_tasks
COPY {schema}.tasks (seq, id, queue, kind, args, priority, max_attempts, processing_timeout, unique_key, unique_hold,
                     unique_until, run_at, context, reference_id, retry, recurring_id, group_id, concurrency_key,
                     expires_at, attempts, state, created_at, updated_at, last_enqueued_at, version)
FROM STDIN (FORMAT BINARY)

-- Single creates sent together (_coalesce.py): a row whose id is taken is not inserted and not returned, so
-- its caller gets AlreadyExists and the batch's other rows still go in. Only rows without a unique key come here.
-- name: insert_tasks_skip_taken
WITH clock AS (SELECT {now} AS now),
{announce_seqs}
{insert_rows}
ON CONFLICT (id) DO NOTHING
{inserted}

-- Unique tasks (SPEC §9): the partial unique index decides. A row whose (queue, unique_key) is held is not
-- inserted and not returned; a concurrent insert of the same key still open is waited for, then counted as
-- a holder if it committed. Rows without a key never conflict here (NULL unique_hold is outside the index).
-- name: insert_unique_tasks
WITH clock AS (SELECT {now} AS now),
{announce_seqs}
{insert_rows}
ON CONFLICT (queue, unique_key) WHERE unique_hold IS NOT NULL DO NOTHING
{inserted}

-- A batch of several keys takes locks on its keys, in one fixed order, before it inserts: two batches sharing
-- keys in different orders would otherwise each wait on the other's uncommitted row of the unique index (a
-- deadlock). Keys are hashed into 64 locks (a batch of 10,000 keys must not fill the lock table); batches
-- whose keys share a lock take turns. The locks are advisory, of this transaction, in a class of their own
-- (not the seq announcements).
-- name: lock_unique_keys
SELECT count(pg_advisory_xact_lock(1414743381, h))
  FROM (SELECT DISTINCT hashtext((k->>0) || chr(31) || (k->>1)) & 63 AS h
          FROM jsonb_array_elements(%(keys)s::jsonb) AS w(k)
         ORDER BY h) AS ordered

-- A batch of many keys (``_LOCK_ALL_FROM`` or more) falls into nearly every one of the 64 locks anyway (512 keys
-- leave one lock untouched in 50 batches): it takes them all, in the same order, without sending or hashing its keys
-- (10,000 keys cost that statement ~7 ms, before any row could go in).
-- name: lock_all_unique_keys
SELECT count(pg_advisory_xact_lock(1414743381, h)) FROM generate_series(0, 63) AS g(h)

-- The tasks holding the batch's keys ([[queue, key], ...]), as stored.
-- name: unique_holders
SELECT t.* FROM {schema}.tasks t
  JOIN jsonb_array_elements(%(keys)s::jsonb) AS w(k) ON t.queue = w.k->>0 AND t.unique_key = w.k->>1
 WHERE t.unique_hold IS NOT NULL

-- Holders whose unique_for has passed give their key up to this create (transitions.release_key), locked in
-- id order like every writer; read only for the keys an insert found held. The hold is re-checked on the locked row (a concurrent write may have ended it).
-- name: release_lapsed_holders
WITH locked AS MATERIALIZED (
    SELECT t.seq FROM {schema}.tasks t
      JOIN jsonb_array_elements(%(keys)s::jsonb) AS w(k) ON t.queue = w.k->>0 AND t.unique_key = w.k->>1
     WHERE t.unique_hold IS NOT NULL AND t.unique_until <= {now}
     ORDER BY t.id
       FOR UPDATE OF t
)
UPDATE {schema}.tasks t
   SET unique_hold = NULL, version = t.version + 1, updated_at = {now_after_locks}
  FROM locked
 WHERE t.seq = locked.seq
RETURNING t.queue, t.unique_key

-- Listing in seq order must never page past a seq that a transaction still open may yet commit: that row
-- would be skipped. Rows of open transactions are invisible, but locks are not. So before it takes any seq,
-- an insert announces a lower bound of the seqs it will take (the sequence's last value; the sequence
-- caches nothing) as a shared advisory lock held to the end of its transaction, and beside it a marker
-- lock naming this table, taken first: a listing that sees a bound also sees the marker telling whose it
-- is. An ascending listing stops below the lowest bound announced (see _seq_horizon). Every statement that
-- inserts into tasks must include this fragment, or its rows may be paged past while it is open.
-- A transaction announces once per table (a transaction-local setting remembers it): its first bound is its
-- lowest, and a caller enqueuing thousands of tasks one by one in one transaction must not take a lock each.
-- name: _announce_seqs
marked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(1414743380, {tasks_key}) AS done
),
announced AS MATERIALIZED (
    SELECT CASE WHEN strpos(coalesce(current_setting('taskstore.announced', true), '') || ',', ',' || {tasks_key} || ',') = 0
                THEN pg_advisory_xact_lock_shared(s.last_value)::text
                     || set_config('taskstore.announced',
                                   coalesce(current_setting('taskstore.announced', true), '') || ',' || {tasks_key}, true)
           END AS done
      FROM {schema}.tasks_seq_seq AS s, marked
)

-- The marker's second key: this table's oid, shifted into int4.
-- name: _tasks_key
(('{schema}.tasks'::regclass::oid::bigint - 2147483648)::int)

-- The lowest seq an open transaction may still commit (NULL: none). Read in the listing's own statement,
-- so after its snapshot: an insert that announces later takes seqs above every row the listing can see.
-- Another bigint advisory lock in ShareLock mode held by an inserting transaction only lowers the horizon.
-- name: _seq_horizon
(SELECT min((bound.classid::bigint << 32) | bound.objid::bigint)
   FROM pg_locks AS bound JOIN pg_locks AS marker USING (virtualtransaction)
  WHERE bound.locktype = 'advisory' AND bound.objsubid = 1 AND bound.mode = 'ShareLock'
    AND marker.locktype = 'advisory' AND marker.objsubid = 2 AND marker.classid = 1414743380
    AND marker.objid = {tasks_key}::oid AND bound.database = marker.database
    AND marker.database = (SELECT oid FROM pg_database WHERE datname = current_database()))

-- name: notify
SELECT pg_notify(%(channel)s, '')

-- name: existing_ids
SELECT id FROM {schema}.tasks WHERE id = ANY(%(ids)b::text[])

-- A batch enqueued in the caller's transaction runs inside this savepoint, so a failed batch leaves the
-- caller's transaction as it was.
-- name: join_savepoint
SAVEPOINT taskstore_insert

-- name: join_release
RELEASE SAVEPOINT taskstore_insert

-- name: join_rollback
ROLLBACK TO SAVEPOINT taskstore_insert

-- name: get_task
SELECT * FROM {schema}.tasks WHERE id = %(id)s

-- name: get_archived
SELECT * FROM {schema}.tasks_archive WHERE id = %(id)s ORDER BY seq DESC LIMIT 1

-- Two rules for every statement that waits for row locks. Rows are locked in id order, so transactions
-- locking overlapping sets never wait on each other in a cycle (a deadlock). The time is read once every
-- row is locked (the count over the locked rows runs first): now() is when the transaction began, and a
-- lease renewed after waiting for a lock must run from the renewal, not from before the wait.
-- name: _now_after_locks
(SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) FROM (SELECT count(*) FROM locked) AS every_row)

-- name: lock_tasks
-- (ids in binary, as in _complete_batch: a text-format array is dumped element by element in Python)
WITH locked AS MATERIALIZED (
    SELECT * FROM {schema}.tasks WHERE id = ANY(%(ids)b::text[]) ORDER BY id FOR UPDATE
)
SELECT locked.*, {now_after_locks} FROM locked

-- name: current_time
SELECT {now}

-- A store exists once its first migration made the tasks table; a read-only open creates nothing.
-- name: store_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %(schema)s AND tablename = 'tasks')

-- Claims: one statement picks the rows (skipping rows other claimers hold) and claims them. It sets
-- what transitions.claim sets; the lease token is 122 random bits. A test compares the two.

-- Fragments (names starting with an underscore) are not queries: queries include them by name (see _sql.py).
-- The claim of the rows a query's "picked" CTE chose. They are found by the primary key from an array, not
-- by a join with picked: a prepared statement's generic plan (psycopg prepares after five runs; PostgreSQL
-- may then plan once for any LIMIT) hashed that join over a scan of the whole table, a claim costing as much
-- as the table is big (3x the server CPU per claimed task at 20,000 rows: bench/pg_claim_ack_variants.py).
-- A claim's commit does not wait for its WAL to reach the disk (synchronous_commit off for this statement's
-- transaction, set once by the uncorrelated subquery, before the first row is claimed). Claims are most of a busy
-- worker's commits, and that wait was most of a claim's time at 2,000 tasks/s (enqueue->start, medians of five runs:
-- p50 11.3 ms with it, 7.1 without; p99 29.4 and 22.3: bench/results/latency-2026-12-04.md). Nothing is lost by
-- it: a claim is not yet a result. A crash of the server within its last ~0.2 s (wal_writer_delay) may undo the
-- newest claims; their tasks are then waiting again and run again, as after a lease that timed out, and the undone
-- lease's worker finds its token refused. Any later commit that waits (a completion, a create) writes every earlier
-- commit's WAL first: a task completed, failed or renewed has its claim on disk. SQLite (synchronous=NORMAL) and
-- Redis (appendfsync everysec) do not wait either.
-- name: _claim_picked
UPDATE {schema}.tasks t
   SET state = 'claimed', attempts = t.attempts + 1, worker_id = %(worker)s,
       token = replace(gen_random_uuid()::text, '-', ''), claimed_at = {now},
       times_out_at = {now} + t.processing_timeout * interval '1 second',
       report_at = NULL, report_data = NULL, cancel_requested = false, updated_at = {now}, version = t.version + 1,
       unique_hold = CASE WHEN strpos(t.unique_hold, ',claimed,') > 0 THEN t.unique_hold END
 WHERE t.seq = ANY (ARRAY(SELECT seq FROM picked))
   AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
RETURNING t.*

-- Claimable rows, as every claim sees them: waiting and due, not expired, not in a paused queue (SPEC §9).
-- The paused queues are read once per statement (an uncorrelated subquery), so a pause committed before a
-- claim begins is seen by it, in every process. The coalesce changes nothing (neither side is ever NULL) but
-- hides the test from the planner's estimate: with one distinct queue it would estimate `queue <> ALL(...)`
-- at no rows and sort the whole table instead of reading the claim index in order.
-- name: _claimable
state IN ('queued', 'failed') AND run_at <= {now} AND (expires_at IS NULL OR expires_at > {now})
   AND coalesce(queue <> ALL (ARRAY(SELECT name FROM {schema}.queues WHERE paused)), true)

-- The one-statement claims take the first rows in claim order only when none of them has a key with a limit
-- (a key without a limit row is unlimited and costs one index probe). Otherwise they claim nothing, and the
-- driver claims in a transaction that locks the keys' limit rows (claim_candidates_* below).
-- name: _unless_limited
picked AS (
    SELECT seq FROM candidates
     WHERE NOT EXISTS (SELECT 1 FROM candidates c JOIN {schema}.limits l ON l.key = c.concurrency_key)
)

-- The one-statement claims' end: the rows claimed; or, when a candidate's key has a limit (so nothing was
-- claimed), one row of NULLs telling the driver to claim again in the limits' transaction. No row at all means
-- nothing was claimable, and the driver is done: an empty claim (a blocked claimer woken for a task another one
-- took) no longer pays that transaction's three more round trips.
-- name: _claimed_or_limited
claimed AS (
{claim_picked}
)
SELECT * FROM claimed
 UNION ALL
SELECT (NULL::{schema}.tasks).* WHERE EXISTS (SELECT 1 FROM candidates) AND NOT EXISTS (SELECT 1 FROM picked)

-- name: claim_queue
WITH candidates AS (
    SELECT seq, concurrency_key FROM {schema}.tasks
     WHERE queue = %(queue)s AND {claimable}
     ORDER BY priority DESC, run_at, seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
{unless_limited},
{claimed_or_limited}

-- name: claim_any
WITH candidates AS (
    SELECT seq, concurrency_key FROM {schema}.tasks
     WHERE {claimable}
     ORDER BY priority DESC, run_at, seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
{unless_limited},
{claimed_or_limited}

-- Several queues: each queue's claimable rows are read in index order, then merged.
-- name: claim_queues
WITH merged AS (
    SELECT c.seq, c.priority, c.run_at, c.concurrency_key
      FROM unnest(%(queues)s::text[]) AS q(name)
     CROSS JOIN LATERAL (
        SELECT seq, priority, run_at, concurrency_key FROM {schema}.tasks
         WHERE queue = q.name AND {claimable}
         ORDER BY priority DESC, run_at, seq
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED
     ) c
),
candidates AS (SELECT seq, concurrency_key FROM merged ORDER BY priority DESC, run_at, seq LIMIT %(limit)s),
{unless_limited},
{claimed_or_limited}

-- Claims past key limits, in one transaction: read candidates (locked, SKIP LOCKED), lock their keys' limit
-- rows, count the keys' running tasks, choose (gates.pick), claim (claim_seqs). A candidate's key already
-- known to be full, by this claim or by a stale read of its limit and running count, is passed over here so
-- that one scan reaches the keys with room; the decision itself is taken on the locked rows. A claim's first scan
-- skips that screening (screen false): most candidates' keys have room (each key's check cost more than the rest of
-- the claim's scan, and the first scan's keys are all locked and counted anyway); when some are full, the rounds
-- after it screen, and reach past them.
-- name: _key_open
(NOT %(screen)s OR t.concurrency_key IS NULL OR (t.concurrency_key <> ALL(%(full)s::text[]) AND NOT coalesce((
    -- A scalar subquery, evaluated for the candidates read only (an EXISTS here would be hashed over every limit).
    SELECT l.concurrency <= (SELECT count(*) FROM {schema}.tasks r
                              WHERE r.concurrency_key = l.key AND r.state = 'claimed')
           OR least(l.rate, l.tokens + extract(epoch FROM {now} - l.refilled_at) * l.rate / l.per) < 0.999999999
      FROM {schema}.limits l
     WHERE l.key = t.concurrency_key), false)))
   AND t.seq <> ALL(%(taken)s::bigint[])

-- name: claim_candidates_queue
SELECT t.seq, t.concurrency_key FROM {schema}.tasks t
 WHERE t.queue = %(queue)s AND {claimable} AND {key_open}
 ORDER BY t.priority DESC, t.run_at, t.seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: claim_candidates_any
SELECT t.seq, t.concurrency_key FROM {schema}.tasks t
 WHERE {claimable} AND {key_open}
 ORDER BY t.priority DESC, t.run_at, t.seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: claim_candidates_queues
SELECT c.seq, c.concurrency_key
  FROM unnest(%(queues)s::text[]) AS q(name)
 CROSS JOIN LATERAL (
    SELECT t.seq, t.priority, t.run_at, t.concurrency_key FROM {schema}.tasks t
     WHERE t.queue = q.name AND {claimable} AND {key_open}
     ORDER BY t.priority DESC, t.run_at, t.seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
 ) c
 ORDER BY c.priority DESC, c.run_at, c.seq
 LIMIT %(limit)s

-- The limit rows of a claim's keys, locked in key order: claimers of one key take turns, so two never both
-- see room for its last slot. Only a claim's first lock waits; later rounds (new keys) skip keys another
-- claimer holds (treated as full for this claim), so claimers never wait on each other in a cycle.
-- name: lock_limits
SELECT key, concurrency, rate, per, tokens, refilled_at, true FROM {schema}.limits
 WHERE key = ANY(%(keys)s::text[])
 ORDER BY key
   FOR UPDATE

-- The last column says whether this claim holds the row.
-- name: lock_limits_skip_locked
WITH got AS MATERIALIZED (
    SELECT key, concurrency, rate, per, tokens, refilled_at FROM {schema}.limits
     WHERE key = ANY(%(keys)s::text[])
     ORDER BY key
       FOR UPDATE SKIP LOCKED
)
SELECT got.*, true FROM got
 UNION ALL
SELECT key, concurrency, rate, per, tokens, refilled_at, false FROM {schema}.limits
 WHERE key = ANY(%(keys)s::text[]) AND key NOT IN (SELECT key FROM got)

-- Read after the limit rows are locked, in a statement of its own: its snapshot then includes every claim
-- committed by the claimer that held them before. The time is read then too (rate buckets never run back).
-- name: running_counts
SELECT k.key, (SELECT count(*) FROM {schema}.tasks t WHERE t.concurrency_key = k.key AND t.state = 'claimed'),
       coalesce(%(now)s::timestamptz, clock_timestamp())
  FROM unnest(%(keys)s::text[]) AS k(key)

-- The chosen candidates claimed, and the token buckets drawn on written back ([[key, tokens, refilled_at]]).
-- name: claim_seqs
WITH buckets AS (
    UPDATE {schema}.limits l
       SET tokens = (b.v->>1)::float8, refilled_at = (b.v->>2)::timestamptz
      FROM jsonb_array_elements(%(buckets)s::jsonb) AS b(v)
     WHERE l.key = b.v->>0
),
picked AS (SELECT unnest(%(seqs)s::bigint[]) AS seq)
{claim_picked}

-- find_available: what a claim would consider, read only (nothing locked, no tokens drawn).
-- name: available_any
SELECT t.* FROM {schema}.tasks t
 WHERE {claimable} AND {key_open}
 ORDER BY t.priority DESC, t.run_at, t.seq
 LIMIT %(limit)s

-- name: available_queues
SELECT t.* FROM {schema}.tasks t
 WHERE t.queue = ANY(%(queues)s) AND {claimable} AND {key_open}
 ORDER BY t.priority DESC, t.run_at, t.seq
 LIMIT %(limit)s

-- name: limit_gates
SELECT l.key, l.concurrency, l.rate, l.per, l.tokens, l.refilled_at,
       (SELECT count(*) FROM {schema}.tasks t WHERE t.concurrency_key = l.key AND t.state = 'claimed'), {now}
  FROM {schema}.limits l
 WHERE l.key = ANY(%(keys)s::text[])

-- name: any_claimable
SELECT EXISTS (SELECT 1 FROM {schema}.tasks WHERE {claimable})

-- name: any_claimable_in_queues
SELECT EXISTS (SELECT 1 FROM {schema}.tasks WHERE queue = ANY(%(queues)s) AND {claimable})

-- A worker's cancel check over its in-flight ids, by the primary key.
-- name: cancel_requested_among
SELECT id FROM {schema}.tasks WHERE id = ANY(%(ids)b::text[]) AND state = 'claimed' AND cancel_requested

-- Writes of transitions decided in Python, each fenced on the version read under FOR UPDATE.

-- name: _update_task_set
UPDATE {schema}.tasks
   SET state = %s, attempts = %s, run_at = %s, worker_id = %s, token = %s, claimed_at = %s, times_out_at = %s,
       report_at = %s, report_data = %s::jsonb, cancel_requested = %s, result_at = %s, result_value = %s,
       result_failure = %s::jsonb, updated_at = %s, last_enqueued_at = %s, finished_at = %s, version = %s,
       unique_hold = %s

-- name: update_task
{update_task_set}
 WHERE seq = %s AND version = %s

-- An attempt ended without success: the full update, and the task's failed attempts (see transitions._record).
-- name: update_task_failures
{update_task_set}, failures = %s::jsonb
 WHERE seq = %s AND version = %s

-- name: write_report
UPDATE {schema}.tasks
   SET times_out_at = %s, report_at = %s, report_data = %s::jsonb, updated_at = %s, version = %s
 WHERE seq = %s AND version = %s

-- A batch of completions in one fenced statement (the completer's hot path). It sets what
-- transitions.mark_done sets; rows whose lease does not match are left alone and read back. The same
-- statement tells status watchers in other processes (one notification, delivered at commit).
-- The batch comes as parallel arrays (one element per completion), not a JSON document: neither side then
-- encodes, parses or base64s each result.
-- name: _complete_batch
-- The arrays go in binary (placeholders ending in b): psycopg dumps a text-format array element by element in
-- Python, searching each for characters to quote, and escapes bytea as hex: an eighth of the worker's instructions
-- per task.
WITH batch AS (
    SELECT * FROM unnest(%(ids)b::text[], %(tokens)b::text[], %(workers)b::text[], %(values)b::bytea[])
        AS b(id, token, worker_id, value)
),
-- Each row is read and locked by the unique index on id, in id order (two batches never deadlock), and only
-- then checked: still claimed under this lease. A join on all the batch's columns would instead have the
-- planner hash every claimed row, along the lease index, whose size it takes from statistics older than the
-- drain's claims, and whose entries for rows claimed and then finished stay until a vacuum: a cost per
-- completion that grew with the drain (from ~50 to ~110 us a task over 50,000 tasks).
locked AS MATERIALIZED (
    SELECT t.seq, b.value
      FROM (SELECT * FROM batch ORDER BY id) AS b
     CROSS JOIN LATERAL (
        -- OFFSET 0: the checks below stay out here (pushed in, the planner would pick the lease index again)
        SELECT seq, state, token, worker_id FROM {schema}.tasks WHERE id = b.id OFFSET 0 FOR UPDATE
     ) AS t
     WHERE t.state = 'claimed' AND t.token = b.token AND t.worker_id = b.worker_id
),
clock AS (SELECT {now_after_locks} AS now)
UPDATE {schema}.tasks t
   SET state = 'done', worker_id = NULL, token = NULL, claimed_at = NULL, times_out_at = NULL, report_at = NULL,
       report_data = NULL, cancel_requested = false, result_at = clock.now, result_value = locked.value,
       result_failure = NULL, finished_at = clock.now, updated_at = clock.now, version = t.version + 1,
       unique_hold = CASE WHEN strpos(t.unique_hold, ',done,') > 0 THEN t.unique_hold END
  FROM clock, locked
 WHERE t.seq = locked.seq

-- A group's members are left to complete_members, whose transaction settles their groups: only they pay.
-- name: complete_many
{complete_batch}
   AND t.group_id IS NULL
RETURNING t.*, (SELECT pg_notify(%(status_channel)s, '') WHERE %(status_channel)s <> '')::text

-- name: complete_many_ids
{complete_batch}
   AND t.group_id IS NULL
RETURNING t.id, (SELECT pg_notify(%(status_channel)s, '') WHERE %(status_channel)s <> '')::text

-- name: complete_members
{complete_batch}
   AND t.group_id IS NOT NULL
RETURNING t.*, clock.now, (SELECT pg_notify(%(status_channel)s, '') WHERE %(status_channel)s <> '')::text

-- Waiting tasks past their expires_at, for the reaper to end (transitions.expire).
-- name: lock_expired
SELECT *, {now} FROM {schema}.tasks
 WHERE expires_at <= {now} AND expires_at IS NOT NULL AND state IN ('queued', 'failed')
 ORDER BY expires_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: lock_timed_out
SELECT *, {now} FROM {schema}.tasks
 WHERE state = 'claimed' AND times_out_at <= {now}
 ORDER BY times_out_at
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- The timed-out leases a claim recovers (reaps just before it claims), in claim order.
-- name: lock_lost_leases
SELECT *, {now} FROM {schema}.tasks
 WHERE state = 'claimed' AND times_out_at <= {now}
 ORDER BY priority DESC, run_at, seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: lock_lost_leases_in_queues
SELECT *, {now} FROM {schema}.tasks
 WHERE state = 'claimed' AND times_out_at <= {now} AND queue = ANY(%(queues)s::text[])
 ORDER BY priority DESC, run_at, seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- When a blocked claimer should look for a lease to recover: the earliest end of a lease, from the partial
-- index tasks_lease_timeouts.
-- name: lease_expiry
SELECT min(times_out_at) FROM {schema}.tasks WHERE state = 'claimed'

-- name: lease_expiry_in_queues
SELECT min(times_out_at) FROM {schema}.tasks WHERE state = 'claimed' AND queue = ANY(%(queues)s::text[])

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
{into_archive}

-- The finished tasks among some ids, by the unique index on id, locked in seq order (two calls over the same
-- ids never deadlock). A row changed meanwhile (a retry committed first) is checked again once its lock is
-- granted, so a task no longer finished stays.
-- name: archive_ids
WITH clock AS (SELECT {now} AS now),
moved AS (
    DELETE FROM {schema}.tasks WHERE seq IN (
        SELECT seq FROM {schema}.tasks
         WHERE id = ANY(%(ids)s::text[]) AND state IN ('done', 'dead', 'cancelled')
         ORDER BY seq
           FOR UPDATE)
    RETURNING *
)
{into_archive}

-- Both archivers' one move: the rows deleted above (``moved``), into the archive stamped with ``clock.now``.
-- name: _into_archive
INSERT INTO {schema}.tasks_archive SELECT moved.*, clock.now FROM moved, clock

-- A listing's filter: every condition is optional (NULL leaves it out); `after` is the keyset cursor.
-- name: _list_filter
 WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(ready)s::timestamptz IS NULL OR run_at <= %(ready)s)

-- An ascending page ends below the seqs open transactions may still commit (see _announce_seqs).
-- name: list_asc
SELECT * FROM {schema}.tasks
{list_filter} AND (%(after)s::bigint IS NULL OR seq > %(after)s)
   AND seq < coalesce({seq_horizon}, 9223372036854775807)
 ORDER BY seq LIMIT %(limit)s

-- A descending page (newest first, for people) has no horizon: that would need an upper bound of every open
-- transaction's seqs, and would hide the newest rows while any insert is open. A row committed late above
-- its cursor is missed there, as a row created after the listing began is.
-- name: list_desc
SELECT * FROM {schema}.tasks
{list_filter} AND (%(after)s::bigint IS NULL OR seq < %(after)s)
 ORDER BY seq DESC LIMIT %(limit)s

-- One queue's tasks of one kind: queue and kind are plain equalities (never "NULL leaves it out"), so even the
-- generic plan of a prepared statement walks tasks_queue_kind (migration 10) in seq order.
-- name: _list_kind_filter
 WHERE queue = %(queue)s AND kind = %(kind)s
   AND (%(state)s::text IS NULL OR state = %(state)s) AND (%(ready)s::timestamptz IS NULL OR run_at <= %(ready)s)

-- name: list_kind_asc
SELECT * FROM {schema}.tasks
{list_kind_filter} AND (%(after)s::bigint IS NULL OR seq > %(after)s)
   AND seq < coalesce({seq_horizon}, 9223372036854775807)
 ORDER BY seq LIMIT %(limit)s

-- name: list_kind_desc
SELECT * FROM {schema}.tasks
{list_kind_filter} AND (%(after)s::bigint IS NULL OR seq < %(after)s)
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

-- Finishes per time slot (the dashboard's charts), from the per-minute counts kept by migration 11's
-- triggers: those folded, and those not yet.
-- name: finished_counts
SELECT floor(extract(epoch FROM minute - %(since)s) / %(bucket)s)::int AS slot, state, sum(n)
  FROM (SELECT minute, state, n FROM {schema}.finished_minutes WHERE minute >= %(since)s
        UNION ALL
        SELECT minute, state, n FROM {schema}.count_deltas WHERE minute >= %(since)s) AS kept
 GROUP BY 1, 2

-- Fold the deltas the triggers appended into the totals, in one statement. One folder at a time (the lock is
-- tried, never waited for: whoever holds it folds these rows too); rows a later commit appends stay for the
-- next fold, and a reader in between adds them itself.
-- name: fold_counts
WITH locked AS (
    SELECT pg_try_advisory_xact_lock(hashtext(%(lock)s)) AS got
), moved AS (
    DELETE FROM {schema}.count_deltas WHERE (SELECT got FROM locked) RETURNING queue, state, minute, n
), totals AS (
    INSERT INTO {schema}.queue_counts AS c (queue, state, n)
    SELECT queue, state, sum(n) FROM moved WHERE minute IS NULL GROUP BY queue, state
    ON CONFLICT (queue, state) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), minutes AS (
    INSERT INTO {schema}.finished_minutes AS f (minute, queue, state, n)
    SELECT minute, queue, state, sum(n) FROM moved WHERE minute IS NOT NULL GROUP BY minute, queue, state
    ON CONFLICT (minute, queue, state) DO UPDATE SET n = f.n + excluded.n
    RETURNING 1
)
SELECT count(*) FROM moved

-- The newest dead tasks for grouping their failures: along tasks_dead (migration 11), no payload, no traceback.
-- name: dead_summaries
SELECT id, queue, kind, finished_at, result_failure->>'type', left(result_failure->>'message', %(chars)s)
  FROM {schema}.tasks WHERE state = 'dead'
 ORDER BY seq DESC LIMIT %(limit)s

-- The store's tables that churn (rows updated or deleted all day), with their live and dead rows as the
-- statistics system last counted them.
-- name: churned_tables
SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables
 WHERE schemaname = %(schema)s AND relname = ANY(%(tables)s::text[])

-- Each table's live rows now (the statistics' count: a busy connection sends its counts every second) and at its
-- last VACUUM or ANALYZE (reltuples; -1 before the first), and its pages now (read from the file). Only tables
-- this role may ANALYZE (it owns them, or is a superuser): on another's, ANALYZE only warns, and would be sent
-- again every time.
-- name: table_sizes
SELECT c.relname, coalesce(s.n_live_tup, 0), c.reltuples, pg_relation_size(c.oid) / current_setting('block_size')::bigint
  FROM pg_class c
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relnamespace = to_regnamespace(%(schema)s) AND c.relname = ANY(%(tables)s::text[]) AND c.relkind = 'r'
   AND pg_has_role(c.relowner, 'USAGE')

-- name: purge_finished_minutes
DELETE FROM {schema}.finished_minutes WHERE minute < %(before)s

-- name: count_archived
SELECT count(*) FROM {schema}.tasks_archive
 WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: outstanding
SELECT count(*) FROM {schema}.tasks WHERE recurring_id = %(id)s AND state IN ('queued', 'failed', 'claimed')

-- name: put_recurring
INSERT INTO {schema}.recurring AS r (id, schedule, template, args, skip_if_outstanding, next_at, updated_at, owner)
VALUES (%(id)s, %(schedule)s, %(template)s, %(args)s, %(skip)s, %(next_at)s, {now}, %(owner)s)
ON CONFLICT (id) DO UPDATE
   SET template = excluded.template, args = excluded.args, skip_if_outstanding = excluded.skip_if_outstanding,
       next_at = CASE WHEN r.schedule = excluded.schedule THEN r.next_at ELSE excluded.next_at END,
       schedule = excluded.schedule, updated_at = excluded.updated_at, owner = excluded.owner
RETURNING id, schedule, template, args, skip_if_outstanding, next_at, owner

-- name: delete_recurring
DELETE FROM {schema}.recurring WHERE id = %(id)s

-- name: list_recurring
SELECT id, schedule, template, args, skip_if_outstanding, next_at, owner FROM {schema}.recurring ORDER BY id

-- name: advance_recurring
UPDATE {schema}.recurring SET next_at = %(next_at)s, updated_at = {now} WHERE id = %(id)s AND next_at = %(expected)s

-- Flow control (SPEC §9): paused queues and per-key limits.

-- A resume notifies like an enqueue: the queue's tasks are claimable again, in every process.
-- name: set_paused
INSERT INTO {schema}.queues AS q (name, paused, updated_at)
VALUES (%(queue)s, %(paused)s, {now})
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
RETURNING (SELECT pg_notify(%(channel)s, '') WHERE %(channel)s <> '')::text

-- name: paused_queues
SELECT name FROM {schema}.queues WHERE paused

-- name: queue_paused
SELECT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(name)s AND paused)

-- Live tasks by queue and state, and per queue and state the least run_at of the claimable ones.
-- The kept totals plus the deltas not yet folded, in one snapshot: exact, and no scan of tasks.
-- name: queue_counts
SELECT queue, state, sum(n)
  FROM (SELECT queue, state, n FROM {schema}.queue_counts
        UNION ALL
        SELECT queue, state, n FROM {schema}.count_deltas WHERE minute IS NULL) AS kept
 GROUP BY queue, state
HAVING sum(n) <> 0

-- The longest-waiting ready task of each of the given queues. A min(run_at) over the claim index would read
-- every waiting task; instead walk the index's distinct priorities (each one a seek) and take the first
-- run_at of each, which is that priority's least: a few seeks per queue however many tasks wait.
-- name: oldest_ready
WITH RECURSIVE prio AS (
    SELECT q.queue, (SELECT t.priority FROM {schema}.tasks AS t
                      WHERE t.queue = q.queue AND t.state IN ('queued', 'failed')
                      ORDER BY t.priority DESC LIMIT 1) AS priority
      FROM unnest(%(queues)s::text[]) AS q(queue)
    UNION ALL
    SELECT p.queue, (SELECT t.priority FROM {schema}.tasks AS t
                      WHERE t.queue = p.queue AND t.state IN ('queued', 'failed') AND t.priority < p.priority
                      ORDER BY t.priority DESC LIMIT 1)
      FROM prio AS p WHERE p.priority IS NOT NULL
)
SELECT p.queue, min(f.run_at)
  FROM prio AS p
 CROSS JOIN LATERAL (SELECT t.run_at FROM {schema}.tasks AS t
                      WHERE t.queue = p.queue AND t.priority = p.priority AND t.state IN ('queued', 'failed')
                        AND (t.expires_at IS NULL OR t.expires_at > {now})
                      ORDER BY t.run_at LIMIT 1) AS f
 WHERE f.run_at <= {now}
 GROUP BY p.queue

-- name: queue_records
SELECT name, paused FROM {schema}.queues

-- name: lock_limit
SELECT key, concurrency, rate, per, tokens, refilled_at FROM {schema}.limits WHERE key = %(key)s FOR UPDATE

-- The time, read after the locks this transaction took.
-- name: time_after_locks
SELECT coalesce(%(now)s::timestamptz, clock_timestamp())

-- A limit set or raised may let held-back tasks run: claimers in every process are woken.
-- name: put_limit
INSERT INTO {schema}.limits AS l (key, concurrency, rate, per, tokens, refilled_at, updated_at)
VALUES (%(key)s, %(concurrency)s, %(rate)s, %(per)s, %(tokens)s, %(refilled_at)s, %(refilled_at)s)
ON CONFLICT (key) DO UPDATE
   SET concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per, tokens = excluded.tokens,
       refilled_at = excluded.refilled_at, updated_at = excluded.updated_at
RETURNING (SELECT pg_notify(%(channel)s, '') WHERE %(channel)s <> '')::text

-- name: delete_limit
DELETE FROM {schema}.limits WHERE key = %(key)s
RETURNING (SELECT pg_notify(%(channel)s, '') WHERE %(channel)s <> '')::text

-- name: list_limits
SELECT key, concurrency, rate, per FROM {schema}.limits ORDER BY key

-- name: claimed_with_key
SELECT * FROM {schema}.tasks
 WHERE concurrency_key = %(key)s AND state = 'claimed'
 ORDER BY claimed_at, seq
 LIMIT %(limit)s

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
INSERT INTO {schema}.groups AS g (id, expected, results, meta, chord_claimed, created_at, updated_at, expires_at, ttl)
VALUES (%(id)s, %(expected)s, '{{}}', %(meta)s::jsonb, false, {now}, {now}, %(expires_at)s, %(ttl)s)
ON CONFLICT (id) DO UPDATE
   SET expected = excluded.expected, results = '{{}}', meta = excluded.meta, chord_claimed = false,
       chord_callback_id = NULL, chord_dispatched_at = NULL, updated_at = excluded.updated_at,
       expires_at = excluded.expires_at, member_ids = NULL, callback_id = NULL, callback_template = NULL,
       callback_args = NULL, ttl = excluded.ttl, chain_links = NULL,
       created_at = CASE WHEN g.expires_at > excluded.updated_at THEN g.created_at ELSE excluded.created_at END
RETURNING *

-- name: insert_group
INSERT INTO {schema}.groups (id, expected, results, meta, chord_claimed, created_at, updated_at, expires_at,
                             member_ids, callback_id, callback_template, callback_args, ttl, chain_links)
VALUES (%(id)s, %(expected)s, '{{}}', %(meta)s::jsonb, false, {now}, {now}, %(expires_at)s, %(member_ids)s::jsonb,
        %(callback_id)s, %(callback_template)s, %(callback_args)s, %(ttl)s, %(chain_links)s)

-- One statement, so concurrent members never lose each other's results.
-- name: add_group_result
UPDATE {schema}.groups
   SET results = results || jsonb_build_object(%(member)s::text, %(status)s::jsonb), updated_at = {now}
 WHERE id = %(id)s AND expires_at > {now}
RETURNING *

-- A group lives until it expires, and past that while one of its members is unfinished.
-- name: _group_live
(groups.expires_at > {now} OR EXISTS (
    SELECT 1 FROM {schema}.tasks t WHERE t.group_id = groups.id AND t.state IN ('queued', 'claimed', 'failed')))

-- name: get_group
SELECT * FROM {schema}.groups WHERE id = %(id)s AND {group_live}

-- Settling takes the groups' rows in id order after the members' rows: every writer locks in that order.
-- name: lock_groups
SELECT * FROM {schema}.groups WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE

-- name: group_tasks
SELECT * FROM {schema}.tasks WHERE group_id = ANY(%(ids)s)

-- name: group_tasks_archived
SELECT * FROM {schema}.tasks_archive WHERE group_id = ANY(%(ids)s)

-- name: settle_group
UPDATE {schema}.groups
   SET expires_at = %(expires_at)s, updated_at = %(at)s, chord_claimed = %(claimed)s,
       chord_callback_id = %(callback)s, chord_dispatched_at = %(dispatched_at)s
 WHERE id = %(id)s

-- name: claim_chord
UPDATE {schema}.groups
   SET chord_claimed = true, chord_callback_id = %(callback)s, chord_dispatched_at = %(dispatched_at)s,
       updated_at = {now}
 WHERE id = %(id)s AND NOT chord_claimed AND expires_at > {now}

-- name: purge_groups
DELETE FROM {schema}.groups WHERE NOT {group_live}

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
