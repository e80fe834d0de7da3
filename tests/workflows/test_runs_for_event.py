"""The runs an event started (the event page's "started" list) come from an indexed ``trigger_id``, on a
new store and on one upgraded from before the column existed (its runs' ids read from their trigger JSON)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from opsloop.state import StateStore
from opsloop.workflows.runs import RunStore, runs_for_event


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    """A store migrated up to the workflow tables only (0100), as a database made before 0101 is."""
    store: StateStore
    if request.param == "sqlite":
        from opsloop.state.sqlite import SQLiteStateStore

        store = SQLiteStateStore(tmp_path / "state.sqlite", fsync=False)
    else:
        from opsloop.state.postgres import PostgresStateStore

        store = PostgresStateStore(str(request.getfixturevalue("pg_url")))
    store.migrate(upto=100)
    request.addfinalizer(store.close)
    return store


def _old_run(store: StateStore, run_id: str, trigger: dict[str, object] | None, created: float) -> None:
    with store.transaction() as cur:
        store.execute(cur, "INSERT INTO wf_runs (id, workflow, status, dedupe_key, trigger_event, events, start_seq, "
                           "created_at, updated_at) VALUES (?, 'notify', 'completed', ?, ?, '[]', 0, ?, ?)",
                      (run_id, run_id, json.dumps(trigger) if trigger is not None else None, created, created))


def test_runs_started_by_an_event_old_and_new(old_store: StateStore) -> None:
    now = time.time()
    _old_run(old_store, "run_old1", {"id": "evt_a", "data": {"note": "mentions evt_b"}}, now - 30)
    _old_run(old_store, "run_old2", {"id": "evt_b"}, now - 20)
    _old_run(old_store, "run_tick", None, now - 10)  # a schedule tick: no event
    applied = old_store.migrate()
    assert "0101_run_trigger_ids.sql" in applied

    runs = RunStore(old_store)
    with old_store.transaction() as cur:
        runs.insert_run(cur, "notify", {"id": "evt_a", "name": "demo.requested"}, dedupe_key="evt_a",
                        start_seq=1, run_id="run_new")
        runs.insert_run(cur, "digest", {"tick": "2026-12-02T10:00"}, dedupe_key="tick:1", start_seq=1)

    assert [r.id for r in runs_for_event(old_store, "evt_a")] == ["run_new", "run_old1"]  # newest first
    assert [r.id for r in runs_for_event(old_store, "evt_b")] == ["run_old2"]  # not run_old1, which names it
    assert runs_for_event(old_store, "evt_%") == [] and runs_for_event(old_store, "") == []
    assert [r.id for r in runs_for_event(old_store, "evt_a", limit=1)] == ["run_new"]


def test_the_lookup_reads_the_index_not_every_run(tmp_path: Path) -> None:
    from opsloop.state import open_store

    store = open_store("sqlite:///state.sqlite", tmp_path, fsync=False)
    try:
        plan = store.query("EXPLAIN QUERY PLAN SELECT id FROM wf_runs WHERE trigger_id = ? "
                           "ORDER BY created_at DESC LIMIT 50", ("evt_a",))
        assert any("wf_runs_trigger" in str(row[-1]) for row in plan), plan
    finally:
        store.close()
