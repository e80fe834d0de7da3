"""The identity SQL, written once, for each warehouse engine that runs it.

Identity's statements are written in one portable subset of DuckDB's SQL (DuckDB runs them as written).
For another engine each statement is parsed once by sqlglot, rewritten where the engines differ, and
generated in the engine's dialect (cached per statement text). The differences, and where they are decided:

- ``hash(a, b, ...)`` (a 64-bit hash; keys and record hashes are only compared within one warehouse):
  Postgres ``hashtextextended`` over the arguments as text, a NULL spelt apart from every value;
- ``TRY_CAST(x AS t)`` (a value that does not convert becomes NULL): Postgres has none, so small
  ``identity.try_cast_<type>`` functions are made with the schema (``ensure_functions``);
- ``regexp_full_match``, ``contains``, ``json_object``, ``json_group_object`` and
  ``list_filter([...], lambda x: x IS NOT NULL)``: Postgres' own spellings;
- 64-bit unsigned hash columns (``UBIGINT``) are ``BIGINT`` where there is no unsigned type;
- a derived table needs an alias on Postgres (sqlglot adds one);
- ``CREATE OR REPLACE TEMP TABLE`` (the warehouse's ``CREATE_OR_REPLACE_TABLE`` flag): elsewhere a new
  table under a scratch name, the old one dropped and the new one renamed, so a statement may read the
  table it replaces;
- QUALIFY, SEMI and ANTI JOIN, ``x::T`` and NULL ordering are transpiled by sqlglot itself.

What the winner pick of the golden record needs (``arg_min`` over one wide sort key on DuckDB, ``DISTINCT ON``
elsewhere) is decided in ``stages/golden.py`` by ``Engine.arg_min``. A new temp table is analysed on
Postgres (no statistics otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ..warehouse import Warehouse

if TYPE_CHECKING:
    from sqlglot import exp

TRY_CAST_TYPES = {"INT": "integer", "BIGINT": "bigint", "DOUBLE PRECISION": "double precision",
                  "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMPTZ": "timestamptz", "VARCHAR": "varchar",
                  "TEXT": "text"}
"""Postgres types a golden-record field can have, and the type name in its ``try_cast_`` function."""


@dataclass(frozen=True)
class Engine:
    """What identity needs to know about one warehouse engine; read from the adapter's flags."""

    dialect: str
    replace_table: bool
    """``CREATE OR REPLACE`` works for temp tables (DuckDB)."""
    arg_min: bool
    """``arg_min(struct, key)`` with 128-bit integer keys: the golden record's winner in one aggregate."""
    memory_settings: bool
    """``memory_limit`` and ``preserve_insertion_order`` can be set for a build (DuckDB)."""

    @classmethod
    def of(cls, warehouse: Warehouse) -> Engine:
        duck = warehouse.dialect == "duckdb"
        return cls(warehouse.dialect, replace_table=warehouse.CREATE_OR_REPLACE_TABLE and duck, arg_min=duck,
                   memory_settings=duck)

    def sql(self, text: str) -> list[str]:
        """The statements that run ``text`` (written for DuckDB) on this engine."""
        if self.dialect == "duckdb":
            return [text]
        return list(_translate(text, self.dialect, self.replace_table))


@lru_cache(maxsize=4096)
def _translate(text: str, dialect: str, replace_table: bool) -> tuple[str, ...]:
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(text, dialect="duckdb")
    for node in reversed(list(tree.walk())):  # children before their parents
        new = _rewrite(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    _alias_derived_tables(tree)
    if (isinstance(tree, exp.Create) and tree.args.get("replace") and str(tree.args.get("kind")).upper() == "TABLE"
            and not replace_table):
        return _replace_temp(tree, dialect)
    return (tree.sql(dialect=dialect),)


def _replace_temp(tree: exp.Expr, dialect: str) -> tuple[str, ...]:
    from sqlglot import exp

    table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    name = table.name
    tree.set("replace", False)
    if tree.expression is None:  # a column list: no statement reads the old table
        return (f"DROP TABLE IF EXISTS {name}", tree.sql(dialect=dialect))
    scratch = f"{name}__new"
    table.set("this", exp.to_identifier(scratch))
    # Postgres has no statistics for a new temp table (autovacuum never sees it): without them it plans the
    # next joins of a build for a handful of rows.
    return (f"DROP TABLE IF EXISTS {scratch}", tree.sql(dialect=dialect), f"DROP TABLE IF EXISTS {name}",
            f"ALTER TABLE {scratch} RENAME TO {name}", f"ANALYZE {name}")


def _alias_derived_tables(tree: exp.Expr) -> None:
    from sqlglot import exp

    for n, sub in enumerate(tree.find_all(exp.Subquery)):
        if not sub.alias and isinstance(sub.parent, (exp.From, exp.Join)):
            sub.set("alias", exp.TableAlias(this=exp.to_identifier(f"_d{n}")))


def _text(node: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    return exp.Cast(this=node, to=exp.DataType.build("TEXT"))


def _rewrite(node: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.UBIGINT, exp.DataType.Type.UINT128,
                                                        exp.DataType.Type.INT128):
        return exp.DataType.build("BIGINT")
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        args = list(node.expressions)
        if name == "hash":
            parts = [exp.Coalesce(this=_text(a), expressions=[exp.func("chr", exp.Literal.number(30))])
                     for a in args]
            joined = exp.Anonymous(this="concat_ws", expressions=[exp.func("chr", exp.Literal.number(31)), *parts])
            return exp.func("hashtextextended", joined, exp.Literal.number(0))
        if name == "json_group_object":
            return exp.Anonymous(this="json_object_agg", expressions=args)
        if name == "regexp_full_match":
            return _full_match(args[0], args[1])
    if isinstance(node, exp.Contains):
        return exp.GT(this=exp.Anonymous(this="strpos", expressions=[node.this, node.expression]),
                      expression=exp.Literal.number(0))
    if isinstance(node, exp.RegexpFullMatch):
        return _full_match(node.this, node.expression)
    if isinstance(node, exp.JSONObject):
        args = []
        for kv in node.expressions:
            args += [kv.this, kv.expression]
        return exp.Anonymous(this="json_build_object", expressions=args)
    if isinstance(node, exp.ArrayFilter):
        cond = node.expression
        if not (isinstance(cond, exp.Lambda) and isinstance(cond.this, exp.Not)
                and isinstance(cond.this.this, exp.Is)):
            raise ValueError(f"only list_filter(..., lambda x: x IS NOT NULL) is portable: {node.sql()}")
        return exp.Anonymous(this="array_remove", expressions=[node.this, exp.Null()])
    if isinstance(node, exp.TryCast):
        target = node.to.sql(dialect="postgres").upper()
        if target not in TRY_CAST_TYPES:
            raise ValueError(f"TRY_CAST to {target} has no identity.try_cast_ function")
        fn = "try_cast_" + TRY_CAST_TYPES[target].replace(" ", "_")
        return exp.Dot(this=exp.to_identifier("identity"),
                       expression=exp.Anonymous(this=fn, expressions=[_text(node.this)]))
    return node


def _full_match(value: exp.Expr, pattern: exp.Expr) -> exp.Expr:
    from sqlglot import exp

    if isinstance(pattern, exp.Literal):
        anchored: exp.Expr = exp.Literal.string(f"^(?:{pattern.this})$")
    else:
        anchored = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("^(?:"), expression=pattern),
                             expression=exp.Literal.string(")$"))
    return exp.RegexpLike(this=value, expression=anchored)


def postgres_functions() -> list[str]:
    """``identity.try_cast_<type>(text)``: the value as that type, or NULL when it does not convert."""
    out = []
    for pg in sorted(set(TRY_CAST_TYPES.values())):
        fn = "try_cast_" + pg.replace(" ", "_")
        out.append(f"CREATE OR REPLACE FUNCTION identity.{fn}(v text) RETURNS {pg} LANGUAGE plpgsql IMMUTABLE "
                   f"AS $$ BEGIN RETURN v::{pg}; EXCEPTION WHEN others THEN RETURN NULL; END $$")
    return out
