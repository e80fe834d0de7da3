"""Snowflake (optional extra ``opsloop[snowflake]``); the connector is imported only when connecting."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import WarehouseError
from .base import Params, QueryResult, Warehouse
from .sql import pyformat

if TYPE_CHECKING:
    import pyarrow as pa
    from snowflake.connector import SnowflakeConnection


class SnowflakeWarehouse(Warehouse):
    dialect = "snowflake"
    default_schema = "PUBLIC"
    SUPPORTS_MERGE = True
    CREATE_OR_REPLACE_TABLE = True
    PARALLEL_SESSIONS = False
    RUNS_SYNCS = True

    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        self.default_schema = str(options.get("schema") or "PUBLIC")
        self._con: SnowflakeConnection | None = None
        self._lock = threading.RLock()

    @property
    def con(self) -> SnowflakeConnection:
        if self._con is None:
            try:
                import snowflake.connector
            except ImportError as exc:
                raise WarehouseError("the Snowflake warehouse needs `pip install 'opsloop[snowflake]'`") from exc
            self._con = snowflake.connector.connect(**self.options)
        return self._con

    def execute(self, sql: str, params: Params = ()) -> None:
        if params or ";" not in sql.strip().rstrip(";"):
            self.query(sql, params)
            return
        # a script: Snowflake runs one statement per call (the connector's own splitter knows its quoting)
        import io

        from snowflake.connector.util_text import split_statements

        with self._lock:  # one script at a time on the shared connection: a transaction is not interleaved
            for statement, _is_put_or_get in split_statements(io.StringIO(sql), remove_comments=True):
                if statement.strip().rstrip(";").strip():
                    self.query(statement)

    def query(self, sql: str, params: Params = ()) -> QueryResult:
        with self._lock:
            cur = self.con.cursor()
            try:
                cur.execute(pyformat(sql) if params else sql, list(params) if params else None)
                # Snowflake folds unquoted names to upper case; they come back as written (lower case), as on
                # every other engine, so mappings and checks name columns alike everywhere
                columns = [_unfold(d[0]) for d in cur.description] if cur.description else []
                rows = cur.fetchall() if cur.description else []
            except Exception as exc:
                raise WarehouseError(str(exc)) from exc
        return QueryResult(columns, [tuple(r) for r in rows])

    def relations(self) -> dict[tuple[str, str], str]:
        """Tables and views; the views are read from ``information_schema.views`` too, which every Snowflake
        account has (a stand-in such as fakesnow lists views only there)."""
        out = super().relations()
        views = self.query("SELECT table_schema, table_name FROM information_schema.views")
        out.update({(str(s).lower(), str(n).lower()): "view" for s, n in views.rows})
        return out

    def ensure_schema(self, schema: str) -> None:
        from .sql import quote

        super().ensure_schema(schema)
        # Snowflake makes a schema it creates the session's current one: unqualified names (a sync's
        # ``table: customers``, a model's SQL) keep meaning the connection's schema
        self.execute(f"USE SCHEMA {quote(self.default_schema, self.dialect)}")

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        from .sql import quote

        columns = list(data.column_names)
        cols = ", ".join(quote(c, self.dialect) for c in columns)
        marks = ", ".join("%s" for _ in columns)
        with self._lock:
            self.con.cursor().executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                                          [list(r.values()) for r in data.to_pylist()])
        return int(data.num_rows)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _unfold(name: str) -> str:
    """``EMAIL`` (an unquoted name Snowflake folded) -> ``email``; a quoted mixed-case name stays as it is."""
    return name.lower() if name.isupper() else name
