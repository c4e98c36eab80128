-- taskstore PostgreSQL schema, migration 3: groups of tasks and their chord claims.

CREATE TABLE {schema}.groups (
    id                   text        PRIMARY KEY,
    expected             integer     NOT NULL,
    results              jsonb       NOT NULL,  -- member id -> its status
    meta                 jsonb       NOT NULL,
    chord_claimed        boolean     NOT NULL DEFAULT false,
    chord_callback_id    text,
    chord_dispatched_at  timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL
);
CREATE INDEX groups_expires_at ON {schema}.groups (expires_at);
