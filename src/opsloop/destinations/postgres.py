"""``type: postgres`` — upsert rows into a Postgres table by its key column (``INSERT ... ON CONFLICT``).

Each row is written under its own savepoint, so one bad row (a constraint, a type) fails alone with
Postgres's message. Grants needed on the table: SELECT, INSERT, UPDATE (and DELETE for mirror); the key
column needs a unique index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..errors import TerminalDeliveryError, TransientDeliveryError
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult

if TYPE_CHECKING:  # psycopg is imported when a postgres destination first connects
    import psycopg
    from psycopg import sql
    from psycopg.rows import TupleRow


class PostgresConfig(DestinationConfig):
    url_env: str | None = None
    """Environment variable holding the connection URL (preferred: keeps the password out of YAML)."""
    url: str | None = None
    table: str
    """``schema.table`` (or ``table`` in the search path)."""
    key_column: str


class PostgresDestination(Destination):
    type = "postgres"
    Config = PostgresConfig
    IDEMPOTENT = True
    DELETES = True
    MAX_BATCH = 1000
    config: PostgresConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._conn: psycopg.Connection[TupleRow] | None = None

    @property
    def conn(self) -> psycopg.Connection[TupleRow]:
        if self._conn is None:
            import psycopg

            url = self.ctx.require_secret(self.config.url_env, "postgres") if self.config.url_env else self.config.url
            if not url:
                raise TerminalDeliveryError("postgres: set url_env (or url) in the destination", every_request=True)
            try:
                self._conn = psycopg.connect(url, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise TransientDeliveryError(f"postgres: cannot connect: {exc}".strip()) from exc
        return self._conn

    def _table(self) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(*self.config.table.split(".", 1))

    def declared_fields(self) -> set[str] | None:
        schema, _, name = self.config.table.rpartition(".")
        with self.conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                        "AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())", (name, schema))
            columns = {str(r[0]) for r in cur.fetchall()}
        self.conn.rollback()
        if not columns:
            raise TerminalDeliveryError(f"postgres: table {self.config.table} not found", every_request=True)
        return columns

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        import psycopg
        from psycopg import sql

        key = sql.Identifier(self.config.key_column)
        out = []
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                for row in batch:
                    try:
                        with self.conn.transaction():
                            out.append(self._write(cur, row, key))
                    except psycopg.errors.Error as exc:
                        if isinstance(exc, psycopg.OperationalError):
                            raise
                        out.append(RowResult(row.key, False, f"postgres: {str(exc).strip()}"))
        except psycopg.OperationalError as exc:
            self._conn = None
            raise TransientDeliveryError(f"postgres: {exc}".strip()) from exc
        return out

    def _write(self, cur: psycopg.Cursor[TupleRow], row: RowOp, key: sql.Identifier) -> RowResult:
        from psycopg import sql

        table = self._table()
        if row.op == "delete":
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(table, key), (row.key,))
            return RowResult(row.key, True, dest_id=row.key)
        fields = {k: v for k, v in row.fields.items() if k != self.config.key_column}
        cols = [sql.Identifier(self.config.key_column), *(sql.Identifier(c) for c in fields)]
        values = [row.key, *fields.values()]
        if row.op == "update":
            if not fields:
                return RowResult(row.key, True, dest_id=row.key)
            cur.execute(sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
                table, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in fields), key),
                (*fields.values(), row.key))
            if cur.rowcount == 0:
                return RowResult(row.key, False, f"postgres: no row with {self.config.key_column} = {row.key!r}")
            return RowResult(row.key, True, dest_id=row.key)
        update = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in fields))
            if fields else sql.SQL("DO NOTHING"))
        cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {} RETURNING (xmax = 0)").format(
            table, sql.SQL(", ").join(cols), sql.SQL(", ").join(sql.Placeholder() * len(cols)), key, update),
            values)
        found = cur.fetchone()
        return RowResult(row.key, True, dest_id=row.key, created=bool(found and found[0]))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
