"""The model verbs as a user runs them: build, run, test, seed, compile, query, selection, --full-refresh."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from opsloop.models import ModelEngine
from tests.conftest import make_app, run_cli

from .conftest import SHOP, event_rows, load_events_duckdb


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    load_events_duckdb(root / "warehouse.duckdb", event_rows(1, 20))
    return root


def _json(proc: object) -> dict:  # type: ignore[type-arg]
    return json.loads(proc.stdout)  # type: ignore[attr-defined]


def test_build_then_query_and_compile(shop: Path) -> None:
    proc = run_cli("build", "--project", str(shop), "--exclude", "bad_data", "--json")
    assert proc.returncode == 0, proc.stderr
    data = _json(proc)
    by_name = {r["name"]: r for r in data["results"]}
    assert by_name["fct_orders"]["materialization"] == "table" and by_name["fct_orders"]["rows"] == 9
    assert by_name["stg_orders"]["materialization"] == "view"
    assert by_name["customers"]["materialization"] == "seed" and by_name["customers"]["rows"] == 6
    assert by_name["unique_fct_orders_order_id"]["status"] == "pass"
    assert "int_order_items" not in by_name  # ephemeral: inlined, never built
    assert data["ok"] is True

    proc = run_cli("query", "select customer_id, tier from dim_customers order by 1", "--project", str(shop), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _json(proc)[0] == {"customer_id": 1, "tier": "vip"}  # type: ignore[index]

    proc = run_cli("query", "drop table dim_customers", "--project", str(shop))
    assert proc.returncode == 1 and "read-only" in proc.stderr

    proc = run_cli("compile", "fct_orders", "--project", str(shop))
    assert proc.returncode == 0, proc.stderr
    assert "with __dbt__cte__int_order_items as (" in proc.stdout
    assert "main.stg_orders" in proc.stdout and "cast(round(amount * 100) as bigint)" in proc.stdout


def test_table_summary_and_failing_tests_exit_1(shop: Path) -> None:
    proc = run_cli("build", "--project", str(shop))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t") == ["model", "materialization", "rows", "seconds", "status"]
    assert any(line.startswith("fct_orders\ttable\t9\t") and line.endswith("\tsuccess") for line in lines)
    assert "fail: unique_bad_data_id: models/marts/schema.yml:34: 1 failing row(s) for unique on bad_data.id" \
        in proc.stderr
    assert "warn: accepted_values_bad_data_status__placed__shipped" in proc.stderr


def test_selection_and_verbs(shop: Path) -> None:
    app = make_app(shop)
    try:
        engine = ModelEngine(app.project, app.warehouse)
        names = lambda sel, kinds=("model",): [u.split(".", 1)[1] for u in engine.selected(sel, kinds=kinds)]  # noqa: E731
        assert names(["+dim_customers"]) == ["stg_orders", "stg_products", "stg_customers", "int_order_items",
                                             "fct_orders", "dim_customers"] or set(names(["+dim_customers"])) == {
            "stg_orders", "stg_products", "stg_customers", "int_order_items", "fct_orders", "dim_customers"}
        assert set(names(["stg_events+"])) == {"stg_events", "events_log", "customer_last_event", "page_views"}
        assert set(names(["tag:orders"])) == {"stg_orders"}
        assert set(names(["path:models/staging"])) == {"stg_customers", "stg_products", "stg_orders", "stg_events"}
        assert set(names(["tag:marts,stg_events+"])) == {"events_log", "customer_last_event", "page_views"}
        assert set(names(["customers"], ("seed",))) == {"customers"}
        seeds = engine.build(kinds=("seed",))
        assert {r.name for r in seeds} == {"customers", "products", "orders", "country_codes"}
        types = dict(app.warehouse.query("select column_name, data_type from information_schema.columns "
                                         "where table_name = 'country_codes'").rows)
        assert types == {"code": "VARCHAR", "country_name": "VARCHAR", "population_m": "DOUBLE"}
    finally:
        app.close()
    proc = run_cli("seed", "--project", str(shop), "--json")
    assert proc.returncode == 0 and len(_json(proc)["results"]) == 4, proc.stdout + proc.stderr
    proc = run_cli("run", "--project", str(shop), "-s", "+fct_orders", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["kind"] for r in _json(proc)["results"]} == {"model"}, proc.stdout
    proc = run_cli("test", "--project", str(shop), "-s", "fct_orders", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["kind"] for r in _json(proc)["results"]} == {"test"}, proc.stdout


def test_incremental_and_full_refresh(shop: Path) -> None:
    assert run_cli("build", "-p", str(shop), "-s", "+events_log", "--json").returncode == 0
    load_events_duckdb(shop / "warehouse.duckdb", event_rows(21, 25))
    data = _json(run_cli("run", "-p", str(shop), "-s", "events_log", "--json"))
    result = data["results"][0]
    assert (result["rows"], result["changed_rows"]) == (25, 5)
    data = _json(run_cli("run", "-p", str(shop), "-s", "events_log", "--full-refresh", "--json"))
    assert (data["results"][0]["rows"], data["results"][0]["changed_rows"]) == (25, 25)


def test_bad_selector_and_unknown_model(shop: Path) -> None:
    proc = run_cli("build", "-p", str(shop), "-s", "no_such_model")
    assert proc.returncode == 1 and "--select 'no_such_model' matches no model" in proc.stderr
    proc = run_cli("compile", "nope", "-p", str(shop))
    assert proc.returncode == 1 and "no model named 'nope'" in proc.stderr


def test_lineage(shop: Path) -> None:
    proc = run_cli("lineage", "dim_customers.lifetime_value", "-p", str(shop))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "dim_customers.lifetime_value",
        "└── fct_orders.amount",
        "    ├── stg_orders.quantity",
        "    │   └── orders.quantity (seed)",
        "    └── stg_products.price",
        "        └── products.price (seed)",
    ]
    docs = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    block = docs.split("$ opsloop lineage dim_customers.lifetime_value\n", 1)[1].split("```", 1)[0]
    assert proc.stdout == block  # the docs' example is what the command prints
    proc = run_cli("lineage", "stg_events", "-p", str(shop), "--json")
    data = json.loads(proc.stdout)
    assert data["upstream"] == ["source.raw.events"]
    assert data["columns"]["customer_id"] == ["raw.events.payload"]
    assert set(data["downstream"]) == {"model.events_log", "model.customer_last_event"}
    proc = run_cli("lineage", "dim_customers.nope", "-p", str(shop))
    assert proc.returncode == 1 and "dim_customers has no column 'nope'" in proc.stderr


def test_disabled_model_source_selector_and_validate(shop: Path) -> None:
    (shop / "models" / "marts" / "page_views.sql").write_text(
        "{{ config(enabled=false) }}\nselect page from {{ ref('events_log') }}\n")
    app = make_app(shop)
    try:
        engine = ModelEngine(app.project, app.warehouse)
        chosen = {u.split(".", 1)[1] for u in engine.selected(["source:raw+"], kinds=("model",))}
        assert chosen == {"stg_events", "events_log", "customer_last_event"}
    finally:
        app.close()
    (shop / "models" / "marts" / "dim_customers.sql").write_text(
        (shop / "models" / "marts" / "dim_customers.sql").read_text().replace("c.country,", "c.cuntry,"))
    proc = run_cli("validate", "-p", str(shop))
    assert proc.returncode == 1
    assert "models/marts/dim_customers.sql:4: column 'cuntry' does not exist" in proc.stderr + proc.stdout
