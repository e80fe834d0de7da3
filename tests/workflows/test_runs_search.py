"""The runs list's search (``RunStore.list_runs(search=...)``, the /runs page's ``q``) on SQLite and on the
real local Postgres: it finds text in the trigger event or the error, as typed, whichever way the JSON stored
it (opsloop writes ``é`` as ``\\u00e9``), newest first, paging on with ``before``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsloop.state import StateStore, open_store
from opsloop.workflows.runs import RunStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/state.sqlite", fsync=False)
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def add_run(runs: RunStore, data: dict[str, object], error: str | None = None, workflow: str = "notify") -> str:
    with runs.transaction() as cur:
        run_id = runs.insert_run(cur, workflow, {"id": f"evt_{time.monotonic_ns()}", "name": "hook", "data": data},
                                 dedupe_key=str(time.monotonic_ns()), start_seq=0)
        assert run_id is not None
        if error is not None:
            runs.finish(cur, run_id, "failed", None, error, waited=False)
    return run_id


def found(runs: RunStore, text: str, **kw: object) -> list[str]:
    return [r.id for r in runs.list_runs(search=text, limit=1000, **kw)]  # type: ignore[arg-type]


def test_non_ascii_text_is_found_in_triggers_and_errors(store: StateStore) -> None:
    runs = RunStore(store)
    zoe = add_run(runs, {"name": "Zoë Ölçer", "city": "Montréal"})
    upper = add_run(runs, {"name": "ZOË ÖLÇER"})
    failed = add_run(runs, {"note": "plain"}, error='Slack said "channel_not_found" für #vertrieb')
    plain = add_run(runs, {"name": "Zoe Olcer"})
    stored = store.query("SELECT trigger_event FROM wf_runs WHERE id = ?", (zoe,))[0][0]
    assert "\\u00eb" in stored  # stored escaped: what this test is about
    assert found(runs, "zoë") == [upper, zoe]
    assert found(runs, "ZOË ölçer") == [upper, zoe]
    assert found(runs, "montréal") == [zoe]
    assert found(runs, "für #Vertrieb") == [failed]
    assert found(runs, '"channel_not_found"') == [failed]
    assert found(runs, "zoe") == [plain]  # no accent folding
    assert found(runs, zoe) == [zoe]  # a run id
    assert found(runs, "ö", workflow="other") == []


def scanned(store: StateStore, runs: RunStore, text: str, **kw: object) -> list[str]:
    store.search_index = False
    try:
        return found(runs, text, **kw)
    finally:
        store.search_index = True


ALPHABET = "abcAB 0129%_\\\"'*()-:^.,{}@éÉ\t"
ODD = ['"', "*", "NEAR(a b)", "AND", "%", "_", "\\", "ab", "Abc", "é", "ÉÉÉ", "{\"", "x" * 3000, "a%b", "a_b",
       "(((", "a OR b", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "run_", "notify"]


def test_the_index_finds_what_a_scan_finds(store: StateStore) -> None:
    import random

    assert store.search_index and store.run_search_tables
    runs = RunStore(store)
    runs.search_scan_first = 7  # read the index below the newest 7 runs
    rng = random.Random(11)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30))) for _ in range(120)]
    made = [add_run(runs, {"t": t}, error=texts[-1 - n] if n % 3 == 0 else None,
                    workflow="notify" if n % 2 else "digest") for n, t in enumerate(texts)]
    assert len(made) == 120
    queries = [*ODD, *(t[i : i + rng.randint(3, 8)] for t in texts[:60] for i in [rng.randint(0, 10)])]
    for query in queries:
        assert found(runs, query) == scanned(store, runs, query), repr(query[:40])
        assert found(runs, query, workflow="digest") == scanned(store, runs, query, workflow="digest")
    newest = runs.list_runs(limit=30)
    before = (newest[-1].created_at, newest[-1].id)
    for query in queries[:25]:
        assert found(runs, query, before=before) == scanned(store, runs, query, before=before), repr(query[:40])


def test_a_common_text_pages_newest_first_and_errors_and_purges_are_kept(store: StateStore) -> None:
    runs = RunStore(store)
    runs.search_scan_first = 10
    made = [add_run(runs, {"tag": "common", "n": n}) for n in range(60)]
    expected = list(reversed(made))
    assert found(runs, "common") == expected
    page = runs.list_runs(search="common", limit=25)
    assert [r.id for r in page] == expected[:25]
    rest = runs.list_runs(search="common", limit=100, before=(page[-1].created_at, page[-1].id))
    assert [r.id for r in rest] == expected[25:]
    with runs.transaction() as cur:  # an error set when the run finishes, and changed by a cancel
        runs.finish(cur, made[0], "failed", None, "HubSpot said 429 Too Many Requests", waited=False)
    assert found(runs, "too many") == [made[0]]
    with runs.transaction() as cur:
        runs.cancel(cur, made[0], "cancelled by Zoë")
    assert found(runs, "too many") == [] and found(runs, "by zoë") == [made[0]]
    with runs.transaction() as cur:
        runs.finish(cur, made[1], "completed", None, None, waited=False)
    assert runs.purge(time.time() + 1) == 2
    assert found(runs, "common") == expected[:-2]
    assert found(runs, "by zoë") == []


def test_an_upgraded_store_indexes_the_runs_it_had(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from opsloop.state.sqlite import SQLiteStateStore

    old = SQLiteStateStore(tmp_path / "old.sqlite", fsync=False)
    old.migrate(upto=101)
    request.addfinalizer(old.close)
    runs = RunStore(old)
    before = [add_run(runs, {"who": f"Ünal {n}"}, error="boom ß" if n == 3 else None) for n in range(5)]
    assert "0102_run_search.sql" in old.migrate()
    runs.search_scan_first = 0
    assert found(runs, "ünal") == list(reversed(before))
    assert found(runs, "boom ß") == [before[3]]
    plan = " ".join(str(r) for r in old.query(
        "EXPLAIN QUERY PLAN SELECT id FROM wf_runs ORDER BY created_at DESC, id DESC LIMIT 51"))
    assert "wf_runs_newest" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.postgres
def test_an_upgraded_postgres_store_indexes_the_runs_it_had(pg_url: str) -> None:
    from opsloop.state.postgres import PostgresStateStore

    old = PostgresStateStore(pg_url)
    try:
        old.migrate(upto=101)
        runs = RunStore(old)
        before = [add_run(runs, {"who": f"Ünal {n}"}) for n in range(5)]
        assert "0102_run_search.sql" in old.migrate()
        assert old.search_index and old.run_search_tables
        runs.search_scan_first = 0
        assert found(runs, "ünal") == list(reversed(before))
        made = {r[0] for r in old.query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                                        "AND tablename IN ('wf_run_search', 'wf_runs')")}
        assert made >= {"wf_run_search_doc_trgm", "wf_runs_error_trgm", "wf_runs_newest"}
    finally:
        old.close()
