"""A DuckDB connection of the identity subsystem's own, with small helpers.

Identity work runs on its own cursor (``con.cursor()``: a second connection to the same database) so that
its temp tables and its transaction are private and the server's other warehouse work is not blocked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._halt import Halt
from ..errors import OpsloopError, WarehouseError
from ..warehouse import Warehouse


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


class Conn:
    """A private DuckDB connection for one identity job.

    With a ``halt``, every statement is a safe point: once the server begins to stop, the next statement
    raises ``Interrupted`` and one still running is interrupted (the job's transaction then rolls back).
    """

    def __init__(self, warehouse: Warehouse, halt: Halt | None = None) -> None:
        con = getattr(warehouse, "con", None)
        if con is None or warehouse.dialect != "duckdb":
            raise IdentityError("identity resolution runs in DuckDB; set warehouse: type: duckdb in opsloop.yml")
        self.con: Any = con.cursor()
        self.halt = halt
        self.x("SET TimeZone = 'UTC'")

    def _run(self, sql: str, params: Sequence[Any], check: bool) -> Any:
        import duckdb

        if self.halt is None:
            try:
                return self.con.execute(sql, list(params))
            except duckdb.Error as exc:
                raise WarehouseError(f"{exc}\n  while running: {sql[:300]}") from exc
        if check:
            self.halt.check("the identity build")
        with self.halt.watching(self.con):
            try:
                return self.con.execute(sql, list(params))
            except duckdb.Error as exc:
                if check:
                    self.halt.check("the identity build")  # an interrupted statement: say why
                raise WarehouseError(f"{exc}\n  while running: {sql[:300]}") from exc

    def x(self, sql: str, params: Sequence[Any] = (), check: bool = True) -> None:
        """Run one statement; ``check=False`` for clean-up that must run during a stop (ROLLBACK, RESET)."""
        self._run(sql, params, check)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._run(sql, params, True).fetchall()]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._run(sql, params, True)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def insert_arrow(self, table: str, data: Any) -> None:
        self.con.register("_identity_arrow_in", data)
        try:
            self.x(f"INSERT INTO {table} BY NAME SELECT * FROM _identity_arrow_in")
        finally:
            self.con.unregister("_identity_arrow_in")

    def columns(self, schema: str, table: str) -> list[str]:
        return [r[0] for r in self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", (schema, table))]

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
