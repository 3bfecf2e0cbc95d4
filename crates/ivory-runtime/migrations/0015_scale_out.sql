-- Scheduled sync jobs, claimed by `ivory serve`'s scheduler and `ivory worker` processes.
-- `due_at` NULL: not scheduled (schedule off). A claim moves `due_at` to the end of the claim, so
-- a job whose worker died is due again (and claimed by another) once the claim lapses.
CREATE TABLE sync_jobs (
    installation_id TEXT PRIMARY KEY REFERENCES installations (id),
    due_at BIGINT,
    claimed_by TEXT,
    claimed_until BIGINT
);
CREATE INDEX sync_jobs_due ON sync_jobs (due_at);

-- The shared GCRA state of an installation's rate limit: its theoretical arrival time (µs).
CREATE TABLE rate_limits (
    installation_id TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL
);
