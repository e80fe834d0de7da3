-- Sources: one row per (source, stream) with its cursor, and one row per pull in the run history.
-- A stream's cursor is written in the same transaction as the run's outcome and its change events, and
-- only after the warehouse load it describes has committed.
CREATE TABLE source_streams (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor TEXT,
    rows_total BIGINT NOT NULL DEFAULT 0,
    last_rows BIGINT NOT NULL DEFAULT 0,
    last_run_id TEXT,
    updated_at ${float} NOT NULL,
    PRIMARY KEY (source, stream)
);
CREATE TABLE source_runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    started_at ${float} NOT NULL,
    finished_at ${float},
    status TEXT NOT NULL,
    full_refresh INTEGER NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0,
    streams TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    resume_at ${float}
);
CREATE INDEX source_runs_source ON source_runs (source, started_at);
CREATE TABLE source_requests (
    source TEXT NOT NULL,
    day TEXT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, day)
)
