"""DuckDB, the embedded default. The server process owns the file; other processes go through it."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WarehouseError, WarehouseLocked
from ._sandbox import DEFAULT_LIMIT, DEFAULT_TIMEOUT
from .base import Params, QueryResult, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa
    from duckdb import DuckDBPyConnection

log = logging.getLogger("opsloop.warehouse")


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"
    SUPPORTS_ARROW_INSERT = True
    SUPPORTS_MERGE = True
    SINGLE_WRITER = True
    CREATE_OR_REPLACE_TABLE = True
    TRANSACTIONAL_DDL = True
    PARALLEL_SESSIONS = True
    RUNS_SYNCS = True
    RUNS_DUCKDB_SQL = True
    RUNS_IDENTITY = True
    SANDBOXED_QUERIES = True
    default_schema = "main"

    def __init__(self, path: Path | str, read_only: bool = False, threads: int | None = None) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.threads = threads
        self._con: DuckDBPyConnection | None = None
        self._lock = threading.RLock()

    @property
    def con(self) -> DuckDBPyConnection:
        if self._con is None:
            import duckdb

            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            try:
                con = duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    raise WarehouseLocked(
                        f"the warehouse {self.path} is in use by another process (is `opsloop up` running? "
                        "stop it, or run this command against the server, which owns the file)", self.path
                    ) from exc
                raise WarehouseError(f"cannot open the warehouse {self.path}: {exc}") from exc
            self._con = con
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
        return self._con

    def execute(self, sql: str, params: Params = ()) -> None:
        import duckdb

        with self._lock:
            try:
                self.con.execute(sql, list(params))
            except duckdb.Error as exc:
                raise WarehouseError(str(exc)) from exc

    def atomic(self, statements: Sequence[str]) -> None:
        """The statements in one transaction (rolled back when one fails)."""
        import duckdb

        with self._lock:
            con = self.con
            try:
                con.execute("BEGIN TRANSACTION")
                for stmt in statements:
                    con.execute(stmt)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise WarehouseError(str(exc)) from exc

    def query(self, sql: str, params: Params = ()) -> QueryResult:
        import duckdb

        with self._lock:
            try:
                cur = self.con.execute(sql, list(params))
                columns = [d[0] for d in cur.description] if cur.description else []
                rows = cur.fetchall()
            except duckdb.Error as exc:
                raise WarehouseError(str(exc)) from exc
        return QueryResult(columns, [tuple(r) for r in rows])

    def sandboxed_query(self, sql: str, limit: int | None = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT,
                        params: Params = ()) -> QueryResult:
        """A caller's query on a cursor of its own: checked by DuckDB's own parser (``_sandbox``), never
        holding the warehouse's lock while it runs (the loader and builds go on), interrupted at
        ``timeout``; only the first ``limit`` + 1 rows are fetched."""
        import duckdb

        from ._sandbox import QueryTimeout, duckdb_checked

        with self._lock:
            cursor = self.con.cursor()
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            with contextlib.suppress(duckdb.Error):  # the query may have ended (and its cursor closed) just now
                cursor.interrupt()

        timer = threading.Timer(timeout, stop)
        timer.daemon = True
        try:
            text = duckdb_checked(cursor, sql)
            timer.start()
            try:
                cur = cursor.execute(text, list(params))
                columns = [d[0] for d in cur.description] if cur.description else []
                rows = cur.fetchall() if limit is None else cur.fetchmany(limit + 1)
            except duckdb.Error as exc:
                if stopped.is_set():
                    raise QueryTimeout(
                        f"the query ran longer than {timeout:g} s and was stopped; add a WHERE or LIMIT, "
                        "aggregate in SQL, or raise OPSLOOP_QUERY_TIMEOUT"
                    ) from exc
                raise WarehouseError(str(exc)) from exc
        finally:
            timer.cancel()
            cursor.close()
        more = limit is not None and len(rows) > limit
        kept = rows[:limit] if more else rows
        return QueryResult(columns, [tuple(r) for r in kept], truncated=more)

    def lock_down(self) -> None:
        """No host files, network, extensions or setting changes for the rest of this database instance's
        life (DuckDB keeps these per database, not per connection: only for a process that just queries)."""
        with self._lock:
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET autoinstall_known_extensions = false")
            self.con.execute("SET autoload_known_extensions = false")
            self.con.execute("SET lock_configuration = true")

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        with self._lock:
            self.con.register("_opsloop_arrow_in", data)
            try:
                self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _opsloop_arrow_in")
            finally:
                self.con.unregister("_opsloop_arrow_in")
        return int(data.num_rows)

    def execute_count(self, sql: str) -> int | None:
        import duckdb

        with self._lock:
            try:
                cur = self.con.execute(sql)
                row = cur.fetchone() if cur.description else None
            except duckdb.Error as exc:
                raise WarehouseError(str(exc)) from exc
        return int(row[0]) if row and isinstance(row[0], int) else None

    def relations(self) -> dict[tuple[str, str], str]:
        # duckdb_tables()/duckdb_views() answer in a fraction of information_schema's time
        result = self.query(
            "SELECT schema_name, table_name, 'table' FROM duckdb_tables() WHERE NOT temporary "
            "UNION ALL SELECT schema_name, view_name, 'view' FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        )
        return {(str(s).lower(), str(n).lower()): str(k) for s, n, k in result.rows}

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        result = self.query(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE lower(schema_name) = lower(?) "
            "AND lower(table_name) = lower(?) ORDER BY column_index",
            (schema, name),
        )
        return [(str(c), str(t)) for c, t in result.rows]

    def session(self) -> Warehouse:
        """A cursor (its own DuckDB connection to the same database) for one worker thread."""
        with self._lock:
            cursor = self.con.cursor()
        return _DuckDBSession(self, cursor)

    def close(self) -> None:
        """Close the connection. DuckDB refuses to close one while a call on it (or on a cursor of it: a
        pull, a build in a worker thread) runs, so wait for that call up to ``CLOSE_WAIT`` seconds; past
        that, leave the file to be closed when the process exits (its WAL keeps what was committed)."""
        import duckdb

        with self._lock:
            if self._con is None:
                return
            deadline = time.monotonic() + CLOSE_WAIT
            while True:
                try:
                    self._con.close()
                    break
                except duckdb.Error as exc:
                    if "busy" not in str(exc).lower() or time.monotonic() > deadline:
                        log.warning("the warehouse %s is still in use; not closed (%s)", self.path, exc)
                        break
                    time.sleep(0.05)
            self._con = None


CLOSE_WAIT = 60.0
"""Seconds ``close()`` waits for a call still running on the warehouse (a pull or build at shutdown)."""


class _DuckDBSession(DuckDBWarehouse):
    """One worker thread's cursor; closing it leaves the owning connection open."""

    def __init__(self, parent: DuckDBWarehouse, cursor: DuckDBPyConnection) -> None:
        super().__init__(parent.path, parent.read_only, parent.threads)
        self._con = cursor

    def relations(self) -> dict[tuple[str, str], str]:
        # duckdb_tables()/duckdb_views() answer in a fraction of information_schema's time
        result = self.query(
            "SELECT schema_name, table_name, 'table' FROM duckdb_tables() WHERE NOT temporary "
            "UNION ALL SELECT schema_name, view_name, 'view' FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        )
        return {(str(s).lower(), str(n).lower()): str(k) for s, n, k in result.rows}

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        result = self.query(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE lower(schema_name) = lower(?) "
            "AND lower(table_name) = lower(?) ORDER BY column_index",
            (schema, name),
        )
        return [(str(c), str(t)) for c, t in result.rows]

    def session(self) -> Warehouse:
        return self
