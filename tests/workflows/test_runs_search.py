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
