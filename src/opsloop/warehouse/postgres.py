"""Postgres as the warehouse (psycopg 3). ``url: postgresql://user@host:5432/db?schema=analytics``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import WarehouseError
from ._sandbox import DEFAULT_LIMIT, DEFAULT_TIMEOUT
from .base import Params, QueryResult, Warehouse
from .sql import pyformat

if TYPE_CHECKING:
    import pyarrow as pa
    from psycopg import Connection, Cursor
    from psycopg.rows import TupleRow


def _split_schema(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    return urlunsplit(parts._replace(query=urlencode(query))), schema




class PostgresWarehouse(Warehouse):
    dialect = "postgres"
    SUPPORTS_ARROW_INSERT = False
    SUPPORTS_MERGE = True
    TRANSACTIONAL_DDL = True
    CREATE_OR_REPLACE_TABLE = False
    DROP_CASCADE = True
    RUNS_SYNCS = True
    RUNS_DUCKDB_SQL = True
    RUNS_IDENTITY = True
    SANDBOXED_QUERIES = True

    def __init__(self, url: str, query_role: str | None = None) -> None:
        self.url, self.default_schema = _split_schema(url)
        self.query_role = query_role
        self._con: Connection[TupleRow] | None = None
        self._lock = threading.RLock()
        self._query_con: Connection[TupleRow] | None = None
        self._query_lock = threading.Lock()

    @property
    def con(self) -> Connection[TupleRow]:
        if self._con is None:
            import psycopg

            try:
                con = psycopg.connect(self.url, autocommit=True)
            except psycopg.Error as exc:
                raise WarehouseError(f"cannot connect to the Postgres warehouse: {exc}") from exc
            self._con = con
            if con.info.server_version < 150000:
                self.SUPPORTS_MERGE = False
        return self._con

    def _run(self, sql: str, params: Params) -> Cursor[TupleRow]:
        import psycopg

        text = pyformat(sql) if params else sql
        try:
            cur = self.con.cursor()
            cur.execute(text, list(params) if params else None)
            return cur
        except psycopg.Error as exc:
            raise WarehouseError(str(exc).strip()) from exc

    def execute(self, sql: str, params: Params = ()) -> None:
        with self._lock:
            self._run(sql, params)

    def atomic(self, statements: Sequence[str]) -> None:
        """The statements in one transaction (rolled back when one fails)."""
        import psycopg

        with self._lock:
            try:
                with self.con.transaction():
                    for stmt in statements:
                        self._run(stmt, ())
            except psycopg.Error as exc:
                raise WarehouseError(str(exc).strip()) from exc

    def execute_count(self, sql: str) -> int | None:
        with self._lock:
            cur = self._run(sql, ())
            return int(cur.rowcount) if cur.rowcount is not None and cur.rowcount >= 0 else None

    def query(self, sql: str, params: Params = ()) -> QueryResult:
        with self._lock:
            cur = self._run(sql, params)
            columns = [d.name for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cur.description else []
        return QueryResult(columns, [tuple(r) for r in rows])

    def sandboxed_query(self, sql: str, limit: int | None = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT,
                        params: Params = ()) -> QueryResult:
        """A caller's query: refused by ``_sandbox.postgres_check`` when it is more than one read-only
        statement or calls a file/admin/settings function, then run on a connection of its own in a
        ``READ ONLY`` transaction with ``statement_timeout`` (and ``SET ROLE`` to
        ``warehouse.options.query_role`` when set), through a server-side cursor that fetches ``limit`` + 1
        rows; the transaction is rolled back, so nothing it does outlives it."""
        import psycopg
        from psycopg import sql as pgsql

        from ._sandbox import QueryTimeout, postgres_check

        postgres_check(sql)
        with self._query_lock:
            con = self._query_connection()
            try:
                with con.transaction(force_rollback=True):
                    with con.cursor() as setup:
                        setup.execute("SET TRANSACTION READ ONLY")
                        setup.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(
                            pgsql.Literal(f"{max(1, int(timeout * 1000))}ms")))
                        if self.query_role:
                            setup.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(self.query_role)))
                    with con.cursor(name="opsloop_query") as cur:
                        text = sql.strip().rstrip(";")
                        cur.execute(pyformat(text) if params else text, list(params) if params else None)
                        columns = [d.name for d in cur.description] if cur.description else []
                        rows = cur.fetchall() if limit is None else cur.fetchmany(limit + 1)
            except psycopg.errors.QueryCanceled as exc:
                raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped; add a WHERE or "
                                   "LIMIT, aggregate in SQL, or raise OPSLOOP_QUERY_TIMEOUT") from exc
            except psycopg.Error as exc:
                if con.closed or con.broken:
                    self._query_con = None
                raise WarehouseError(str(exc).strip()) from exc
        more = limit is not None and len(rows) > limit
        kept = rows[:limit] if more else rows
        return QueryResult(columns, [tuple(r) for r in kept], truncated=more)

    def _query_connection(self) -> Connection[TupleRow]:
        import psycopg

        if self._query_con is None or self._query_con.closed:
            try:
                self._query_con = psycopg.connect(self.url, autocommit=True)
            except psycopg.Error as exc:
                raise WarehouseError(f"cannot connect to the Postgres warehouse: {exc}") from exc
        return self._query_con

    def insert_rows(self, target: str, columns: list[str], rows: Sequence[Sequence[object]]) -> int:
        from .sql import quote

        cols = ", ".join(quote(c, self.dialect) for c in columns)
        with self._lock:
            import psycopg

            try:
                with self.con.cursor() as cur, cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            except psycopg.Error as exc:
                raise WarehouseError(str(exc).strip()) from exc
        return len(rows)

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        columns = list(data.column_names)
        rows = [list(r.values()) for r in data.to_pylist()]
        return self.insert_rows(table, columns, rows)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
        with self._query_lock:
            if self._query_con is not None:
                self._query_con.close()
                self._query_con = None
