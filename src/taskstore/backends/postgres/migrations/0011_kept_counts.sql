-- taskstore PostgreSQL schema, migration 11: counts kept as tasks change, for the overview of a big store.
-- Counting 1,000,000 tasks per queue and state was a scan of the table (~0.5 s here), and so was counting the
-- tasks finished over the last hour (~0.45 s). Statement triggers keep both, so every statement that writes
-- tasks keeps them right, whatever it is. They do not update a counter row: many claimers would then queue
-- on the same few rows. Each statement appends its net change to count_deltas (no index, no row another
-- writer touches), and the store folds those into the totals now and then (fold_counts) under an advisory
-- lock; a reader adds the totals and the deltas not yet folded, in one snapshot, so it is exact.

-- Live tasks (archived ones not counted) per queue and state. A row may be left at 0.
CREATE TABLE {schema}.queue_counts (
    queue text   NOT NULL,
    state text   NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, state)
) WITH (fillfactor = 50);  -- room for the HOT updates of each fold

-- Tasks that reached done, dead or cancelled, per minute of finished_at, queue and state. Events, not a
-- census: archiving or retrying a task later leaves its minute as it was.
CREATE TABLE {schema}.finished_minutes (
    minute timestamptz NOT NULL,
    queue  text        NOT NULL,
    state  text        NOT NULL,
    n      bigint      NOT NULL,
    PRIMARY KEY (minute, queue, state)
);

-- Not yet folded: a count's change (minute NULL) or finishes in a minute (minute set).
CREATE TABLE {schema}.count_deltas (
    queue  text        NOT NULL,
    state  text        NOT NULL,
    minute timestamptz,
    n      bigint      NOT NULL
);

CREATE FUNCTION {schema}.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (queue, state, n)
    SELECT queue, state, count(*) FROM new_rows GROUP BY queue, state;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (queue, state, n)
    SELECT queue, state, -count(*) FROM old_rows GROUP BY queue, state;
    RETURN NULL;
END
$$;

-- Fires for every UPDATE of tasks (PostgreSQL takes no column list with transition tables); an update that
-- moves no task between queues or states (a report-in, a lease renewal) appends nothing.
CREATE FUNCTION {schema}.count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.count_deltas (queue, state, minute, n)
    SELECT queue, state, NULL, sum(n)
      FROM (SELECT queue, state, 1 AS n FROM new_rows UNION ALL SELECT queue, state, -1 FROM old_rows) AS moved
     GROUP BY queue, state
    HAVING sum(n) <> 0
    UNION ALL
    SELECT n.queue, n.state, to_timestamp(floor(extract(epoch FROM n.finished_at) / 60) * 60), count(*)
      FROM new_rows AS n JOIN old_rows AS o ON o.seq = n.seq
     WHERE n.state IN ('done', 'dead', 'cancelled') AND o.state NOT IN ('done', 'dead', 'cancelled')
       AND n.finished_at IS NOT NULL
     GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;

CREATE FUNCTION {schema}.count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.queue_counts;
    DELETE FROM {schema}.count_deltas WHERE minute IS NULL;
    RETURN NULL;
END
$$;

-- The dead tasks, newest first (the dashboard's failure groups): a partial index, so only a task going dead or
-- leaving dead writes it.
CREATE INDEX tasks_dead ON {schema}.tasks (seq) WHERE state = 'dead';

-- Creating the triggers locks out every writer of tasks until this migration commits, so the counts taken
-- below are exactly what the triggers carry on from.
CREATE TRIGGER tasks_count_insert AFTER INSERT ON {schema}.tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_inserted();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON {schema}.tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_updated();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON {schema}.tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_deleted();
CREATE TRIGGER tasks_count_truncate AFTER TRUNCATE ON {schema}.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_truncated();

-- What the store holds now; the tasks' finish times stand in for the events before this migration.
INSERT INTO {schema}.queue_counts (queue, state, n)
SELECT queue, state, count(*) FROM {schema}.tasks GROUP BY queue, state;
INSERT INTO {schema}.finished_minutes (minute, queue, state, n)
SELECT to_timestamp(floor(extract(epoch FROM finished_at) / 60) * 60), queue, state, count(*) FROM {schema}.tasks
 WHERE finished_at IS NOT NULL AND state IN ('done', 'dead', 'cancelled')
 GROUP BY 1, 2, 3;
