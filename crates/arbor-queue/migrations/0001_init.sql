-- arbor's work queue, schema version 1. Applied once, in one transaction, by the binary that
-- finds an empty database; `arbor_meta.schema_version` says which version a database holds.
CREATE TABLE arbor_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per submitted job: everything a worker needs to play its items.
CREATE TABLE arbor_jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,                       -- 'synth'
    config       text NOT NULL,                       -- the job's config (JSON, role defaults applied)
    fingerprint  text NOT NULL,                       -- what a local --resume would match
    input        text NOT NULL,                       -- the input file's name, for the job file
    input_sha256 text NOT NULL,
    total        integer NOT NULL,
    max_attempts integer NOT NULL,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'cancelled')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Leases are numbered from one sequence, so a lease names one claim of one item for ever.
CREATE SEQUENCE arbor_lease;

-- One row per input row. A worker claims a queued item (or one whose lease expired), renews
-- its lease while it plays it, and commits the record in the statement that marks it done,
-- only while the lease is still its own.
CREATE TABLE arbor_items (
    job_id       bigint NOT NULL REFERENCES arbor_jobs (id) ON DELETE CASCADE,
    idx          integer NOT NULL,                    -- the row's index in the input
    epoch        integer NOT NULL,                    -- its prompt-pool epoch
    item         text,                                -- the item (JSON); null for rows not played
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'leased', 'done')),
    attempts     integer NOT NULL DEFAULT 0,
    lease        bigint,
    worker       text,                                -- holder of the lease, then who finished it
    locked_until timestamptz,
    last_error   text,
    record       text,                                -- the item's record (JSON) once done
    status       text,                                -- accepted | gated_out | dead | duplicate
    pairs        integer,
    wins         text,                                -- prompt pairs that earned its pairs (JSON)
    finished_at  timestamptz,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX arbor_items_open ON arbor_items (job_id, epoch, idx) WHERE state <> 'done';
CREATE INDEX arbor_items_lease ON arbor_items (lease) WHERE state = 'leased';
