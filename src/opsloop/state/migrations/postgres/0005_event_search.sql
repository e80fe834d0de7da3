-- Text search over events (the events list's `q`). The payload text (or the body it is the same as) is
-- copied here after the append, in the background, from the `search-index` cursor (StateStore.index_search):
-- a trigram index on `events` itself would double the cost of every append. The pg_trgm GIN indexes over
-- this table and over events.error are made by PostgresStateStore when the extension can be created or is
-- there (without it, search scans `events`, as before this migration).
CREATE TABLE event_search (
    event_seq BIGINT PRIMARY KEY REFERENCES events (seq) ON DELETE CASCADE,
    doc TEXT NOT NULL
);
-- An upgraded store starts at 0: the background indexer copies the events already stored.
INSERT INTO cursors (consumer, seq, updated_at) VALUES ('search-index', 0, 0)
