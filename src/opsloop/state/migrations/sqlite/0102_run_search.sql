-- The runs list (/runs, RunStore.list_runs): newest first by (created_at, id), and its text search (`q`)
-- over the trigger event and the error through trigram indexes instead of a scan of every run.
CREATE INDEX wf_runs_newest ON wf_runs (created_at, id);
-- FTS5 keys its rows by an integer: each run's, here (wf_runs' own rowid may change on VACUUM). RunStore
-- writes these rows in the statements that insert, finish and purge runs, a batch at a time.
CREATE TABLE wf_run_search (doc INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE);
-- The trigger event's JSON as stored (never changed after the insert), contentless: the text lives in wf_runs.
CREATE VIRTUAL TABLE wf_run_search_trigger USING fts5(txt, content='', tokenize='trigram');
-- The error, which finishing or cancelling sets (the row is replaced then: this table keeps its text).
CREATE VIRTUAL TABLE wf_run_search_error USING fts5(txt, tokenize='trigram');
-- An upgraded store: the runs it has, oldest first.
INSERT INTO wf_run_search (run_id) SELECT id FROM wf_runs ORDER BY created_at, id;
INSERT INTO wf_run_search_trigger (rowid, txt) SELECT s.doc, r.trigger_event FROM wf_run_search s
    JOIN wf_runs r ON r.id = s.run_id WHERE r.trigger_event IS NOT NULL;
INSERT INTO wf_run_search_error (rowid, txt) SELECT s.doc, r.error FROM wf_run_search s
    JOIN wf_runs r ON r.id = s.run_id WHERE r.error IS NOT NULL
