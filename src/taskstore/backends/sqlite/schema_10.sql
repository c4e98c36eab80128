-- taskstore SQLite schema, version 10: counts kept as tasks change, for the overview of a big store.
-- Counting a million tasks per queue and state was a scan of the table (~0.9 s), and so was counting the
-- tasks finished over the last hour (~0.75 s). Triggers keep both, so every writer, whatever statement it
-- runs, keeps them right; SQLite has one writer at a time, so the counter rows are never contended.

-- Live tasks (archived ones not counted) per queue and state. A row may be left at 0.
CREATE TABLE queue_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

-- Tasks that reached done, dead or cancelled, per minute of finished_at (microseconds at the minute's start),
-- queue and state. Events, not a census: archiving or retrying a task later leaves its minute as it was.
CREATE TABLE finished_minutes (
    minute INTEGER NOT NULL,
    queue  TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, state)
) WITHOUT ROWID;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;

CREATE TRIGGER tasks_count_update AFTER UPDATE OF state, queue ON tasks
    WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue
BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

-- Equalities, not IN lists: a trigger builds the lookup table of an IN list of three or more afresh for every
-- row it fires on (an in-memory index, pages zeroed), which cost the claim+ack path more than the counts did.
CREATE TRIGGER tasks_finished_minute AFTER UPDATE OF state ON tasks
    WHEN (new.state = 'done' OR new.state = 'dead' OR new.state = 'cancelled')
         AND old.state <> 'done' AND old.state <> 'dead' AND old.state <> 'cancelled'
         AND new.finished_at IS NOT NULL
BEGIN
    INSERT INTO finished_minutes (minute, queue, state, n)
    VALUES (new.finished_at - new.finished_at % 60000000, new.queue, new.state, 1)
        ON CONFLICT (minute, queue, state) DO UPDATE SET n = n + 1;
END;

-- The dead tasks, newest first (the dashboard's failure groups): a partial index, so only a task going dead or
-- leaving dead writes it.
CREATE INDEX tasks_dead ON tasks (seq) WHERE state = 'dead';

-- What the store holds now; the tasks' finish times stand in for the events before this version.
INSERT INTO queue_counts (queue, state, n) SELECT queue, state, count(*) FROM tasks GROUP BY queue, state;
INSERT INTO finished_minutes (minute, queue, state, n)
SELECT finished_at - finished_at % 60000000, queue, state, count(*) FROM tasks
 WHERE finished_at IS NOT NULL AND state IN ('done', 'dead', 'cancelled')
 GROUP BY 1, 2, 3;
