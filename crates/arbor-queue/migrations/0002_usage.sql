-- arbor's work queue, schema version 2: what each worker's roles asked of their models, per
-- job (requests, tokens, call time as arbor_llm's Usage JSON), for the exported card's
-- accounting. Each worker writes its running totals over its previous row.
CREATE TABLE arbor_usage (
    job_id  bigint NOT NULL REFERENCES arbor_jobs (id) ON DELETE CASCADE,
    worker  text NOT NULL,
    role    text NOT NULL,
    model   text NOT NULL,
    usage   text NOT NULL,
    PRIMARY KEY (job_id, worker, role, model)
);
