"""dbt's ``adapter`` object in Jinja, for DuckDB (and the engines opsloop builds on) as dbt-duckdb offers it:
``dispatch``, ``quote``, ``type()``, and, only while the node is compiled to run (as in dbt), the calls that
ask or change the warehouse: ``get_columns_in_relation`` (sources too, external ones described),
``get_relation``, ``drop_relation``, ``get_missing_columns``, ``get_columns_in_table``,
``expand_target_column_types``, ``already_exists``, ``check_schema_exists``, ``truncate_relation``,
``rename_relation``, ``create_schema``, ``drop_schema``. Any other ``adapter.x()`` is an error with file:line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from ._jinja_builtins import _ask, _lit, _schema_and_name
from ._jinja_db import Column
from ._render import Relation, RenderError

if TYPE_CHECKING:
    from ._render import MacroFn, Renderer

ADAPTER_METHODS = (
    "dispatch", "quote", "type", "get_columns_in_relation", "get_relation", "drop_relation", "get_missing_columns",
    "get_columns_in_table", "expand_target_column_types", "already_exists", "check_schema_exists",
    "truncate_relation", "rename_relation", "create_schema", "drop_schema",
)
"""The ``adapter.x()`` calls a model may make (``Renderer.check`` refuses any other, with its line)."""


class Adapter:
    """dbt's ``adapter`` in Jinja: ``dispatch`` (with the project's ``dispatch:`` search order), ``quote``, and
    the calls that ask the warehouse (only while executing, as in dbt)."""

    def __init__(self, renderer: Renderer) -> None:
        self._r = renderer

    def dispatch(self, macro_name: str, macro_namespace: str | None = None, packages: object = None) -> MacroFn:
        r = self._r
        macros = r.macros()
        for package in r.search_order(macro_namespace):
            found = macros.get(package)
            for prefix in (r.adapter_type, "default"):
                macro = found.get(f"{prefix}__{macro_name}") if found is not None else None
                if macro is not None:
                    return macro
        where = f"{macro_namespace}." if macro_namespace else ""
        raise RenderError(f"adapter.dispatch found no {r.adapter_type}__{macro_name} or default__{macro_name} "
                          f"for {where}{macro_name} (searched {', '.join(r.search_order(macro_namespace))})",
                          hint="install the package that defines it, or fix dispatch: in dbt_project.yml")

    @staticmethod
    def quote(identifier: str) -> str:
        return '"' + str(identifier).replace('"', '""') + '"'

    def type(self) -> str:
        return self._r.adapter_type

    def get_columns_in_relation(self, relation: object) -> list[Column]:
        """The relation's columns (name, data_type), from the warehouse; [] while parsing."""
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute:
            return []
        if isinstance(relation, Relation) and self._r.adapter_type == "duckdb" and \
                relation.text != self._r.relation(relation.schema, relation.identifier).text:
            # an external source (read_csv(...), 'x.parquet') or a batch's window: described, as dbt-duckdb does
            found = _ask(ctx, "adapter.get_columns_in_relation",
                         f"select column_name, column_type from (describe select * from {relation.text})")
            return [Column(str(c), str(t)) for c, t in found.rows]
        schema, name = _schema_and_name(relation)
        found = _ask(ctx, "adapter.get_columns_in_relation",
                     "select column_name, data_type from information_schema.columns where table_schema = "
                     f"{_lit(schema)} and table_name = {_lit(name)} order by ordinal_position")
        return [Column(str(c), str(t)) for c, t in found.rows]

    def get_relation(self, database: object = None, schema: object = None,
                     identifier: object = None) -> Relation | None:
        """The relation when it exists in the warehouse, else None (None while parsing)."""
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute:
            return None
        found = _ask(ctx, "adapter.get_relation",
                     "select table_schema, table_name, table_type from information_schema.tables where "
                     f"lower(table_schema) = lower({_lit(schema)}) and lower(table_name) = lower({_lit(identifier)})")
        if not found.rows:
            return None
        s, n, kind = found.rows[0]
        return self._r.relation(str(s), str(n), database, "view" if "VIEW" in str(kind).upper() else "table")

    def load_relation(self, relation: object) -> Relation | None:
        """dbt's ``load_relation(relation)``: the relation when it exists in the warehouse, else None."""
        schema, name = _schema_and_name(relation)
        return self.get_relation(getattr(relation, "database", None), schema, name)

    def drop_relation(self, relation: object) -> str:
        """Drop the table or view, if it exists (nothing while parsing)."""
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute:
            return ""
        schema, name = _schema_and_name(relation)
        found = _ask(ctx, "adapter.drop_relation",
                     "select table_type from information_schema.tables where "
                     f"lower(table_schema) = lower({_lit(schema)}) and lower(table_name) = lower({_lit(name)})")
        if found.rows:
            from ..warehouse.sql import relation as rel_text

            kind = "view" if "VIEW" in str(found.rows[0][0]).upper() else "table"
            _ask(ctx, "adapter.drop_relation", f"drop {kind} if exists {rel_text(schema, name, self._r.adapter_type)}")
        return ""

    def get_missing_columns(self, from_relation: object, to_relation: object) -> list[Column]:
        """The columns of ``from_relation`` that ``to_relation`` lacks (by name), in from's order."""
        have = {c.name for c in self.get_columns_in_relation(to_relation)}
        return [c for c in self.get_columns_in_relation(from_relation) if c.name not in have]

    def get_columns_in_table(self, schema: object, identifier: object) -> list[Column]:
        return self.get_columns_in_relation(self._r.relation(str(schema), str(identifier)))

    def expand_target_column_types(self, from_relation: object, to_relation: object) -> str:
        """Widen ``to_relation``'s string columns to fit ``from_relation``'s. Nothing to do where strings have
        no length (DuckDB's VARCHAR, as dbt-duckdb finds); elsewhere an error, not a silent no-op."""
        if self._r.adapter_type != "duckdb":
            raise RenderError(f"adapter.expand_target_column_types() is not supported on {self._r.adapter_type} yet",
                              hint="see docs/models.md for what opsloop supports")
        return ""

    def already_exists(self, schema: object, name: object) -> bool:
        """dbt's (deprecated) ``adapter.already_exists(schema, name)``: whether the relation exists."""
        return self.get_relation(None, schema, name) is not None

    def check_schema_exists(self, database: object, schema: object) -> bool:
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute:
            return False
        found = _ask(ctx, "adapter.check_schema_exists", "select count(*) from information_schema.schemata where "
                     f"lower(schema_name) = lower({_lit(schema)})")
        return bool(found.rows and found.rows[0][0])

    def truncate_relation(self, relation: object) -> str:
        """Delete every row of the table (nothing while parsing)."""
        return self._run("adapter.truncate_relation", f"truncate table {self._text(relation)}")

    def rename_relation(self, from_relation: object, to_relation: object) -> str:
        """``alter table|view from rename to <to's name>`` (nothing while parsing)."""
        ctx = self._r._cur.ctx
        if ctx is None or not ctx.execute:
            return ""
        schema, name = _schema_and_name(from_relation)
        found = _ask(ctx, "adapter.rename_relation", "select table_type from information_schema.tables where "
                     f"lower(table_schema) = lower({_lit(schema)}) and lower(table_name) = lower({_lit(name)})")
        if not found.rows:
            raise RenderError(f"adapter.rename_relation: {schema}.{name} does not exist")
        kind = "view" if "VIEW" in str(found.rows[0][0]).upper() else "table"
        _, new_name = _schema_and_name(to_relation)
        return self._run("adapter.rename_relation",
                         f"alter {kind} {self._text(from_relation)} rename to {self.quote(new_name)}")

    def create_schema(self, relation: object) -> str:
        schema = relation.schema if isinstance(relation, Relation) else str(relation)
        return self._run("adapter.create_schema", f"create schema if not exists {self.quote(schema)}")

    def drop_schema(self, relation: object) -> str:
        schema = relation.schema if isinstance(relation, Relation) else str(relation)
        return self._run("adapter.drop_schema", f"drop schema if exists {self.quote(schema)} cascade")

    def _text(self, relation: object) -> str:
        schema, name = _schema_and_name(relation)
        return self._r.relation(schema, name).text

    def _run(self, what: str, sql: str) -> str:
        ctx = self._r._cur.ctx
        if ctx is not None and ctx.execute:
            _ask(ctx, what, sql)
        return ""

    def __getattr__(self, item: str) -> NoReturn:
        if item.startswith("_"):
            raise AttributeError(item)
        raise RenderError(f"adapter.{item}() is not supported yet (it asks the warehouse at compile time)",
                          hint="see docs/models.md for what opsloop supports")


