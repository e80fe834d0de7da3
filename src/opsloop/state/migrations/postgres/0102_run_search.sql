-- The runs list (/runs, RunStore.list_runs): newest first by (created_at, id), and its text search (`q`)
-- over the trigger event and the error. The trigger's JSON is copied here (RunStore writes it with the run):
-- a trigram index on wf_runs itself would be written again at every update of a run (a claim, a lease, a
-- wake), as the runnable index makes those updates non-HOT. The pg_trgm GIN indexes over this table and over
-- wf_runs.error (partial: only runs with an error) are made by PostgresStateStore when the extension can be
-- created or is there, as for the event search (without it, the runs search scans).
CREATE INDEX wf_runs_newest ON wf_runs (created_at, id);
CREATE TABLE wf_run_search (
    run_id TEXT PRIMARY KEY REFERENCES wf_runs (id) ON DELETE CASCADE,
    doc TEXT NOT NULL
);
INSERT INTO wf_run_search (run_id, doc) SELECT id, trigger_event FROM wf_runs WHERE trigger_event IS NOT NULL
