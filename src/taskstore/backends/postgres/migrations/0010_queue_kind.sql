-- taskstore PostgreSQL schema, migration 10: listing one queue's tasks of one kind (the dashboard's kind filter).
-- No earlier index leads with kind: a rare kind in a big queue was a scan of every task (200,000 tasks: ~20-35 ms
-- a page, growing with the table). Newest first along this index, a page reads its own rows only
-- (bench/kind_listing.py). queue, kind and seq never change, so updates of a task keep their HOT path.
CREATE INDEX tasks_queue_kind ON {schema}.tasks (queue, kind, seq);
