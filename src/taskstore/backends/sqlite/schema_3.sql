-- taskstore SQLite schema, version 3: groups of tasks and their chord claims.

CREATE TABLE IF NOT EXISTS groups (
    id                   TEXT    PRIMARY KEY,
    expected             INTEGER NOT NULL,
    results              TEXT    NOT NULL,  -- JSON object: member id -> its status
    meta                 TEXT    NOT NULL,  -- JSON object
    chord_claimed        INTEGER NOT NULL DEFAULT 0,
    chord_callback_id    TEXT,
    chord_dispatched_at  INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_expires_at ON groups (expires_at);
