-- The outbox: what sandbox destinations would have sent (Slack, CRM, support tool, email), for demos,
-- previews and tests. A message updated in place keeps its id and gets a new version.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    key TEXT,
    payload TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    created_at ${float} NOT NULL,
    updated_at ${float} NOT NULL
);
CREATE INDEX outbox_destination ON outbox (destination, updated_at);
CREATE INDEX outbox_key ON outbox (destination, key);
