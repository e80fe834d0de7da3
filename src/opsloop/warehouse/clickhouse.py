"""ClickHouse, embedded through chdb (``pip install chdb``); imported only when this adapter is used.

Schemas are ClickHouse databases; tables are MergeTree; joins use SQL NULL semantics
(``join_use_nulls = 1``) so models give the same rows as on DuckDB and Postgres.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import WarehouseError
from .base import Params, QueryResult, Row, Warehouse
from .sql import literal

if TYPE_CHECKING:
    import pyarrow as pa


class _Session(Protocol):
    """What this adapter uses of a ``chdb.session.Session`` (chdb ships no types)."""

    def query(self, sql: str, fmt: str = ...) -> pa.Table:
        """Run ``sql``; with ``fmt="ArrowTable"`` the result is an Arrow table (other formats: unused)."""

    def close(self) -> None: ...


class ClickHouseWarehouse(Warehouse):
    dialect = "clickhouse"
    default_schema = "main"
    SUPPORTS_ARROW_INSERT = True
    SUPPORTS_MERGE = False
    CREATE_OR_REPLACE_TABLE = False
    TABLE_SUFFIX = "ENGINE = MergeTree ORDER BY tuple()"
    RUNS_SYNCS = True
    UPDATE_FROM = False
    TRANSACTIONS = False
    STATE_TABLE_SUFFIX = ("ENGINE = MergeTree ORDER BY tuple() "
                          "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1")

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._session: _Session | None = None
        self._lock = threading.RLock()

    @property
    def session_(self) -> _Session:
        if self._session is None:
            try:
                from chdb import session
            except ImportError as exc:
                raise WarehouseError("the ClickHouse warehouse needs chdb: pip install chdb") from exc
            Path(self.path).mkdir(parents=True, exist_ok=True)
            opened: _Session = session.Session(self.path)  # type: ignore[no-untyped-call]
            self._session = opened
            opened.query("SET join_use_nulls = 1")
            opened.query("SET mutations_sync = 2")
            # unqualified names mean the default schema, as on every other engine (chdb's own is ``default``)
            opened.query(f"CREATE DATABASE IF NOT EXISTS {self.default_schema}")
            opened.query(f"USE {self.default_schema}")
        return self._session

    def portable(self, sql: str) -> str:
        """DuckDB's SQL as ClickHouse's: sqlglot's transpiler, keeping ``?`` placeholders (this adapter inlines
        them) and ``TIMESTAMPTZ`` as microsecond ``DateTime64`` in UTC (sqlglot's default keeps seconds)."""
        return _portable(sql)

    def exchange_tables(self, a: str, b: str) -> None:
        self.execute(f"EXCHANGE TABLES {a} AND {b}")

    def _inline(self, sql: str, params: Params) -> str:
        if not params:
            return sql
        from .sql import split_placeholders

        parts = split_placeholders(sql)
        if len(parts) != len(params) + 1:
            raise WarehouseError("parameter count does not match the placeholders")
        out = parts[0]
        for value, rest in zip(params, parts[1:], strict=True):
            out += literal(value, self.dialect) + rest
        return out

    def execute(self, sql: str, params: Params = ()) -> None:
        from .sql import split_statements

        with self._lock:
            try:
                # a script: chdb runs one statement per call
                for statement in split_statements(self._inline(sql, params)):
                    self.session_.query(statement)
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc

    def query(self, sql: str, params: Params = ()) -> QueryResult:
        with self._lock:
            try:
                table = self.session_.query(self._inline(sql, params), "ArrowTable")
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc
        columns = list(table.column_names)
        rows: list[Row] = [tuple(r[c] for c in columns) for r in table.to_pylist()]
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

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        with self._lock:
            try:
                self._insert(table, data)
            except Exception as exc:
                raise WarehouseError(str(exc).strip()) from exc
        return int(data.num_rows)

    def _insert(self, table: str, data: pa.Table) -> None:
        from .sql import quote

        columns = list(data.column_names)
        cols = ", ".join(quote(c, self.dialect) for c in columns)
        rows = data.to_pylist()
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            values = ", ".join("(" + ", ".join(_lit(r[c], self.dialect) for c in columns) + ")"
                               for r in chunk)
            self.session_.query(f"INSERT INTO {table} ({cols}) VALUES {values}")

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


@functools.lru_cache(maxsize=1024)
def _portable(sql: str) -> str:
    import sqlglot
    from sqlglot import exp

    stamp = exp.DataType.build("DateTime64(6, 'UTC')", dialect="clickhouse")

    def keep(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and not node.this:
            return exp.var("?")
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMPTZ:
            return stamp.copy()
        # to_timestamp(epoch seconds) and now() to the microsecond (ClickHouse's fromUnixTimestamp and now()
        # keep whole seconds: a sync's runs in one second then listed in no particular order)
        if isinstance(node, exp.UnixToTime) and node.args.get("scale") is None:
            micros = exp.Anonymous(this="toInt64", expressions=[
                exp.Mul(this=exp.Paren(this=node.this.transform(keep)), expression=exp.Literal.number(1_000_000))])
            return exp.Anonymous(this="fromUnixTimestamp64Micro", expressions=[micros, exp.Literal.string("UTC")])
        if isinstance(node, exp.CurrentTimestamp) or (
                isinstance(node, exp.Anonymous) and str(node.this).lower() == "now" and not node.expressions):
            return exp.Anonymous(this="now64", expressions=[exp.Literal.number(6), exp.Literal.string("UTC")])
        return node

    return ";\n".join(e.transform(keep).sql("clickhouse") for e in sqlglot.parse(sql, read="duckdb") if e)


def _lit(value: object, dialect: str) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return literal(value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat(), dialect)
    return literal(value, dialect)
