-- taskstore SQLite schema, version 9: listing one queue's tasks of one kind (the dashboard's kind filter).
-- Without it a rare kind in a big queue was a scan of the whole table (200,000 tasks: ~23 ms a page). The
-- list_kind_* queries name queue and kind as plain equalities, so the planner walks this index in seq order.
CREATE INDEX tasks_queue_kind ON tasks (queue, kind, seq);
