"""Snowflake and BigQuery: the SQL opsloop would send, generated without their SDKs, parses in each
engine's dialect and carries the statements each materialization needs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from opsloop import load_project
from opsloop.models import ModelEngine
from opsloop.warehouse import QueryResult, Warehouse
from opsloop.warehouse.bigquery import BigQueryWarehouse
from opsloop.warehouse.snowflake import SnowflakeWarehouse

from .conftest import SHOP


def recording(cls: type[Warehouse], options: dict[str, Any]) -> Any:
    """The real adapter class with its network calls replaced by a log of the SQL it would send."""

    class Recording(cls):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            super().__init__(options)
            self.sent: list[str] = []
            self.tables: dict[tuple[str, str], str] = {}

        def execute(self, sql: str, params: Any = ()) -> None:
            self.sent.append(sql)

        def query(self, sql: str, params: Any = ()) -> QueryResult:
            self.sent.append(sql)
            return QueryResult(["n"], [(0,)])

        def relations(self) -> dict[tuple[str, str], str]:
            return dict(self.tables)

        def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
            return [("customer_id", "INT"), ("max_seq", "INT"), ("batch_events", "INT"), ("last_seen", "TIMESTAMP")]

        def insert_rows(self, target: str, columns: list[str], rows: list[list[Any]]) -> int:
            return len(rows)

    return Recording()


@pytest.mark.parametrize(("cls", "options", "dialect"), [
    (SnowflakeWarehouse, {"schema": "ANALYTICS"}, "snowflake"),
    (BigQueryWarehouse, {"dataset": "analytics"}, "bigquery"),
])
def test_sql_generation(tmp_path: Path, cls: type[Warehouse], options: dict[str, Any], dialect: str) -> None:
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    wh = recording(cls, options)
    engine = ModelEngine(load_project(root), wh)
    engine.check_columns = False
    results = engine.build(kinds=("model", "seed"))
    assert {r.status for r in results} == {"success"}, [(r.name, r.message) for r in results if r.status != "success"]
    for statement in wh.sent:
        sqlglot.parse_one(statement, read=dialect)  # every statement is valid in the engine's dialect
    text = "\n".join(wh.sent)
    schema = options.get("schema") or options.get("dataset")
    assert f"CREATE OR REPLACE TABLE {schema}.fct_orders" in text
    assert f"CREATE OR REPLACE VIEW {schema}.stg_orders" in text
    stg_events = engine.compile_sql("stg_events")
    if dialect == "snowflake":
        assert "JSON_EXTRACT_PATH_TEXT(payload, 'customer_id')" in stg_events
    else:
        assert "JSON_EXTRACT_SCALAR(payload, '$.customer_id')" in stg_events
    # the incremental merge on a second run uses MERGE INTO (both engines support it)
    wh.tables = {(schema.lower(), "customer_last_event"): "table"}
    wh.sent.clear()
    engine.build(select=["customer_last_event"], kinds=("model",))
    merge = next(s for s in wh.sent if s.startswith("MERGE INTO"))
    assert f"MERGE INTO {schema}.customer_last_event AS t USING {schema}.customer_last_event__dbt_tmp AS s" in merge
    sqlglot.parse_one(merge, read=dialect)


def test_sdks_are_imported_only_when_connecting() -> None:
    """Opening the adapters imports no SDK; a missing SDK (the connector is hidden from this interpreter, as
    on an install without the extra) is an error naming the extra to install."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        from opsloop.errors import WarehouseError
        from opsloop.warehouse.bigquery import BigQueryWarehouse
        from opsloop.warehouse.snowflake import SnowflakeWarehouse
        adapters = (SnowflakeWarehouse({"account": "x"}), BigQueryWarehouse({"project": "x"}))
        print(sorted(m for m in ("snowflake.connector", "google.cloud.bigquery") if m in sys.modules))
        sys.modules["snowflake.connector"] = None  # as on an install without the extras
        sys.modules["google.cloud.bigquery"] = None
        for wh in adapters:
            try:
                wh.query("select 1")
            except WarehouseError as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "the Snowflake warehouse needs `pip install 'opsloop[snowflake]'`",
                                       "the BigQuery warehouse needs `pip install 'opsloop[bigquery]'`"]
