-- Login sessions: the SHA-256 of each session id (never the id itself), when it expires, who opened it,
-- and a tag of the API token it was opened with (a new token ends the old sessions).
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    created_at ${float} NOT NULL,
    expires_at ${float} NOT NULL,
    client TEXT,
    token_tag TEXT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
