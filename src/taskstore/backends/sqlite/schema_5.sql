-- taskstore SQLite schema, version 5: a group is its member tasks.
-- A group enqueued with its members lists them and keeps its chord's callback template; the callback
-- is inserted in the transaction that completes the last member. ``ttl`` keeps a finished group.

ALTER TABLE groups ADD COLUMN member_ids TEXT;          -- JSON array, in member order (NULL: init_group)
ALTER TABLE groups ADD COLUMN callback_id TEXT;         -- the chord's callback task id (NULL: no chord)
ALTER TABLE groups ADD COLUMN callback_template TEXT;   -- its fields as JSON, all but id and args
ALTER TABLE groups ADD COLUMN callback_args BLOB;       -- its own args, encoded by the store's codec
ALTER TABLE groups ADD COLUMN ttl REAL;                 -- seconds a group is kept after its last member ended

CREATE INDEX IF NOT EXISTS tasks_group ON tasks (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_archive_group ON tasks_archive (group_id) WHERE group_id IS NOT NULL;
