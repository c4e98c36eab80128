-- taskstore PostgreSQL schema, migration 5: a group is its member tasks.
-- A group enqueued with its members lists them and keeps its chord's callback template; the callback
-- is inserted in the transaction that completes the last member. ``ttl`` keeps a finished group.

ALTER TABLE {schema}.groups
    ADD COLUMN member_ids        jsonb,   -- member ids in member order (NULL: made with init_group)
    ADD COLUMN callback_id       text,    -- the chord's callback task id (NULL: no chord)
    ADD COLUMN callback_template text,    -- its fields as JSON, all but id and args
    ADD COLUMN callback_args     bytea,   -- its own args, encoded by the store's codec
    ADD COLUMN ttl               float8;  -- seconds a group is kept after its last member ended

CREATE INDEX tasks_group ON {schema}.tasks (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX tasks_archive_group ON {schema}.tasks_archive (group_id) WHERE group_id IS NOT NULL;
