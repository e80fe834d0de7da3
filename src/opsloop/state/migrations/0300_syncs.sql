-- Reverse ETL (syncs): per-sync health for alerts (one notice per status change), the run lease that keeps
-- two processes from running the same sync, and per-destination daily request quotas.
-- Row-level sync state (fingerprints) lives in the warehouse next to the data: see docs/syncs.md.
CREATE TABLE sync_status (
    sync TEXT PRIMARY KEY,
    health TEXT NOT NULL DEFAULT 'unknown',
    last_status TEXT,
    last_run_id TEXT,
    last_run_at ${float},
    lease_owner TEXT,
    lease_until ${float},
    updated_at ${float} NOT NULL
);
CREATE TABLE sync_quota (
    quota_key TEXT NOT NULL,
    day TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (quota_key, day)
);
