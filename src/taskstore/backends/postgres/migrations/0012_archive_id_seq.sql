-- taskstore PostgreSQL schema, migration 12: an archived task is found by its id along (id, seq).
-- get_archived takes the newest archived row of an id (WHERE id = ? ORDER BY seq DESC LIMIT 1). With the index on
-- id alone the planner had two ways: that index then a sort, or the primary key backwards, filtering on id until
-- the first match. Until the archive is analyzed (autovacuum off or behind; the store vacuums the tables it
-- churns, and the archive only grows) it took the second, a walk of every newer archived row: 142 ms for the
-- oldest of 50,000 (bench/results/archive-strategies-2026-12-03.md). Along (id, seq) the match and the order
-- are one index scan, whatever the statistics say.
CREATE INDEX tasks_archive_id_seq ON {schema}.tasks_archive (id, seq);
DROP INDEX {schema}.tasks_archive_id;
