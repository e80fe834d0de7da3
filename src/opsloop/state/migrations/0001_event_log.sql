-- The event log: every webhook received, accepted or not, and every internal event.
CREATE TABLE events (
    seq ${seq_key},
    id TEXT NOT NULL UNIQUE,
    endpoint TEXT,
    name TEXT NOT NULL,
    received_at ${float} NOT NULL,
    idempotency_key TEXT,
    headers TEXT NOT NULL DEFAULT '{}',
    body ${blob},
    payload TEXT,
    status TEXT NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    source TEXT NOT NULL DEFAULT 'webhook',
    related_id TEXT,
    expires_at ${float},
    dispatched_at ${float}
);
CREATE INDEX events_accepted_seq ON events (accepted, seq);
CREATE INDEX events_status ON events (status, received_at);
CREATE INDEX events_endpoint ON events (endpoint, received_at);
CREATE INDEX events_expires ON events (expires_at);

CREATE TABLE idempotency (
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    expires_at ${float} NOT NULL,
    PRIMARY KEY (endpoint, key)
);

CREATE TABLE cursors (
    consumer TEXT PRIMARY KEY,
    seq ${seq} NOT NULL,
    updated_at ${float} NOT NULL
);

CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
