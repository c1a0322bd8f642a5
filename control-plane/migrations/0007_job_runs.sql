-- When each background job last ran, across control-plane replicas: a
-- replica runs a job only after claiming its interval here (background.rs),
-- so N replicas run each job once per interval, not N times.
CREATE TABLE job_runs (
    job         text PRIMARY KEY,
    last_run_at timestamptz NOT NULL
);
