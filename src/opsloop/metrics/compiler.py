"""Compile one measure query to the warehouse's SQL with sqlglot.

Authors' expressions (``expr``, ``filter`` in YAML) are parsed as DuckDB SQL and transpiled to the
warehouse's dialect; they are project code, reviewed like models. Values from a request (``--where``,
``--since``) are never put into the SQL text: they become ``?`` placeholders and travel as parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlglot
from sqlglot import exp

from ..errors import OpsloopError
from .catalog import jinja_to_sql
from .spec import Dimension, Measure, SemanticModel

_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|<>|>=|<=|=|>|<)\s*(.*?)\s*$", re.S)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class MetricQueryError(OpsloopError):
    """A metric request is wrong (unknown metric, dimension, grain or filter); the message says what to do."""


@dataclass(frozen=True)
class Filter:
    """``dimension op value`` from ``--where``; ``value`` is always sent as a query parameter."""

    dimension: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Filter:
        match = _WHERE.match(text)
        if not match or match.group(3) == "":
            raise MetricQueryError(
                f"filter {text!r} should look like DIMENSION=VALUE (also !=, >, >=, <, <=), e.g. plan=pro"
            )
        name = match.group(1).split("__")[-1]
        return cls(name, "!=" if match.group(2) == "<>" else match.group(2), match.group(3))


@dataclass
class MeasureQuery:
    sm: SemanticModel
    measure: Measure
    relation: str
    grain: str | None = None
    since: date | None = None
    until: date | None = None
    """Inclusive last day."""
    by: list[str] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    """Extra author conditions (a metric's ``filter:``)."""


def _parse(text: str) -> exp.Expr:
    return sqlglot.parse_one(jinja_to_sql(text), read="duckdb")


def column_expr(sm: SemanticModel, name: str) -> exp.Expr:
    """The SQL of a dimension or entity of ``sm`` (its ``expr``, else a column of the same name)."""
    for dim in sm.dimensions:
        if dim.name == name:
            return _parse(dim.expr) if dim.expr else exp.column(dim.name)
    for ent in sm.entities:
        if ent.name == name:
            return _parse(ent.expr) if ent.expr else exp.column(ent.name)
    raise MetricQueryError(f"semantic model {sm.name!r} has no dimension or entity {name!r}")


def time_dimension(sm: SemanticModel, measure: Measure | None) -> Dimension:
    name = (measure.agg_time_dimension if measure else None) or (sm.defaults.agg_time_dimension if sm.defaults
                                                                 else None)
    if name is None:
        times = [d for d in sm.dimensions if d.type == "time"]
        if not times:
            raise MetricQueryError(f"semantic model {sm.name!r} has no time dimension")
        return times[0]
    for dim in sm.dimensions:
        if dim.name == name:
            return dim
    raise MetricQueryError(f"semantic model {sm.name!r} has no time dimension {name!r}")


def _aggregate(measure: Measure, condition: exp.Expr | None) -> exp.Expr:
    agg = measure.agg
    if measure.expr:
        value: exp.Expr = _parse(measure.expr)
    elif agg == "count":
        value = exp.Literal.number(1)
    else:
        value = exp.column(measure.name)
    if agg == "sum_boolean":
        value = exp.Case(ifs=[exp.If(this=value, true=exp.Literal.number(1))], default=exp.Literal.number(0))
    if condition is not None:
        value = exp.Case(ifs=[exp.If(this=condition, true=value)])
    if agg in ("sum", "sum_boolean"):
        return exp.Sum(this=value)
    if agg == "count":
        return exp.Count(this=value)
    if agg == "count_distinct":
        return exp.Count(this=exp.Distinct(expressions=[value]))
    if agg == "avg":
        return exp.Avg(this=value)
    if agg == "min":
        return exp.Min(this=value)
    if agg == "max":
        return exp.Max(this=value)
    if agg == "median":
        return exp.Median(this=value)
    pct = measure.agg_params.percentile if measure.agg_params else 0.5
    return exp.WithinGroup(
        this=exp.PercentileCont(this=exp.Literal.number(pct)),
        expression=exp.Order(expressions=[exp.Ordered(this=value)]),
    )


def _trunc(grain: str, value: exp.Expr) -> exp.Expr:
    return exp.TimestampTrunc(this=value, unit=exp.var(grain.upper()))


def placeholder(dialect: str, params: list[object], value: object) -> exp.Expr:
    """Append ``value`` to ``params`` and return its placeholder: ``?`` in every dialect.

    Warehouse adapters take ``?`` and bind the values their driver's way (psycopg ``%s``, DuckDB ``?``,
    ClickHouse typed literals), so no request value is ever part of the SQL text opsloop builds.
    """
    params.append(value)
    return exp.Var(this="?")


def compile_measure(q: MeasureQuery, dialect: str = "duckdb") -> tuple[str, list[object]]:
    """SQL and parameters returning columns ``period`` (when a grain is set), each ``by``, and ``value``."""
    params: list[object] = []

    def param(value: object) -> exp.Expr:
        return placeholder(dialect, params, value)

    time_dim = time_dimension(q.sm, q.measure)
    time_col = column_expr(q.sm, time_dim.name)
    measure_cond = _parse(q.measure.filter) if q.measure.filter else None
    projections: list[exp.Expr] = []
    groups: list[exp.Expr] = []
    if q.grain:
        period = _trunc(q.grain, exp.cast(time_col, exp.DataType.build("timestamp")))
        projections.append(exp.alias_(period, "period"))
        groups.append(period.copy())
    for name in q.by:
        col = column_expr(q.sm, name)
        projections.append(exp.alias_(col, name))
        groups.append(col.copy())
    projections.append(exp.alias_(_aggregate(q.measure, measure_cond), "value"))
    where: list[exp.Expr] = [exp.Not(this=exp.Is(this=time_col.copy(), expression=exp.Null()))]
    if q.sm.filter:
        where.append(exp.Paren(this=_parse(q.sm.filter)))
    for cond in q.conditions:
        where.append(exp.Paren(this=_parse(cond)))
    if q.since is not None:
        where.append(exp.GTE(this=time_col.copy(), expression=param(q.since)))
    if q.until is not None:
        where.append(exp.LT(this=time_col.copy(), expression=param(q.until + timedelta(days=1))))
    for f in q.filters:
        col = column_expr(q.sm, f.dimension)
        if f.op in ("=", "!="):
            text_col = exp.cast(col, exp.DataType.build("text"))
            cmp: exp.Expr = exp.EQ(this=text_col, expression=param(f.value)) if f.op == "=" else exp.NEQ(
                this=text_col, expression=param(f.value))
        else:
            value: object = float(f.value) if _NUMBER.match(f.value) else f.value
            node = {">": exp.GT, ">=": exp.GTE, "<": exp.LT, "<=": exp.LTE}[f.op]
            cmp = node(this=col, expression=param(value))
        where.append(cmp)
    select = exp.select(*projections).from_(exp.to_table(q.relation, dialect="duckdb"))
    select = select.where(exp.and_(*where))
    if groups:
        select = select.group_by(*groups).order_by(*[g.copy() for g in groups])
    return select.sql(dialect=dialect), params


def compile_rows(sm: SemanticModel, relation: str, columns: dict[str, str], time_name: str,
                 since: date | None, until: date | None, condition: str | None = None,
                 dialect: str = "duckdb", limit: int = 1000) -> tuple[str, list[object]]:
    """Row-level SELECT of named dimensions (for highlights and cohorts), filtered by time."""
    params: list[object] = []
    time_col = column_expr(sm, time_name)
    projections = [exp.alias_(column_expr(sm, dim), alias) for alias, dim in columns.items()]
    where: list[exp.Expr] = [exp.Not(this=exp.Is(this=time_col.copy(), expression=exp.Null()))]
    if sm.filter:
        where.append(exp.Paren(this=_parse(sm.filter)))
    if condition:
        where.append(exp.Paren(this=_parse(condition)))
    if since is not None:
        where.append(exp.GTE(this=time_col.copy(), expression=placeholder(dialect, params, since)))
    if until is not None:
        where.append(exp.LT(this=time_col.copy(), expression=placeholder(dialect, params, until + timedelta(days=1))))
    select = exp.select(*projections).from_(exp.to_table(relation, dialect="duckdb")).where(exp.and_(*where))
    select = select.order_by(time_col.copy()).limit(limit)
    return select.sql(dialect=dialect), params
