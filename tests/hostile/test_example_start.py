"""A fresh `opsloop init --example saas` starts without failed events: its seeds load at the first start and
the identity build waits for the models it reads instead of failing on every `model.built`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from opsloop.project.scaffold import init_project

from ..conftest import wait_for
from .conftest import Running, start


def events(running: Running, **params: str) -> list[dict[str, Any]]:
    with running.api() as api:
        answer = api.get("/api/events", params={"limit": "1000", **params})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def test_example_starts_without_failed_events(tmp_path: Path) -> None:
    root = tmp_path / "acme"
    init_project(root, example="saas")
    running = start(root)
    try:
        sent = [running.good_event(f"buyer{i}@example.com") for i in range(3)]

        def settled() -> bool:
            listed = events(running)
            built = {e["name"] for e in listed}
            waiting = [e for e in listed if e["status"] == "received"]
            return "model.built" in built and not waiting and all(
                any(e["id"] == i and e["status"] == "dispatched" for e in listed) for i in sent)

        wait_for(settled, 60, interval=0.5, what="the events to be dispatched and the models built")

        def query(sql: str) -> Any:
            with running.api() as api:
                answer = api.post("/api/query", json={"sql": sql})
            return answer.json().get("rows") if answer.status_code == 200 else None

        # the identity build ran once the models it reads were built (over the seeds' people)
        wait_for(lambda: (query("SELECT count(*) FROM identity.golden_records") or [[0]])[0][0] > 0, 60,
                 interval=0.5, what="the identity build over the built models")
        assert query("SELECT count(*) FROM demo_requests") == [[3]]
        failed = events(running, status="failed")
        assert failed == [], json.dumps(failed, indent=1)[:2000]
    finally:
        code = running.proc.stop()
    assert code == 0
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        seeded = con.execute("SELECT count(*) FROM main.crm_contacts").fetchone()
        assert seeded is not None and seeded[0] > 0  # loaded at the first start, without `opsloop seed`
