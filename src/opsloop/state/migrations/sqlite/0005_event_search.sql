-- Text search over events (the events list's `q`): trigram full-text indexes, so that a search for any
-- text of 3 characters or more reads the index instead of every payload (bench/pages.py: 2.2 s on 1M
-- events as a scan). Filled after the append, in the background, from the `search-index` cursor
-- (StateStore.index_search): an FTS5 insert inside the append's transaction or a trigger would cost the
-- inbox more than the append itself. Events past the cursor are searched by a scan, so results are complete.
-- The payload as stored (or the body it is the same as), contentless: the text lives in `events` only.
CREATE VIRTUAL TABLE events_search USING fts5(txt, content='', tokenize='trigram');
-- The error, which dispatch can set later (the row is replaced then: this table keeps its text).
CREATE VIRTUAL TABLE events_search_errors USING fts5(txt, tokenize='trigram');
-- An upgraded store starts at 0: the background indexer fills both tables with the events already stored.
INSERT INTO cursors (consumer, seq, updated_at) VALUES ('search-index', 0, 0)
