"""Where a pull lands: dlt's destination for the project's warehouse, and the few reads and ALTERs the
runner makes around dlt (the table's columns, widening a column in place, the stored rows a page changes).

DuckDB (the embedded default) and Postgres. Other warehouses are refused with a message that says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeAlias

import pyarrow as pa

from ._drift import warehouse_kind
from ._errors import SourceError

if TYPE_CHECKING:
    from dlt.common.destination.reference import AnyDestination_CO as AnyDestination
    from duckdb import DuckDBPyConnection

    from ..warehouse.base import Row, Warehouse


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


OldRows: TypeAlias = "dict[Row, dict[str, object]]"
"""The stored rows a page changes: by their primary-key values (in key order), each as column -> value."""


class LoadTarget:
    """One pull's side of the warehouse; ``close()`` when the pull ends."""

    TYPES: ClassVar[dict[str, str]] = {}
    """SQL for a ``_drift`` kind where the engine spells it differently (``DOUBLE`` -> ``DOUBLE PRECISION``)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse

    def destination(self) -> AnyDestination:
        """dlt's destination for this warehouse (call after ``_runner._dlt()`` has configured dlt)."""
        raise NotImplementedError

    def describe(self, schema: str, table: str) -> dict[str, str]:
        """Column -> kind (``_drift`` kinds: BIGINT, DOUBLE, VARCHAR, JSON, ...); empty when no table."""
        return {name: warehouse_kind(kind) for name, kind in self.wh.columns(schema, table)}

    def widen(self, schema: str, table: str, columns: dict[str, str]) -> None:
        """Change present columns to the given kinds in place (skips a table or column that is not there)."""
        present = self.describe(schema, table)
        for column, kind in columns.items():
            if column in present:
                self.wh.execute(f"ALTER TABLE {_quote(schema)}.{_quote(table)} ALTER COLUMN {_quote(column)} "
                                f"TYPE {self.TYPES.get(kind, kind)}")

    def old_rows(self, schema: str, table: str, keys: list[str], page: pa.Table) -> OldRows:
        """The stored rows whose primary key is in ``page``, by key tuple."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class DuckDBTarget(LoadTarget):
    """A private cursor: other threads (the event loader, model builds) use the owning connection, and
    DuckDB refuses a second call on a connection that is busy instead of waiting for it."""

    TYPES: ClassVar[dict[str, str]] = {"TIMESTAMP": "TIMESTAMP WITH TIME ZONE"}

    def __init__(self, warehouse: Warehouse) -> None:
        super().__init__(warehouse.session())
        self.con: DuckDBPyConnection = getattr(self.wh, "con")  # noqa: B009 - a DuckDB session's own connection

    def destination(self) -> AnyDestination:
        import dlt

        return dlt.destinations.duckdb(self.con)

    def old_rows(self, schema: str, table: str, keys: list[str], page: pa.Table) -> OldRows:
        cur = self.con.cursor()
        try:
            cur.register("_opsloop_page_keys", page.select(keys))
            join = " AND ".join(f"t.{_quote(k)} = p.{_quote(k)}" for k in keys)
            result = cur.execute(
                f"SELECT t.* FROM {_quote(schema)}.{_quote(table)} t JOIN _opsloop_page_keys p ON {join}"
            )
            columns = [d[0] for d in result.description]
            rows = result.fetchall()
            cur.unregister("_opsloop_page_keys")
        finally:
            cur.close()
        return {tuple(r[columns.index(k)] for k in keys): dict(zip(columns, r, strict=True)) for r in rows}

    def close(self) -> None:
        self.wh.close()


class PostgresTarget(LoadTarget):
    """dlt's Postgres destination (psycopg2) on the warehouse's database; reads go through the warehouse."""

    TYPES: ClassVar[dict[str, str]] = {
        "DOUBLE": "DOUBLE PRECISION", "TIMESTAMP": "TIMESTAMP WITH TIME ZONE", "JSON": "JSONB"}

    def destination(self) -> AnyDestination:
        import dlt
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials()
        credentials.parse_native_representation(str(getattr(self.wh, "url")))  # noqa: B009
        if credentials.password is None:
            credentials.password = ""  # trust auth, or libpq finds it (PGPASSWORD, ~/.pgpass)
        return dlt.destinations.postgres(credentials=credentials)

    def old_rows(self, schema: str, table: str, keys: list[str], page: pa.Table) -> OldRows:
        if not page.num_rows:
            return {}
        # each key list is cast to its column's type (psycopg sends a list of str untyped)
        types = {c: t for c, t in self.wh.columns(schema, table) if t not in ("ARRAY", "USER-DEFINED")}
        placeholders = ", ".join(f"CAST(? AS {types.get(k, 'text')}[])" for k in keys)
        result = self.wh.query(
            f"SELECT t.* FROM {_quote(schema)}.{_quote(table)} t "
            f"WHERE ({', '.join(f't.{_quote(k)}' for k in keys)}) IN (SELECT * FROM unnest({placeholders}))",
            [page.column(k).to_pylist() for k in keys],
        )
        return {tuple(row[k] for k in keys): row for row in result.as_dicts()}


TARGETS: dict[str, type[LoadTarget]] = {"duckdb": DuckDBTarget, "postgres": PostgresTarget}


def load_target(warehouse: Warehouse, source: str) -> LoadTarget:
    cls = TARGETS.get(warehouse.dialect)
    if cls is None:
        raise SourceError(
            f"source {source!r}: sources load into a DuckDB or Postgres warehouse; this project's is "
            f"{warehouse.dialect} (warehouse.type in opsloop.yml), where sources are not supported yet"
        )
    return cls(warehouse)
