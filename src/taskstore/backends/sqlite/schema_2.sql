-- taskstore SQLite schema, version 2: recurring schedules and worker heartbeats.

CREATE TABLE IF NOT EXISTS recurring (
    id                  TEXT    PRIMARY KEY,
    schedule            TEXT    NOT NULL,
    template            TEXT    NOT NULL,  -- the NewTask's fields as JSON, all but args
    args                BLOB,              -- the template's payload, encoded by the store's codec
    skip_if_outstanding INTEGER NOT NULL,
    next_at             INTEGER NOT NULL,  -- the next slot that fires (microseconds since the epoch)
    updated_at          INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS worker_heartbeats (
    worker_id   TEXT    PRIMARY KEY,
    queues      TEXT    NOT NULL,  -- JSON array
    inflight    INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    version     TEXT    NOT NULL,
    started_at  INTEGER,
    timestamp   INTEGER NOT NULL,  -- stamped by the store's clock
    extras      TEXT               -- JSON object
);
CREATE INDEX IF NOT EXISTS worker_heartbeats_timestamp ON worker_heartbeats (timestamp);
