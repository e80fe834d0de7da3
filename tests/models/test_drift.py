"""Rows whose shape drifts load anyway: columns are added, types widen int -> bigint -> double -> text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from opsloop.warehouse import Warehouse
from opsloop.warehouse._drift import load_widening


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "clickhouse"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        from opsloop.warehouse.duckdb import DuckDBWarehouse

        w: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    elif request.param == "postgres":
        from opsloop.warehouse.postgres import PostgresWarehouse

        w = PostgresWarehouse(request.getfixturevalue("pg_url"))
    else:
        from opsloop.warehouse.clickhouse import ClickHouseWarehouse

        w = ClickHouseWarehouse(tmp_path / "ch")
    yield w
    w.close()


def test_types_widen_and_columns_appear(wh: Warehouse) -> None:
    schema = wh.default_schema if wh.dialect == "postgres" else "raw"
    first = pa.table({"id": pa.array([1, 2], pa.int32()), "score": pa.array([5, 6], pa.int32())})
    assert load_widening(wh, schema, "contacts", first) == [f"created {schema}.contacts with 2 columns"]
    second = pa.table({"id": pa.array([3], pa.int64()), "score": pa.array([7.5]), "email": ["a@example.com"]})
    changes = load_widening(wh, schema, "contacts", second)
    assert len(changes) == 3, changes
    assert changes[0].startswith(f"widened {schema}.contacts.id ") and "-> " in changes[0]
    assert changes[1].startswith(f"widened {schema}.contacts.score ")
    assert changes[2].startswith(f"added column {schema}.contacts.email ")
    third = pa.table({"id": pa.array(["x-4"]), "score": pa.array([1], pa.int64())})
    changes = load_widening(wh, schema, "contacts", third)
    assert len(changes) == 1 and changes[0].startswith(f"widened {schema}.contacts.id "), changes
    rows = wh.query(f"SELECT id, score, email FROM {schema}.contacts ORDER BY score").rows
    assert [(str(r[0]), float(r[1]), r[2]) for r in rows] == [
        ("x-4", 1.0, None), ("1", 5.0, None), ("2", 6.0, None), ("3", 7.5, "a@example.com")]
