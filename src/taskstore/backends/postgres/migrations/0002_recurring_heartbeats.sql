-- taskstore PostgreSQL schema, migration 2: recurring schedules and worker heartbeats.

CREATE TABLE {schema}.recurring (
    id                  text        PRIMARY KEY,
    schedule            text        NOT NULL,
    template            text        NOT NULL,  -- the NewTask's fields as JSON, all but args
    args                bytea,                 -- the template's payload, encoded by the store's codec
    skip_if_outstanding boolean     NOT NULL,
    next_at             timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE {schema}.worker_heartbeats (
    worker_id   text        PRIMARY KEY,
    queues      jsonb       NOT NULL,
    inflight    integer     NOT NULL,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    version     text        NOT NULL,
    started_at  timestamptz,
    timestamp   timestamptz NOT NULL,
    extras      jsonb
);
CREATE INDEX worker_heartbeats_timestamp ON {schema}.worker_heartbeats (timestamp);
