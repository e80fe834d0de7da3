-- Durable workflows: runs, memoised steps, waits, per-workflow state and schedule ticks.
CREATE TABLE wf_workflows (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    since_seq ${seq} NOT NULL,
    created_at ${float} NOT NULL,
    updated_at ${float} NOT NULL
);

CREATE TABLE wf_runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    dedupe_key TEXT,
    trigger_event TEXT,
    events TEXT NOT NULL DEFAULT '[]',
    input TEXT,
    output TEXT,
    error TEXT,
    start_seq ${seq} NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    concurrency_key TEXT,
    debounce_key TEXT,
    wake_at ${float},
    lease_owner TEXT,
    lease_until ${float},
    attempts INTEGER NOT NULL DEFAULT 0,
    rerun_of TEXT,
    created_at ${float} NOT NULL,
    started_at ${float},
    finished_at ${float},
    updated_at ${float} NOT NULL,
    pokes INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX wf_runs_dedupe ON wf_runs (workflow, dedupe_key);
CREATE INDEX wf_runs_runnable ON wf_runs (status, wake_at);
CREATE INDEX wf_runs_workflow ON wf_runs (workflow, created_at);
CREATE INDEX wf_runs_debounce ON wf_runs (workflow, debounce_key);

CREATE TABLE wf_steps (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at ${float} NOT NULL,
    finished_at ${float},
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE wf_waits (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    event_name TEXT NOT NULL,
    match_expr TEXT,
    after_seq ${seq} NOT NULL,
    deadline ${float},
    PRIMARY KEY (run_id, step_id)
);
CREATE INDEX wf_waits_event ON wf_waits (event_name);

CREATE TABLE wf_schedule_ticks (
    schedule TEXT NOT NULL,
    tick ${float} NOT NULL,
    run_id TEXT,
    created_at ${float} NOT NULL,
    PRIMARY KEY (schedule, tick)
);

-- wait_for_event looks back in the log by name from the run's start.
CREATE INDEX wf_events_name_seq ON events (name, seq);
