"""The shop project built by opsloop equals what dbt-core + dbt-duckdb build, table by table,
after a first build and after new events arrive and a second build (incremental merge/append)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from opsloop.models import ModelEngine
from tests.conftest import make_app

from .conftest import SHOP, event_rows, load_events_duckdb, snapshot_duckdb


def _test_key(engine: ModelEngine, uid: str) -> str:
    test = engine.compiler().mp.tests[uid.split(".", 1)[1]]
    attached = test.attached.split(".")[-1]
    values = test.kwargs.get("values")
    return "|".join([test.test, attached, test.column, str(test.where), json.dumps(values)])


def _build(root: Path) -> tuple[dict[str, Any], dict[str, str], list[Any]]:
    app = make_app(root)
    try:
        engine = ModelEngine(app.project, app.warehouse)
        results = engine.build()
        statuses = {}
        for r in results:
            if r.kind == "test":
                statuses[_test_key(engine, r.uid)] = {"pass": "pass", "fail": "fail", "warn": "warn"}[r.status]
    finally:
        app.close()
    return json.loads(json.dumps(snapshot_duckdb(root / "warehouse.duckdb"))), statuses, results


def test_shop_matches_dbt(tmp_path: Path, dbt_reference: dict[str, Any]) -> None:
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    load_events_duckdb(root / "warehouse.duckdb", event_rows(1, 20))
    for run, (first, last) in enumerate([(0, -1), (21, 30)], 1):
        if last >= first:
            load_events_duckdb(root / "warehouse.duckdb", event_rows(first, last))
        ours, statuses, results = _build(root)
        theirs = dbt_reference[f"run{run}"]
        assert sorted(ours) == sorted(theirs)
        assert len(ours) >= 15
        for name in theirs:
            assert ours[name]["columns"] == theirs[name]["columns"], f"run {run}: columns of {name}"
            assert ours[name]["rows"] == theirs[name]["rows"], f"run {run}: rows of {name}"
        assert statuses == dbt_reference[f"tests{run}"]
        errors = [r for r in results if r.status == "error"]
        assert not errors
    # the incremental merge really merged: customers with new events carry only the new batch
    last_event = {r[0]: r for r in ours["customer_last_event"]["rows"]}
    assert last_event[1][1] == 30 and last_event[1][2] == 2
    assert len(ours["events_log"]["rows"]) == 30
    # each of the four tests fails once on bad_data, and a warn-severity failure is a warning
    failing = {k.split("|")[0] for k, v in statuses.items() if v == "fail" and "|bad_data|" in k}
    assert failing == {"unique", "not_null", "accepted_values", "relationships"}
    assert "warn" in statuses.values()
