"""The shop project builds on DuckDB, Postgres, ClickHouse (chdb) and Snowflake (the real connector answered
by fakesnow) to the same rows, table by table,
including the incremental models after a second batch of events."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop import load_project
from opsloop.models import ModelEngine
from opsloop.warehouse import Warehouse
from opsloop.warehouse.sql import relation
from tests.conftest import comparable

from .conftest import SHOP, event_rows

RAW_TYPES = {
    "duckdb": "event_id VARCHAR PRIMARY KEY, seq BIGINT, endpoint VARCHAR, name VARCHAR, received_at TIMESTAMPTZ, "
              "idempotency_key VARCHAR, source VARCHAR, payload JSON",
    "postgres": "event_id text PRIMARY KEY, seq bigint, endpoint text, name text, received_at timestamptz, "
                "idempotency_key text, source text, payload json",
    "snowflake": "event_id VARCHAR PRIMARY KEY, seq BIGINT, endpoint VARCHAR, name VARCHAR, "
                 "received_at TIMESTAMP_TZ, idempotency_key VARCHAR, source VARCHAR, payload VARIANT",
    "clickhouse": "event_id String, seq Int64, endpoint Nullable(String), name String, "
                  "received_at DateTime64(6, 'UTC'), idempotency_key Nullable(String), source Nullable(String), "
                  "payload String",
}
COLUMNS = ["event_id", "seq", "endpoint", "name", "received_at", "idempotency_key", "source", "payload"]



def snapshot(wh: Warehouse) -> dict[str, Any]:
    schema = wh.default_schema.lower()
    out = {}
    for (s, name), _kind in sorted(wh.relations().items()):
        if s != schema:
            continue
        result = wh.query(f"SELECT * FROM {relation(wh.default_schema, name, wh.dialect)}")
        rows = sorted(([comparable(v) for v in r] for r in result.rows), key=lambda r: json.dumps(r, default=str))
        out[name] = {"columns": result.columns, "rows": rows}
    return out


def _load_raw(wh: Warehouse, raw_schema: str, rows: list[tuple[Any, ...]], create: bool) -> None:
    target = relation(raw_schema, "events", wh.dialect)
    if create:
        wh.ensure_schema(raw_schema)
        suffix = f" {wh.TABLE_SUFFIX}" if wh.TABLE_SUFFIX else ""
        wh.execute(f"CREATE TABLE {target} ({RAW_TYPES[wh.dialect]}){suffix}")
    wh.insert_rows(target, COLUMNS, [list(r) for r in rows])


@pytest.fixture
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Warehouse, str]]:
    kind = request.param
    if kind == "duckdb":
        from opsloop.warehouse.duckdb import DuckDBWarehouse

        wh: Warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
        yield wh, "raw"
        wh.close()
    elif kind == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        from opsloop.warehouse.postgres import PostgresWarehouse

        wh = PostgresWarehouse(pg_url)
        raw = wh.default_schema + "_raw"
        yield wh, raw
        wh.execute(f'DROP SCHEMA IF EXISTS "{raw}" CASCADE')
        wh.close()
    elif kind == "snowflake":
        # the real snowflake-connector-python API, answered by fakesnow (Snowflake SQL run on an in-memory DuckDB)
        import fakesnow

        from opsloop.warehouse.snowflake import SnowflakeWarehouse

        with fakesnow.patch():
            wh = SnowflakeWarehouse({"account": "acme", "user": "opsloop", "password": "x", "database": "SHOP",
                                     "schema": "ANALYTICS"})
            yield wh, "raw"
            wh.close()
    else:
        from opsloop.warehouse.clickhouse import ClickHouseWarehouse

        wh = ClickHouseWarehouse(tmp_path / "chdb")
        yield wh, "raw"
        wh.close()


def _build_twice(root: Path, wh: Warehouse, raw_schema: str) -> list[dict[str, Any]]:
    project = load_project(root, environ={**os.environ, "SHOP_RAW_SCHEMA": raw_schema})
    engine = ModelEngine(project, wh)
    snaps = []
    for run, (first, last) in enumerate([(1, 20), (21, 30)]):
        _load_raw(wh, raw_schema, event_rows(first, last), create=run == 0)
        results = engine.build()
        errors = [(r.name, r.message) for r in results if r.status == "error"]
        assert not errors, errors
        assert sum(r.status == "fail" for r in results) == 4
        snaps.append(snapshot(wh))
    return snaps


_reference: dict[str, list[dict[str, Any]]] = {}


def _duckdb_reference(tmp_path: Path) -> list[dict[str, Any]]:
    if "snaps" not in _reference:
        from opsloop.warehouse.duckdb import DuckDBWarehouse

        root = tmp_path / "ref"
        shutil.copytree(SHOP, root)
        wh = DuckDBWarehouse(tmp_path / "ref.duckdb")
        try:
            _reference["snaps"] = _build_twice(root, wh, "raw")
        finally:
            wh.close()
    return _reference["snaps"]


@pytest.mark.parametrize("warehouse", [pytest.param("postgres", marks=pytest.mark.postgres), "clickhouse",
                                       "snowflake"], indirect=True)
def test_same_rows_as_duckdb(tmp_path: Path, warehouse: tuple[Warehouse, str]) -> None:
    wh, raw_schema = warehouse
    expected = _duckdb_reference(tmp_path)
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    got = _build_twice(root, wh, raw_schema)
    for run in range(2):
        assert sorted(got[run]) == sorted(expected[run])
        for name in expected[run]:
            # Snowflake folds unquoted names to upper case, as it does for every client
            assert [c.lower() for c in got[run][name]["columns"]] == expected[run][name]["columns"], \
                f"{wh.dialect} run {run}: {name}"
            assert got[run][name]["rows"] == expected[run][name]["rows"], f"{wh.dialect} run {run}: {name}"


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "clickhouse",
                                       "snowflake"], indirect=True)
def test_question_marks_and_percents_inside_literals_are_not_placeholders(
        warehouse: tuple[Warehouse, str]) -> None:
    wh, _ = warehouse
    sql = ("SELECT 'why?' AS q, ? AS v, '100%' AS pct, 'it''s ?' AS quoted -- a comment with ? in it\n"
           ", /* and ? here */ ? AS w")
    result = wh.query(sql, ["a", 2])
    assert [[str(v) for v in r] for r in result.rows] == [["why?", "a", "100%", "it's ?", "2"]]


@pytest.mark.parametrize("warehouse", ["duckdb", "snowflake"], indirect=True)
def test_a_script_runs_statement_by_statement_and_names_come_back_as_written(
        warehouse: tuple[Warehouse, str]) -> None:
    """Snowflake's connector runs one statement per call: a script (state tables, a swap) is split, with
    ';' inside literals and comments left alone; unquoted names come back lower case as on every engine."""
    wh, _ = warehouse
    wh.ensure_schema("scripted")
    wh.execute("CREATE TABLE scripted.t (id INTEGER, note VARCHAR); -- a comment; with a semicolon\n"
               "INSERT INTO scripted.t VALUES (1, 'a;b'); INSERT INTO scripted.t VALUES (2, 'c');")
    result = wh.query("SELECT id, note AS note_text FROM scripted.t ORDER BY id")
    assert result.columns == ["id", "note_text"]
    assert [tuple(r) for r in result.rows] == [(1, "a;b"), (2, "c")]
