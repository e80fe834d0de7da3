"""The same metric definitions give the same answers on DuckDB, Postgres and ClickHouse (chdb).

The example tables are created in each engine through opsloop's own warehouse adapters; the metric engine
compiles to each dialect with sqlglot and the adapters bind the ``?`` parameters their driver's way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop import load_project
from opsloop.metrics import MetricEngine, MetricQuery
from opsloop.metrics.catalog import catalog_of
from opsloop.metrics.dashboards import BoardFilters, TileRenderer
from opsloop.warehouse import Warehouse
from opsloop.warehouse.clickhouse import ClickHouseWarehouse
from opsloop.warehouse.duckdb import DuckDBWarehouse
from opsloop.warehouse.postgres import PostgresWarehouse

from .conftest import TABLES, create_example_tables, monday_base

QUERIES: list[dict[str, Any]] = [
    {"metric": "new_customers", "grain": "week", "since": "60d"},
    {"metric": "new_customers", "grain": "month", "since": "1y", "by": ["plan"]},
    {"metric": "churned_customers"},
    {"metric": "customer_count", "grain": "day", "since": "60d"},
    {"metric": "daily_sqls", "grain": "day", "since": "60d"},
    {"metric": "sales", "grain": "week", "since": "60d", "by": ["plan"]},
    {"metric": "sales", "where": ["plan=pro"]},
    {"metric": "sales", "where": ["plan=pro' OR '1'='1"]},
    {"metric": "sales_mtd", "grain": "day", "since": "60d"},
    {"metric": "sales_per_order", "grain": "quarter", "since": "1y"},
    {"metric": "sales_vs_last_month"},
    {"metric": "orders", "grain": "year"},
    {"metric": "sales_7d", "grain": "day", "since": "60d"},
    {"metric": "pro_share_of_sales", "grain": "week", "since": "60d"},
    {"metric": "demo_to_purchase_days"},
    {"metric": "demo_to_purchase_days", "by": ["name"], "percentile": True},
    {"metric": "buyers", "where": ["name!=Ada"]},
]


def _ddl(engine: str, columns: str) -> str:
    if engine == "postgres":
        return columns.replace("DOUBLE", "DOUBLE PRECISION")
    if engine == "clickhouse":
        parts = []
        for col in columns.split(","):
            name, kind = col.strip().split(" ", 1)
            ch = {"INTEGER": "Int64", "VARCHAR": "String", "TIMESTAMP": "Nullable(DateTime)",
                  "DOUBLE": "Float64"}[kind.strip()]
            parts.append(f"{name} {ch}")
        return ", ".join(parts)
    return columns


def fill(warehouse: Warehouse, engine: str, schema: str) -> None:
    base = monday_base()

    def execute(sql: str, params: tuple[Any, ...]) -> None:
        match = re.match(r"CREATE TABLE (\S+)\.(\w+) \((.*)\)$", sql, re.S)
        if match:
            table = match.group(2)
            engine_suffix = " ENGINE = MergeTree ORDER BY tuple()" if engine == "clickhouse" else ""
            sql = f"CREATE TABLE {schema}.{table} ({_ddl(engine, TABLES[table])}){engine_suffix}"
        elif sql.startswith("CREATE SCHEMA"):
            sql = (f"CREATE DATABASE IF NOT EXISTS {schema}" if engine == "clickhouse"
                   else f"CREATE SCHEMA IF NOT EXISTS {schema}")
        else:
            sql = sql.replace("analytics.", f"{schema}.")
        warehouse.execute(sql, params)

    create_example_tables(execute, base)


def engine_for(project_root: Path, warehouse: Warehouse, schema: str) -> MetricEngine:
    catalog = catalog_of(load_project(project_root))

    def resolve(sm: Any) -> str:
        if sm.relation:
            return str(sm.relation)
        return f"{schema}.{catalog.model_name(sm)}"

    return MetricEngine(catalog, warehouse, resolve)


def answers(engine: MetricEngine) -> list[list[list[Any]]]:
    out = []
    for spec in QUERIES:
        result = engine.query(MetricQuery.from_params(**spec))
        out.append([[round(v, 4) if isinstance(v, float) else v for v in row] for row in result.rows])
    return out


@pytest.fixture
def duck(example_dir: Path) -> Iterator[MetricEngine]:
    wh = DuckDBWarehouse(":memory:")
    fill(wh, "duckdb", "analytics")
    yield engine_for(example_dir, wh, "analytics")
    wh.close()


def test_postgres_gives_the_same_answers(example_dir: Path, duck: MetricEngine, pg_url: str) -> None:
    wh = PostgresWarehouse(pg_url)
    schema = wh.default_schema
    try:
        fill(wh, "postgres", schema)
        pg = engine_for(example_dir, wh, schema)
        expected = answers(duck)
        assert answers(pg) == expected
        assert expected[2] == [[1]] and expected[7] == [[0]]
        board = pg.catalog.dashboards["sales"]
        cohort_pg = TileRenderer(pg).render(board, 10, BoardFilters())
        cohort_duck = TileRenderer(duck).render(board, 10, BoardFilters())
        assert cohort_pg["rows"] == cohort_duck["rows"] and cohort_pg["rows"]
    finally:
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        wh.close()


def test_clickhouse_chdb_gives_the_same_answers(example_dir: Path, duck: MetricEngine, tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    wh = ClickHouseWarehouse(tmp_path / "ch")
    try:
        fill(wh, "clickhouse", "analytics")
        ch = engine_for(example_dir, wh, "analytics")
        assert answers(ch) == answers(duck)
        board = ch.catalog.dashboards["sales"]
        assert TileRenderer(ch).render(board, 10, BoardFilters())["rows"] == \
            TileRenderer(duck).render(board, 10, BoardFilters())["rows"]
    finally:
        wh.close()


def test_each_dialect_gets_its_own_sql_and_placeholders(duck: MetricEngine) -> None:
    from opsloop.metrics.compiler import Filter, MeasureQuery, compile_measure

    sm, measure = duck.catalog.measures["sales_amount"]
    mq = MeasureQuery(sm, measure, "analytics.orders", "week", dt.date(2026, 1, 1), None, ["plan"],
                      [Filter.parse("plan=x' OR 1=1 --")])
    duck_sql, duck_params = compile_measure(mq, "duckdb")
    pg_sql, _ = compile_measure(mq, "postgres")
    ch_sql, ch_params = compile_measure(mq, "clickhouse")
    assert duck_params == ch_params == [dt.date(2026, 1, 1), "x' OR 1=1 --"]
    assert "ordered_at >= ?" in duck_sql and "CAST(plan AS TEXT) = ?" in duck_sql
    assert "ordered_at >= ?" in pg_sql and "DATE_TRUNC('WEEK', CAST(ordered_at AS TIMESTAMP))" in pg_sql
    assert "ordered_at >= ?" in ch_sql and "dateTrunc('WEEK'" in ch_sql
    assert "OR 1=1" not in duck_sql + pg_sql + ch_sql


def test_a_range_that_starts_mid_week_keeps_the_first_cohort_whole(duck: MetricEngine) -> None:
    """The sales board's cohort tile from a date inside the first cohort's week (the Tuesday after ``M``, the
    Monday its first two customers signed up on): the week is counted whole, as with the range from ``M``."""
    board = duck.catalog.dashboards["sales"]
    base = monday_base()
    from_monday = TileRenderer(duck).render(board, 10, BoardFilters(since=base.isoformat()))
    mid_week = TileRenderer(duck).render(board, 10, BoardFilters(since=(base + dt.timedelta(days=1)).isoformat()))
    first = from_monday["rows"][0]  # type: ignore[index]
    assert first["cohort"] == base.isoformat() and first["size"] == 2, from_monday
    assert mid_week["rows"] == from_monday["rows"]
