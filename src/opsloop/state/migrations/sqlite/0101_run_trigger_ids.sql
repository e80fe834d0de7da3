-- The id of the event that started a run, as a column with an index: the event page lists the runs an
-- event started, which scanned every run's trigger JSON before (RunStore.runs_for_event).
ALTER TABLE wf_runs ADD COLUMN trigger_id TEXT;
UPDATE wf_runs SET trigger_id = json_extract(trigger_event, '$.id') WHERE trigger_event IS NOT NULL AND json_valid(trigger_event);
CREATE INDEX wf_runs_trigger ON wf_runs (trigger_id, created_at);
