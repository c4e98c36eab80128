-- taskstore SQLite schema, version 4: status-only records of the result backend.

-- Status-only records: tasks the store never held (run elsewhere), kept until they expire.
CREATE TABLE IF NOT EXISTS statuses (
    id          TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL,
    payload     TEXT,              -- JSON
    error       TEXT,              -- JSON object
    attempt     INTEGER NOT NULL,
    meta        TEXT    NOT NULL,  -- JSON object
    queue       TEXT,              -- meta's "queue", for filtering
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS statuses_newest ON statuses (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS statuses_expires_at ON statuses (expires_at);
