-- taskstore PostgreSQL schema, migration 4: status-only records of the result backend.

CREATE TABLE {schema}.statuses (
    id          text        PRIMARY KEY,
    state       text        NOT NULL,
    payload     jsonb,
    error       jsonb,
    attempt     integer     NOT NULL,
    meta        jsonb       NOT NULL,
    queue       text,                   -- meta's "queue", for filtering
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX statuses_newest ON {schema}.statuses (created_at DESC, id DESC);
CREATE INDEX statuses_expires_at ON {schema}.statuses (expires_at);
