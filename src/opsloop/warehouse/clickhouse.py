"""ClickHouse, embedded through chdb (``pip install chdb``); imported only when this adapter is used.

Schemas are ClickHouse databases; tables are MergeTree; joins use SQL NULL semantics
(``join_use_nulls = 1``) so models give the same rows as on DuckDB and Postgres.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import WarehouseError
from .base import QueryResult, Warehouse


class ClickHouseWarehouse(Warehouse):
    dialect = "clickhouse"
    default_schema = "main"
    SUPPORTS_ARROW_INSERT = True
    SUPPORTS_MERGE = False
    CREATE_OR_REPLACE_TABLE = False
    TABLE_SUFFIX = "ENGINE = MergeTree ORDER BY tuple()"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._session: Any = None
        self._lock = threading.RLock()

    @property
    def session_(self) -> Any:
        if self._session is None:
            try:
                from chdb import session
            except ImportError as exc:
                raise WarehouseError("the ClickHouse warehouse needs chdb: pip install chdb") from exc
            Path(self.path).mkdir(parents=True, exist_ok=True)
            self._session = session.Session(self.path)  # type: ignore[no-untyped-call]
            self._session.query("SET join_use_nulls = 1")
            self._session.query("SET mutations_sync = 2")
        return self._session

    def _inline(self, sql: str, params: Sequence[Any]) -> str:
        if not params:
            return sql
        from .sql import literal, split_placeholders

        parts = split_placeholders(sql)
        if len(parts) != len(params) + 1:
            raise WarehouseError("parameter count does not match the placeholders")
        out = parts[0]
        for value, rest in zip(params, parts[1:], strict=True):
            out += literal(value, self.dialect) + rest
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            try:
                self.session_.query(self._inline(sql, params))
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        with self._lock:
            try:
                table = self.session_.query(self._inline(sql, params), "ArrowTable")
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc
        columns = list(table.column_names)
        rows = [tuple(r[c] for c in columns) for r in table.to_pylist()]
        return QueryResult(columns, rows)

    def relations(self) -> dict[tuple[str, str], str]:
        result = self.query("SELECT database, name, engine FROM system.tables WHERE database NOT IN "
                            "('system', 'INFORMATION_SCHEMA', 'information_schema')")
        return {(str(d).lower(), str(n).lower()): ("view" if e == "View" else "table") for d, n, e in result.rows}

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        result = self.query("SELECT name, type FROM system.columns WHERE database = ? AND table = ? ORDER BY position",
                            (schema, name))
        return [(str(c), str(t)) for c, t in result.rows]

    def ensure_schema(self, schema: str) -> None:
        from .sql import quote

        self.execute(f"CREATE DATABASE IF NOT EXISTS {quote(schema, self.dialect)}")

    def insert_arrow(self, table: str, data: Any) -> int:
        with self._lock:
            try:
                self._insert(table, data)
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc
        return int(data.num_rows)

    def _insert(self, table: str, data: Any) -> None:
        from .sql import literal, quote

        columns = list(data.column_names)
        cols = ", ".join(quote(c, self.dialect) for c in columns)
        rows = data.to_pylist()
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            values = ", ".join("(" + ", ".join(_lit(r[c], literal, self.dialect) for c in columns) + ")"
                               for r in chunk)
            self.session_.query(f"INSERT INTO {table} ({cols}) VALUES {values}")

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def _lit(value: Any, literal: Any, dialect: str) -> str:
    import datetime as dt

    if isinstance(value, dt.datetime | dt.date):
        return str(literal(value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat(), dialect))
    return str(literal(value, dialect))
