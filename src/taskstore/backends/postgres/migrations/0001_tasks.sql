-- taskstore PostgreSQL schema, migration 1: tasks and their archive.
-- {schema} is the store's schema, validated and quoted by the driver. Columns are read in this order
-- (SELECT *); later migrations only ever append columns.

CREATE TABLE {schema}.tasks (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order
    id                  text             NOT NULL UNIQUE,
    queue               text             NOT NULL,
    kind                text             NOT NULL,
    args                bytea,
    context             jsonb,
    reference_id        text,
    priority            integer          NOT NULL,
    run_at              timestamptz      NOT NULL,
    max_attempts        integer          NOT NULL,
    attempts            integer          NOT NULL,
    processing_timeout  double precision NOT NULL,
    retry               jsonb,
    state               text             NOT NULL,
    worker_id           text,
    token               text,
    claimed_at          timestamptz,
    times_out_at        timestamptz,
    report_at           timestamptz,
    report_data         jsonb,
    cancel_requested    boolean          NOT NULL DEFAULT false,
    result_at           timestamptz,
    result_value        bytea,
    result_failure      jsonb,
    created_at          timestamptz      NOT NULL,
    updated_at          timestamptz      NOT NULL,
    last_enqueued_at    timestamptz      NOT NULL,
    finished_at         timestamptz,
    version             integer          NOT NULL,
    recurring_id        text,
    group_id            text
);

-- Exactly the claimable rows, in claim order: per queue, and across all queues.
CREATE INDEX tasks_claim_queue ON {schema}.tasks (queue, priority DESC, run_at, seq)
    WHERE state IN ('queued', 'failed');
CREATE INDEX tasks_claim_any ON {schema}.tasks (priority DESC, run_at, seq)
    WHERE state IN ('queued', 'failed');
CREATE INDEX tasks_lease_timeouts ON {schema}.tasks (times_out_at) WHERE state = 'claimed';
CREATE INDEX tasks_finished ON {schema}.tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_recurring ON {schema}.tasks (recurring_id, state) WHERE recurring_id IS NOT NULL;

-- Archived tasks: the same columns (an id may appear more than once here: it is free again in
-- tasks once archived), plus when they moved. A migration that adds a column to tasks adds it here too.
CREATE TABLE {schema}.tasks_archive (LIKE {schema}.tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {schema}.tasks_archive ADD COLUMN archived_at timestamptz NOT NULL, ADD PRIMARY KEY (seq);
CREATE INDEX tasks_archive_id ON {schema}.tasks_archive (id);
