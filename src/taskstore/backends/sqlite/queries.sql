-- Named queries of the SQLite backend. Parameters are always bound, never formatted in.

-- name: next_seq
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0),
           coalesce((SELECT max(seq) FROM tasks), 0))

-- name: insert_task
INSERT INTO tasks (seq, id, queue, kind, args, context, reference_id, priority, run_at, max_attempts,
                   attempts, processing_timeout, retry, state, created_at, updated_at, last_enqueued_at,
                   version, recurring_id, group_id, unique_key, unique_hold, unique_until, concurrency_key,
                   expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 'queued', ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)

-- name: existing_ids
SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: seqs_of_ids
SELECT id, seq FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: get_task
SELECT * FROM tasks WHERE id = ?

-- name: get_tasks
SELECT * FROM tasks WHERE id IN (SELECT value FROM json_each(?))

-- name: get_archived
SELECT * FROM tasks_archive WHERE id = ? ORDER BY seq DESC LIMIT 1

-- name: _update_task_set
UPDATE tasks
   SET state = ?, attempts = ?, run_at = ?, worker_id = ?, token = ?, claimed_at = ?, times_out_at = ?,
       report_at = ?, report_data = ?, cancel_requested = ?, result_at = ?, result_value = ?,
       result_failure = ?, updated_at = ?, last_enqueued_at = ?, finished_at = ?, version = ?, unique_hold = ?

-- name: update_task
{update_task_set}
 WHERE seq = ? AND version = ?

-- An attempt ended without success: the full update, and the task's failed attempts (see transitions._record).
-- name: update_task_failures
{update_task_set}, failures = ?
 WHERE seq = ? AND version = ?

-- Claimable now: waiting, due, and not expired (SPEC §9). Paused queues are left out by each query.
-- name: _claimable
state IN ('queued', 'failed') AND run_at <= :now AND (expires_at IS NULL OR expires_at > :now)

-- name: _queue_not_paused
NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)

-- name: _not_paused
queue NOT IN (SELECT name FROM queues WHERE paused = 1)

-- A rescan of a claim held back by full keys: past the candidates already decided and the keys now full.
-- name: _past_full
seq NOT IN (SELECT value FROM json_each(:skip))
   AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT value FROM json_each(:full)))

-- Claim candidates: the sort key and the concurrency key, read in claim order from the partial index.

-- name: candidates_in_queue
SELECT priority, run_at, seq, concurrency_key FROM tasks
 WHERE queue = :queue AND {claimable} AND {queue_not_paused}
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: candidates_any
SELECT priority, run_at, seq, concurrency_key FROM tasks
 WHERE {claimable} AND {not_paused}
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: more_candidates_in_queue
SELECT priority, run_at, seq, concurrency_key FROM tasks
 WHERE queue = :queue AND {claimable} AND {queue_not_paused} AND {past_full}
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: more_candidates_any
SELECT priority, run_at, seq, concurrency_key FROM tasks
 WHERE {claimable} AND {not_paused} AND {past_full}
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- The gates of the limited keys among a claim's candidates: each limit with its claimed tasks counted now.
-- name: key_gates
SELECT key, concurrency, rate, per, tokens, refilled_at,
       (SELECT count(*) FROM tasks WHERE concurrency_key = limits.key AND state = 'claimed')
  FROM limits WHERE key IN (SELECT value FROM json_each(?))

-- name: draw_tokens
UPDATE limits SET tokens = ?, refilled_at = ? WHERE key = ?

-- The claim itself, fenced on the row still being claimable. It sets what transitions.claim sets;
-- the lease token is 128 random bits from SQLite's CSPRNG. A unit test compares the two.
-- name: claim_seqs
UPDATE tasks
   SET state = 'claimed', attempts = attempts + 1, worker_id = :worker, token = lower(hex(randomblob(16))),
       claimed_at = :now, times_out_at = :now + CAST(round(processing_timeout * 1000000) AS INTEGER),
       report_at = NULL, report_data = NULL, cancel_requested = 0, updated_at = :now, version = version + 1,
       unique_hold = CASE WHEN instr(unique_hold, ',claimed,') > 0 THEN unique_hold END
 WHERE seq IN (SELECT value FROM json_each(:seqs)) AND {claimable}
RETURNING *

-- name: tasks_of_seqs
SELECT * FROM tasks WHERE seq IN (SELECT value FROM json_each(?))

-- name: queue_paused
SELECT 1 FROM queues WHERE name = ? AND paused = 1

-- name: any_claimable_in_queue
SELECT 1 FROM tasks WHERE queue = :queue AND {claimable} AND {queue_not_paused} LIMIT 1

-- name: any_claimable
SELECT 1 FROM tasks WHERE {claimable} AND {not_paused} LIMIT 1

-- A worker's cancel check over its in-flight ids, by the unique index on id.
-- name: cancel_requested_among
SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?)) AND state = 'claimed' AND cancel_requested

-- name: timed_out
SELECT * FROM tasks WHERE state = 'claimed' AND times_out_at <= ? LIMIT ?

-- The timed-out leases a claim recovers (reaps just before it claims), in claim order.
-- name: lost_leases
SELECT * FROM tasks WHERE state = 'claimed' AND times_out_at <= ? ORDER BY priority DESC, run_at, seq LIMIT ?

-- name: lost_leases_in_queues
SELECT * FROM tasks
 WHERE state = 'claimed' AND times_out_at <= ? AND queue IN (SELECT value FROM json_each(?))
 ORDER BY priority DESC, run_at, seq
 LIMIT ?

-- When a blocked claimer should look for a lease to recover: the earliest end of a lease, from the partial
-- index tasks_lease_timeouts.
-- name: lease_expiry
SELECT min(times_out_at) FROM tasks WHERE state = 'claimed'

-- name: lease_expiry_in_queues
SELECT min(times_out_at) FROM tasks WHERE state = 'claimed' AND queue IN (SELECT value FROM json_each(?))

-- Waiting tasks past their expires_at, from the partial index tasks_expiry.
-- name: expired_waiting
SELECT * FROM tasks
 WHERE expires_at IS NOT NULL AND expires_at <= ? AND state IN ('queued', 'failed')
 ORDER BY expires_at
 LIMIT ?

-- name: finished_before
SELECT seq FROM tasks
 WHERE state IN ('done', 'dead', 'cancelled') AND finished_at IS NOT NULL AND finished_at <= ?
 LIMIT ?

-- The finished tasks among some ids (a JSON array), by the unique index on id: archive_ids' selection.
-- name: finished_among
SELECT seq FROM tasks
 WHERE state IN ('done', 'dead', 'cancelled') AND id IN (SELECT value FROM json_each(?))

-- name: copy_to_archive
INSERT INTO tasks_archive SELECT *, ? FROM tasks WHERE seq IN (SELECT value FROM json_each(?))

-- name: delete_archived
DELETE FROM tasks WHERE seq IN (SELECT value FROM json_each(?))

-- A listing's filter: every condition is optional (NULL leaves it out); `after` is the keyset cursor.
-- name: _list_filter
 WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)
   AND (:kind IS NULL OR kind = :kind) AND (:ready IS NULL OR run_at <= :ready)

-- name: list_asc
SELECT * FROM tasks
{list_filter} AND (:after IS NULL OR seq > :after)
 ORDER BY seq LIMIT :limit

-- name: list_desc
SELECT * FROM tasks
{list_filter} AND (:after IS NULL OR seq < :after)
 ORDER BY seq DESC LIMIT :limit

-- One queue's tasks of one kind: queue and kind are plain equalities (not "NULL leaves it out"), which lets
-- the planner walk tasks_queue_kind (schema 9) in seq order instead of scanning the table.
-- name: _list_kind_filter
 WHERE queue = :queue AND kind = :kind
   AND (:state IS NULL OR state = :state) AND (:ready IS NULL OR run_at <= :ready)

-- name: list_kind_asc
SELECT * FROM tasks
{list_kind_filter} AND (:after IS NULL OR seq > :after)
 ORDER BY seq LIMIT :limit

-- name: list_kind_desc
SELECT * FROM tasks
{list_kind_filter} AND (:after IS NULL OR seq < :after)
 ORDER BY seq DESC LIMIT :limit

-- name: list_archived_asc
SELECT * FROM tasks_archive
{list_filter} AND (:after IS NULL OR seq > :after)
 ORDER BY seq LIMIT :limit

-- name: list_archived_desc
SELECT * FROM tasks_archive
{list_filter} AND (:after IS NULL OR seq < :after)
 ORDER BY seq DESC LIMIT :limit

-- name: count
SELECT count(*) FROM tasks
 WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)

-- Finished tasks per time slot (the dashboard's charts), over the partial index on finished_at.
-- Finishes per slot (the dashboard's charts), from the per-minute counts the triggers keep (schema 10).
-- name: finished_counts
SELECT (minute - :since) / :bucket AS slot, state, sum(n) FROM finished_minutes
 WHERE minute >= :since
 GROUP BY slot, state

-- The newest dead tasks for grouping their failures: along tasks_dead (schema 10), no payload, no traceback.
-- name: dead_summaries
SELECT id, queue, kind, finished_at, json_extract(result_failure, '$.type'),
       substr(json_extract(result_failure, '$.message'), 1, :chars)
  FROM tasks WHERE state = 'dead'
 ORDER BY seq DESC LIMIT :limit

-- name: purge_finished_minutes
DELETE FROM finished_minutes WHERE minute < :before

-- name: count_archived
SELECT count(*) FROM tasks_archive
 WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)

-- name: outstanding
SELECT count(*) FROM tasks WHERE recurring_id = ? AND state IN ('queued', 'failed', 'claimed')

-- The three hottest transitions write only the columns they change: fewer bound values, and
-- indexes on untouched columns are left alone. Everything else goes through update_task.

-- name: write_claim
UPDATE tasks
   SET state = 'claimed', attempts = ?, worker_id = ?, token = ?, claimed_at = ?, times_out_at = ?,
       report_at = NULL, report_data = NULL, cancel_requested = 0, updated_at = ?, version = ?
 WHERE seq = ? AND version = ?

-- name: write_done
UPDATE tasks
   SET state = 'done', worker_id = NULL, token = NULL, claimed_at = NULL, times_out_at = NULL,
       report_at = NULL, report_data = NULL, cancel_requested = 0, result_at = ?, result_value = ?,
       result_failure = NULL, finished_at = ?, updated_at = ?, version = ?
 WHERE seq = ? AND version = ?

-- name: write_report
UPDATE tasks
   SET times_out_at = ?, report_at = ?, report_data = ?, updated_at = ?, version = ?
 WHERE seq = ? AND version = ?

-- name: put_recurring
INSERT INTO recurring (id, schedule, template, args, skip_if_outstanding, next_at, updated_at, owner)
VALUES (:id, :schedule, :template, :args, :skip, :next_at, :now, :owner)
ON CONFLICT (id) DO UPDATE
   SET template = excluded.template, args = excluded.args, skip_if_outstanding = excluded.skip_if_outstanding,
       next_at = CASE WHEN recurring.schedule = excluded.schedule THEN recurring.next_at ELSE excluded.next_at END,
       schedule = excluded.schedule, updated_at = excluded.updated_at, owner = excluded.owner
RETURNING id, schedule, template, args, skip_if_outstanding, next_at, owner

-- name: delete_recurring
DELETE FROM recurring WHERE id = ?

-- name: list_recurring
SELECT id, schedule, template, args, skip_if_outstanding, next_at, owner FROM recurring ORDER BY id

-- name: advance_recurring
UPDATE recurring SET next_at = ?, updated_at = ? WHERE id = ? AND next_at = ?

-- name: put_heartbeat
INSERT INTO worker_heartbeats (worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (worker_id) DO UPDATE
   SET queues = excluded.queues, inflight = excluded.inflight, host = excluded.host, pid = excluded.pid,
       version = excluded.version, started_at = excluded.started_at, timestamp = excluded.timestamp,
       extras = excluded.extras

-- name: get_heartbeat
SELECT worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras
  FROM worker_heartbeats WHERE worker_id = ? AND timestamp >= ?

-- name: list_heartbeats
SELECT worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras
  FROM worker_heartbeats WHERE timestamp >= ? ORDER BY worker_id

-- name: purge_heartbeats
DELETE FROM worker_heartbeats WHERE timestamp < ?

-- A batch of completions (mark_done_many) as one fenced statement: staged in a temporary table,
-- then every row whose lease still matches is finished at once. Rows that do not match are left
-- exactly as they were; the driver reads them back to say why (NotClaimed, NotOwned, NotFound).
-- The columns set here are those transitions.mark_done sets; a unit test compares the two.

-- name: create_completion_stage
CREATE TEMP TABLE IF NOT EXISTS completion_stage (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, worker_id TEXT NOT NULL, value BLOB
)

-- name: stage_completion
INSERT INTO temp.completion_stage (id, token, worker_id, value) VALUES (?, ?, ?, ?)

-- name: _complete_stage
UPDATE tasks
   SET state = 'done', worker_id = NULL, token = NULL, claimed_at = NULL, times_out_at = NULL,
       report_at = NULL, report_data = NULL, cancel_requested = 0, result_at = :now, result_value = s.value,
       result_failure = NULL, finished_at = :now, updated_at = :now, version = tasks.version + 1,
       unique_hold = CASE WHEN instr(tasks.unique_hold, ',done,') > 0 THEN tasks.unique_hold END
  FROM temp.completion_stage AS s
 WHERE tasks.id = s.id AND tasks.state = 'claimed' AND tasks.token = s.token AND tasks.worker_id = s.worker_id

-- name: complete_staged
{complete_stage}
RETURNING *

-- name: complete_staged_ids
{complete_stage}
RETURNING tasks.id, tasks.group_id

-- name: clear_completion_stage
DELETE FROM temp.completion_stage

-- name: put_group
INSERT INTO groups (id, expected, results, meta, chord_claimed, created_at, updated_at, expires_at, ttl)
VALUES (:id, :expected, '{}', :meta, 0, :now, :now, :expires_at, :ttl)
ON CONFLICT (id) DO UPDATE
   SET expected = excluded.expected, results = '{}', meta = excluded.meta, chord_claimed = 0,
       chord_callback_id = NULL, chord_dispatched_at = NULL, updated_at = excluded.updated_at,
       expires_at = excluded.expires_at, member_ids = NULL, callback_id = NULL, callback_template = NULL,
       callback_args = NULL, ttl = excluded.ttl, chain_links = NULL,
       created_at = CASE WHEN groups.expires_at > excluded.updated_at THEN groups.created_at
                         ELSE excluded.created_at END
RETURNING *

-- name: insert_group
INSERT INTO groups (id, expected, results, meta, chord_claimed, created_at, updated_at, expires_at, member_ids,
                    callback_id, callback_template, callback_args, ttl, chain_links)
VALUES (:id, :expected, '{}', :meta, 0, :now, :now, :expires_at, :member_ids, :callback_id, :callback_template,
        :callback_args, :ttl, :chain_links)

-- name: add_group_result
UPDATE groups SET results = json_set(results, '$.' || json_quote(:member), json(:status)), updated_at = :now
 WHERE id = :id AND expires_at > :now
RETURNING *

-- A group lives until it expires, and past that while one of its members is unfinished.
-- name: _group_live
(groups.expires_at > :now OR EXISTS (
    SELECT 1 FROM tasks WHERE tasks.group_id = groups.id AND tasks.state IN ('queued', 'claimed', 'failed')))

-- name: get_group
SELECT * FROM groups WHERE id = :id AND {group_live}

-- name: lock_group
SELECT * FROM groups WHERE id = ?

-- name: group_tasks
SELECT * FROM tasks WHERE group_id = ?

-- name: group_tasks_archived
SELECT * FROM tasks_archive WHERE group_id = ?

-- name: settle_group
UPDATE groups SET expires_at = :expires_at, updated_at = :now, chord_claimed = :claimed,
       chord_callback_id = :callback, chord_dispatched_at = :dispatched_at
 WHERE id = :id

-- name: claim_chord
UPDATE groups SET chord_claimed = 1, chord_callback_id = :callback, chord_dispatched_at = :dispatched_at,
       updated_at = :now
 WHERE id = :id AND chord_claimed = 0 AND expires_at > :now

-- name: purge_groups
DELETE FROM groups WHERE NOT {group_live}

-- name: put_status
INSERT INTO statuses (id, state, payload, error, attempt, meta, queue, created_at, updated_at, expires_at)
VALUES (:id, :state, :payload, :error, :attempt, :meta, :queue, :now, :now, :expires_at)
ON CONFLICT (id) DO UPDATE
   SET state = excluded.state, payload = excluded.payload, error = excluded.error, attempt = excluded.attempt,
       meta = excluded.meta, queue = excluded.queue, updated_at = excluded.updated_at,
       expires_at = excluded.expires_at,
       created_at = CASE WHEN statuses.expires_at > excluded.updated_at THEN statuses.created_at
                         ELSE excluded.created_at END
RETURNING *

-- name: get_status
SELECT * FROM statuses WHERE id = ? AND expires_at > ?

-- name: expire_status
UPDATE statuses SET expires_at = ? WHERE id = ? AND expires_at > ?

-- name: list_statuses
SELECT * FROM statuses
 WHERE expires_at > :now AND (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)
   AND (:before_at IS NULL OR created_at < :before_at OR (created_at = :before_at AND id < :before_id))
 ORDER BY created_at DESC, id DESC
 LIMIT :limit

-- name: purge_statuses
DELETE FROM statuses WHERE expires_at <= ?

-- Unique tasks (SPEC §9): the stored tasks still holding any of a batch's (queue, unique_key) pairs,
-- given as a JSON array of [queue, key]; read through the partial unique index tasks_unique.
-- name: key_holders
SELECT * FROM tasks
 WHERE unique_hold IS NOT NULL
   AND (queue, unique_key) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))

-- Takes the write lock of a joined (deferred) transaction before its holders are read, so no other
-- writer can insert a key between the check and the insert. It changes nothing.
-- name: take_write_lock
UPDATE tasks SET seq = seq WHERE 0

-- Paused queues and per-key limits (SPEC §9).

-- name: set_paused
INSERT INTO queues (name, paused, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at

-- name: paused_queues
SELECT name FROM queues WHERE paused = 1

-- name: queue_records
SELECT name, paused FROM queues

-- Kept by the triggers of schema 10: no scan of tasks.
-- name: queue_counts
SELECT queue, state, n FROM queue_counts WHERE n <> 0

-- The longest-waiting ready task of each queue that has waiting tasks. A min(run_at) over the claim index
-- would read every waiting task; instead walk the index's distinct priorities (each one a seek) and take the
-- first run_at of each, which is that priority's least: a few seeks per queue however many tasks wait.
-- name: oldest_ready
WITH RECURSIVE prio(queue, priority) AS (
    SELECT c.queue, (SELECT t.priority FROM tasks AS t
                      WHERE t.queue = c.queue AND t.state IN ('queued', 'failed')
                      ORDER BY t.priority DESC LIMIT 1)
      FROM (SELECT DISTINCT queue FROM queue_counts WHERE state IN ('queued', 'failed') AND n > 0) AS c
    UNION ALL
    SELECT p.queue, (SELECT t.priority FROM tasks AS t
                      WHERE t.queue = p.queue AND t.state IN ('queued', 'failed') AND t.priority < p.priority
                      ORDER BY t.priority DESC LIMIT 1)
      FROM prio AS p WHERE p.priority IS NOT NULL
)
SELECT queue, min(first_run_at) FROM (
    SELECT p.queue, (SELECT t.run_at FROM tasks AS t
                      WHERE t.queue = p.queue AND t.priority = p.priority AND t.state IN ('queued', 'failed')
                        AND (t.expires_at IS NULL OR t.expires_at > :now)
                      ORDER BY t.run_at LIMIT 1) AS first_run_at
      FROM prio AS p WHERE p.priority IS NOT NULL
)
 WHERE first_run_at <= :now
 GROUP BY queue

-- name: get_limit
SELECT key, concurrency, rate, per, tokens, refilled_at,
       (SELECT count(*) FROM tasks WHERE concurrency_key = limits.key AND state = 'claimed')
  FROM limits WHERE key = ?

-- name: put_limit
INSERT INTO limits (key, concurrency, rate, per, tokens, refilled_at, updated_at)
VALUES (:key, :concurrency, :rate, :per, :tokens, :refilled_at, :now)
ON CONFLICT (key) DO UPDATE
   SET concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per, tokens = excluded.tokens,
       refilled_at = excluded.refilled_at, updated_at = excluded.updated_at

-- name: delete_limit
DELETE FROM limits WHERE key = ?

-- name: list_limits
SELECT key, concurrency, rate, per FROM limits ORDER BY key

-- name: claimed_with_key
SELECT * FROM tasks WHERE concurrency_key = ? AND state = 'claimed' ORDER BY claimed_at, seq LIMIT ?
