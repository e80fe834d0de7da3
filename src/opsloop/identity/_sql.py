"""A warehouse connection of the identity subsystem's own, with small helpers.

Identity work runs on its own connection (on DuckDB ``con.cursor()``: a second connection to the same
database) so that its temp tables and its transaction are private and the server's other warehouse work is
not blocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._halt import Halt
from ..errors import OpsloopError, WarehouseError
from ..warehouse import Params, Row, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa


class IdentityError(OpsloopError):
    """Identity resolution or a segment could not run; the message names the file or relation and the fix."""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expression(text: str) -> str:
    """A user's column or SQL expression, re-rendered by sqlglot for DuckDB (never pasted as a string)."""
    import sqlglot

    return str(sqlglot.parse_one(text, dialect="duckdb").sql(dialect="duckdb"))


def relation(text: str) -> str:
    from sqlglot import exp

    return str(exp.to_table(text, dialect="duckdb").sql(dialect="duckdb"))


class _Cancel:
    """What ``Halt`` interrupts for a Postgres connection: ``cancel()`` stops its running statement."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def interrupt(self) -> None:
        self.con.cancel_safe()


class Conn:
    """A private connection for one identity job, on the project's warehouse.

    On DuckDB a cursor of the warehouse's connection, on Postgres a connection of its own (its temp tables and
    its transaction are private either way). Statements are written for DuckDB; ``Engine`` translates them
    for the others (``_engine.py``). With a ``halt``, every statement is a safe point: once the server begins
    to stop, the next statement raises ``Interrupted`` and one still running is interrupted (the job's
    transaction then rolls back).
    """

    def __init__(self, warehouse: Warehouse, halt: Halt | None = None) -> None:
        from ._engine import Engine

        if not warehouse.RUNS_IDENTITY:
            raise IdentityError(f"identity resolution and segments run on DuckDB and Postgres, not yet on "
                                f"{warehouse.dialect}; set warehouse: type: duckdb or postgres in opsloop.yml")
        self.engine = Engine.of(warehouse)
        self.dialect = warehouse.dialect
        self.halt = halt
        self._watch: Any
        if self.dialect == "duckdb":
            self.con: Any = warehouse.con.cursor()  # type: ignore[attr-defined]
            self._errors: tuple[type[BaseException], ...] = (__import__("duckdb").Error,)
            self._watch = self.con
            self.x("SET TimeZone = 'UTC'")
        else:
            import psycopg

            url = str(warehouse.url)  # type: ignore[attr-defined]
            try:
                self.con = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise WarehouseError(f"cannot connect to the Postgres warehouse: {exc}") from exc
            self._errors = (psycopg.Error,)
            self._watch = _Cancel(self.con)
            self.x("SET TimeZone = 'UTC'")
            self.con.execute(f"SET search_path = {quote(warehouse.default_schema)}, public")

    def native(self, sql: str) -> None:
        """Run one statement written in this engine's own dialect (not translated)."""
        try:
            self.con.execute(sql)
        except self._errors as exc:
            raise WarehouseError(f"{exc}\n  while running: {sql[:300]}") from exc

    def _execute(self, sql: str, params: Params) -> Any:
        if self.dialect == "duckdb":
            return self.con.execute(sql, list(params))
        cur = None
        for text in self.engine.sql(sql):
            cur = self.con.cursor()
            if params:
                cur.execute(text.replace("%", "%%").replace("%%s", "%s"), list(params))
            else:
                cur.execute(text)
        return cur

    def _run(self, sql: str, params: Params, check: bool) -> Any:
        if self.halt is None:
            try:
                return self._execute(sql, params)
            except self._errors as exc:
                raise WarehouseError(f"{exc}\n  while running: {sql[:300]}") from exc
        if check:
            self.halt.check("the identity build")
        with self.halt.watching(self._watch):
            try:
                return self._execute(sql, params)
            except self._errors as exc:
                if check:
                    self.halt.check("the identity build")  # an interrupted statement: say why
                raise WarehouseError(f"{exc}\n  while running: {sql[:300]}") from exc

    def x(self, sql: str, params: Params = (), check: bool = True) -> None:
        """Run one statement; ``check=False`` for clean-up that must run during a stop (ROLLBACK, RESET)."""
        self._run(sql, params, check)

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return [tuple(r) for r in self._run(sql, params, True).fetchall()]

    def dicts(self, sql: str, params: Params = ()) -> list[dict[str, object]]:
        cur = self._run(sql, params, True)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def one(self, sql: str, params: Params = ()) -> object:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        if self.dialect != "duckdb":
            cols = ", ".join(quote(c) for c in data.column_names)
            try:
                with self.con.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in data.to_pylist():
                        copy.write_row(list(row.values()))
            except self._errors as exc:
                raise WarehouseError(f"{exc}\n  while copying into {table}") from exc
            return
        self.con.register("_identity_arrow_in", data)
        try:
            self.x(f"INSERT INTO {table} BY NAME SELECT * FROM _identity_arrow_in")
        finally:
            self.con.unregister("_identity_arrow_in")

    def columns(self, schema: str, table: str) -> list[str]:
        return [str(r[0]) for r in self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", (schema, table))]

    def temp_tables(self) -> list[str]:
        """This connection's temp tables whose names start with ``_`` (a build's scratch tables)."""
        if self.dialect == "duckdb":
            found = self.rows("SELECT table_name FROM duckdb_tables() WHERE temporary")
        else:
            found = self.rows("SELECT tablename FROM pg_tables WHERE schemaname = pg_my_temp_schema()::regnamespace"
                              "::text")
        return [str(name) for (name,) in found if str(name).startswith("_")]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.x("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.x("ROLLBACK", check=False)
            raise
        self.x("COMMIT")

    def close(self) -> None:
        self.con.close()
