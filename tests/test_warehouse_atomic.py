"""``Warehouse.atomic``: statements that must be seen together (a microbatch window's delete and insert, a
delete+insert incremental) commit together, and a failure leaves none of them done — on real DuckDB and Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsloop.errors import WarehouseError
from opsloop.warehouse import Warehouse
from opsloop.warehouse.duckdb import DuckDBWarehouse
from opsloop.warehouse.postgres import PostgresWarehouse


def _check(wh: Warehouse, table: str) -> None:
    wh.execute(f"create table {table} (id integer primary key, v text)")
    wh.execute(f"insert into {table} values (1, 'old'), (2, 'old')")
    wh.atomic([f"delete from {table} where id = 1", f"insert into {table} values (1, 'new')"])
    assert sorted(wh.query(f"select id, v from {table}").rows) == [(1, "new"), (2, "old")]
    # the second statement fails (a duplicate key): the delete before it is rolled back
    with pytest.raises(WarehouseError) as err:
        wh.atomic([f"delete from {table} where id = 1", f"insert into {table} values (2, 'dup')"])
    assert "2" in str(err.value) or "duplicate" in str(err.value).lower() or "constraint" in str(err.value).lower()
    assert sorted(wh.query(f"select id, v from {table}").rows) == [(1, "new"), (2, "old")]
    # and the connection is usable afterwards (no transaction left open)
    wh.execute(f"insert into {table} values (3, 'after')")
    assert wh.query(f"select count(*) from {table}").rows == [(3,)]


def test_duckdb_atomic_commits_together_and_rolls_back_on_failure(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        _check(wh, "main.t")
        session = wh.session()  # a worker thread's cursor has its own transaction
        _check(session, "main.t2")
        wh.release(session)
    finally:
        wh.close()


def test_postgres_atomic_commits_together_and_rolls_back_on_failure(pg_url: str) -> None:
    wh = PostgresWarehouse(pg_url)
    try:
        wh.ensure_schema(wh.default_schema)
        _check(wh, f'"{wh.default_schema}".t')
    finally:
        wh.close()
