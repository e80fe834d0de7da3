"""SQL text built with sqlglot: identifiers quoted per dialect, statements shaped by capability flags.

Model bodies are the project's own SQL (trusted text, as in dbt); names and values are always built
as sqlglot expressions, never by formatting user values into strings.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Warehouse


_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")
_COMMON_RESERVED = {
    "all", "and", "as", "by", "case", "cast", "create", "cross", "default", "desc", "distinct", "drop", "else",
    "end", "except", "false", "from", "full", "group", "having", "in", "inner", "intersect", "into", "is",
    "join", "left", "like", "limit", "natural", "not", "null", "on", "or", "order", "outer", "right", "select",
    "table", "then", "to", "true", "union", "using", "when", "where", "with", "window", "user", "current_date",
}


def quote(name: str, dialect: str) -> str:
    """One identifier, quoted only when the dialect needs it."""
    if _PLAIN.match(name) and name not in _COMMON_RESERVED:
        return name  # the common case, without building a sqlglot expression
    from sqlglot import exp

    return exp.to_identifier(name).sql(dialect=dialect, identify=False)


def relation(schema: str | None, name: str, dialect: str) -> str:
    """``schema.name`` with each part quoted for ``dialect``."""
    if _PLAIN.match(name) and name not in _COMMON_RESERVED and (
            schema is None or (_PLAIN.match(schema) and schema not in _COMMON_RESERVED)):
        return f"{schema}.{name}" if schema else name
    from sqlglot import exp

    table = exp.Table(this=exp.to_identifier(name), db=exp.to_identifier(schema) if schema else None)
    return table.sql(dialect=dialect)


def literal(value: object, dialect: str) -> str:
    from sqlglot import exp

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return exp.Boolean(this=value).sql(dialect=dialect)
    if isinstance(value, int | float):
        return exp.Literal.number(value).sql(dialect=dialect)
    return exp.Literal.string(str(value)).sql(dialect=dialect)


def transpile(sql: str, read: str, write: str) -> str:
    """The project's SQL (written for ``read``) in the engine's dialect; unchanged when they match."""
    if read == write:
        return sql
    import sqlglot

    return ";\n".join(sqlglot.transpile(sql, read=read, write=write))


class Statements:
    """DDL/DML for one warehouse, shaped by its capability flags."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse
        self.d = warehouse.dialect

    def rel(self, schema: str, name: str) -> str:
        return relation(schema, name, self.d)

    def q(self, name: str) -> str:
        return quote(name, self.d)

    def create_view(self, target: str, body: str) -> list[str]:
        if self.d == "clickhouse":
            return [f"CREATE OR REPLACE VIEW {target} AS {body}"]
        return [f"CREATE OR REPLACE VIEW {target} AS (\n{body}\n)"]

    def create_table(self, target: str, body: str, replace: bool) -> list[str]:
        suffix = f" {self.wh.TABLE_SUFFIX}" if self.wh.TABLE_SUFFIX else ""
        if self.wh.CREATE_OR_REPLACE_TABLE:
            return [f"CREATE OR REPLACE TABLE {target}{suffix} AS (\n{body}\n)"]
        out = [self.drop(target, "table")] if replace else []
        out.append(f"CREATE TABLE {target}{suffix} AS (\n{body}\n)" if self.d != "clickhouse"
                   else f"CREATE TABLE {target}{suffix} AS {body}")
        return out

    def drop(self, target: str, kind: str) -> str:
        cascade = " CASCADE" if self.wh.DROP_CASCADE else ""
        return f"DROP {'VIEW' if kind == 'view' else 'TABLE'} IF EXISTS {target}{cascade}"

    def insert_select(self, target: str, source: str, columns: list[str]) -> str:
        cols = ", ".join(self.q(c) for c in columns)
        return f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source}"

    def delete_matching(self, target: str, source: str, keys: list[str]) -> str:
        if len(keys) == 1:
            k = self.q(keys[0])
            return f"DELETE FROM {target} WHERE {k} IN (SELECT {k} FROM {source})"
        cond = " AND ".join(f"{target}.{self.q(k)} = s.{self.q(k)}" for k in keys)
        return f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {source} AS s WHERE {cond})"

    def merge(self, target: str, source: str, keys: list[str], columns: list[str]) -> str:
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in keys)
        sets = ", ".join(f"{self.q(c)} = s.{self.q(c)}" for c in columns if c not in keys)
        cols = ", ".join(self.q(c) for c in columns)
        vals = ", ".join(f"s.{self.q(c)}" for c in columns)
        matched = f" WHEN MATCHED THEN UPDATE SET {sets}" if sets else ""
        return (f"MERGE INTO {target} AS t USING {source} AS s ON {on}{matched} "
                f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})")

    def add_column(self, target: str, column: str, type_: str) -> str:
        return f"ALTER TABLE {target} ADD COLUMN {self.q(column)} {type_}"

    def drop_column(self, target: str, column: str) -> str:
        return f"ALTER TABLE {target} DROP COLUMN {self.q(column)}"

    def count(self, target: str) -> str:
        return f"SELECT count(*) FROM {target}"


def split_placeholders(sql: str) -> list[str]:
    """The text between ``?`` placeholders, ignoring ``?`` inside quoted strings, quoted names and comments.

    ``"SELECT '?' AS q, ? AS v"`` gives ``["SELECT '?' AS q, ", " AS v"]``: one placeholder, not two.
    """
    return _split_outside_quotes(sql, "?")


def split_statements(script: str) -> list[str]:
    """The statements of a script, split at ``;`` outside quoted strings, quoted names and comments; empty
    statements left out (for engines that run one statement per call)."""
    return [stmt.strip() for stmt in _split_outside_quotes(script, ";") if stmt.strip()]


def _split_outside_quotes(sql: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while end < n:  # a doubled quote inside is an escaped quote
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif c == sep:
            parts.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    parts.append(sql[start:])
    return parts


def pyformat(sql: str) -> str:
    """``?`` placeholders to ``%s`` for drivers with pyformat parameters (psycopg, Snowflake), with every
    literal ``%`` doubled as those drivers require when parameters are passed."""
    return "%s".join(part.replace("%", "%%") for part in split_placeholders(sql))
