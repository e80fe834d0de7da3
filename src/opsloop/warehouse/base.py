"""The warehouse adapter contract. One module per engine; shared code reads capability flags."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from ._sandbox import DEFAULT_LIMIT, DEFAULT_TIMEOUT

if TYPE_CHECKING:
    import pyarrow as pa

Row: TypeAlias = tuple[object, ...]
"""One result row: the driver's Python values (int, float, Decimal, str, bool, date, datetime, None, ...);
a reader narrows a value with ``opsloop.narrow`` (``as_int(row[0], "the count")``) before it uses it."""

Params: TypeAlias = Sequence[object]
"""Values for a statement's ``?`` placeholders, in order."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[Row]
    truncated: bool = False
    """More rows matched than the caller's limit; ``rows`` holds the first ``limit`` of them."""

    def as_dicts(self) -> list[dict[str, object]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Warehouse(ABC):
    """A connection to one warehouse engine."""

    dialect: str = "duckdb"
    """sqlglot dialect name used to generate this engine's SQL."""
    default_schema: str = "main"
    """Schema models build into unless a model's config names another."""
    SUPPORTS_ARROW_INSERT: bool = False
    """Bulk loads go through an Arrow table instead of row inserts."""
    SUPPORTS_MERGE: bool = False
    """The engine has MERGE INTO for incremental merges (otherwise merge runs as delete+insert)."""
    SINGLE_WRITER: bool = False
    """Only one process may open the warehouse for writing (DuckDB); others go through the server."""
    CREATE_OR_REPLACE_TABLE: bool = False
    """``CREATE OR REPLACE TABLE ... AS`` swaps a table atomically (else drop and create in a transaction)."""
    TRANSACTIONAL_DDL: bool = False
    """DDL can run inside a transaction and roll back."""
    PARALLEL_SESSIONS: bool = False
    """Independent statements gain from running on parallel sessions (threads) at once."""
    TABLE_SUFFIX: str = ""
    """Text appended to CREATE TABLE (ClickHouse needs an ENGINE clause)."""
    DROP_CASCADE: bool = False
    """Views are bound to the tables they read, so replacing a table needs ``DROP ... CASCADE`` (Postgres)."""
    DELETE_SUPPORTED: bool = True
    """``DELETE FROM ... WHERE`` works (ClickHouse: lightweight deletes)."""
    RUNS_SYNCS: bool = False
    """Reverse-ETL syncs keep their diff state here (schema ``opsloop_sync``; the SQL of ``syncs/diff.py``)."""
    UPDATE_FROM: bool = True
    """``UPDATE ... FROM`` joins another table (ClickHouse: no; the diff engine rebuilds a table and swaps it in
    with ``exchange_tables``)."""
    TRANSACTIONS: bool = True
    """``BEGIN ... COMMIT`` makes statements one unit (ClickHouse: each statement stands alone)."""
    STATE_TABLE_SUFFIX: str = ""
    """Text appended to CREATE TABLE of a table that ``UPDATE`` and ``DELETE`` change in place (ClickHouse:
    MergeTree with the columns its lightweight updates need)."""
    RUNS_DUCKDB_SQL: bool = False
    """Shared code's SQL, written in DuckDB's dialect (the subset Postgres shares), runs here as written;
    elsewhere ``portable`` transpiles it with sqlglot first."""
    RUNS_IDENTITY: bool = False
    """Identity resolution and segments run here (schema ``identity``; the SQL of ``identity/_engine.py``)."""
    SANDBOXED_QUERIES: bool = False
    """``sandboxed_query`` checks a caller's SQL with the engine's own rules and stops it at the timeout
    (DuckDB, Postgres); elsewhere a portable read-only check runs and the engine's own limits apply."""

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Params = ()) -> QueryResult: ...

    @abstractmethod
    def insert_arrow(self, table: str, data: pa.Table) -> int:
        """Append an Arrow table to ``table`` (schema-qualified); returns rows written."""

    @abstractmethod
    def close(self) -> None: ...

    def portable(self, sql: str) -> str:
        """``sql``, written in DuckDB's dialect by shared code (the diff engine), as this engine runs it: as
        written where ``RUNS_DUCKDB_SQL``, else transpiled with sqlglot (one statement or a script).

            wh.execute(wh.portable("SELECT count(*) FILTER (WHERE fp IS NOT NULL) FROM t"))
        """
        if self.RUNS_DUCKDB_SQL:
            return sql
        return _transpiled(sql, "duckdb", self.dialect)

    def embeddable(self, sql: str) -> str:
        """A user's SQL (a sync's ``sql:`` mapping or source), written in this engine's dialect, in DuckDB's, so
        shared code can embed it in SQL it hands to ``portable`` (the round trip keeps what the user meant)."""
        if self.RUNS_DUCKDB_SQL:
            return sql
        return _transpiled(sql, self.dialect, "duckdb")

    def exchange_tables(self, a: str, b: str) -> None:
        """Swap the contents of tables ``a`` and ``b`` at once (where ``UPDATE_FROM`` is False)."""
        raise NotImplementedError(f"{self.dialect}: exchanging tables")

    # -- callers' queries (`opsloop query`, /api/query) ------------------------------------------
    def sandboxed_query(self, sql: str, limit: int | None = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT,
                        params: Params = ()) -> QueryResult:
        """Run a caller's read-only query: one statement that reads the warehouse's tables and nothing
        else (no host files, network or settings), at most ``limit`` rows (``truncated`` says when more
        matched), stopped after ``timeout`` seconds. Raises ``QueryRefused`` (what was refused and why) or
        ``QueryTimeout``. ``params`` fill ``?`` placeholders. See ``warehouse/_sandbox.py`` for what passes."""
        from ._sandbox import generic_check

        generic_check(sql, self.dialect)
        return truncated(self.query(sql, params), limit)

    def lock_down(self) -> None:
        """For a process that only runs callers' queries (`opsloop query` without a server): turn off
        what the engine can reach beyond its tables, for the rest of this connection's life."""

    # -- used by the model engine ------------------------------------------------------------
    def execute_count(self, sql: str) -> int | None:
        """Run one statement; the rows it wrote when the engine reports it, else None."""
        self.execute(sql)
        return None

    def atomic(self, statements: Sequence[str]) -> None:
        """Run ``statements`` as one unit where the engine has transactions: a reader sees all of them or
        none, and a failure leaves none of them done. Here (an engine without): one after another."""
        for stmt in statements:
            self.execute(stmt)

    def session(self) -> Warehouse:
        """A handle for one worker thread (its own connection where PARALLEL_SESSIONS)."""
        return self

    def release(self, session: Warehouse) -> None:
        """Give back a handle from ``session()``."""
        if session is not self:
            session.close()

    def relations(self) -> dict[tuple[str, str], str]:
        """Every relation as ``(schema, name) -> 'table' | 'view'`` (lower-case names)."""
        result = self.query(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables"
        )
        return {
            (str(s).lower(), str(n).lower()): ("view" if "VIEW" in str(t).upper() else "table")
            for s, n, t in result.rows
        }

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        """``(column, type)`` of one relation in order; empty when it does not exist."""
        result = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) ORDER BY ordinal_position",
            (schema, name),
        )
        return [(str(c), str(t)) for c, t in result.rows]

    def ensure_schema(self, schema: str) -> None:
        from .sql import quote

        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema, self.dialect)}")

    def insert_rows(self, target: str, columns: list[str], rows: Sequence[Sequence[object]]) -> int:
        """Append Python rows to ``target`` (a quoted relation); adapters use their bulk path."""
        if not rows:
            return 0
        import pyarrow as pa

        data = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
        return self.insert_arrow(target, data)


@functools.lru_cache(maxsize=1024)
def _transpiled(sql: str, read: str, write: str) -> str:
    from .sql import transpile

    return transpile(sql, read, write)


def truncated(result: QueryResult, limit: int | None) -> QueryResult:
    """``result`` cut to ``limit`` rows, marked ``truncated`` when it had more."""
    if limit is not None and len(result.rows) > limit:
        return QueryResult(result.columns, result.rows[:limit], truncated=True)
    return result
