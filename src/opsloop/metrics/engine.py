"""Answer a metric query: the one library call behind ``GET /api/metrics/NAME`` and ``opsloop metric``.

Simple metrics are one compiled SQL query each. Cumulative, ratio and derived metrics are composed from
those series in Python over a complete time spine (missing periods count as zero), so the same
definitions give the same answers on every warehouse dialect.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlglot
from sqlglot import exp

from ..narrow import opt_float, opt_number
from ..warehouse import Row, Warehouse
from .catalog import Catalog
from .compiler import Filter, MeasureQuery, MetricQueryError, compile_measure
from .periods import as_date, parse_since, parse_window, periods_between, shift, step, truncate
from .spec import GRAINS, Metric, SemanticModel

Key = tuple[Any, ...]
Series = dict[Key, float | None]
_ADDITIVE = {"sum", "count", "count_distinct", "sum_boolean"}


@dataclass
class MetricQuery:
    metric: str
    grain: str | None = None
    since: date | None = None
    until: date | None = None
    by: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    percentile: bool = False

    @classmethod
    def from_params(cls, metric: str, grain: str | None = None, since: str | None = None, until: str | None = None,
                    by: Sequence[str] = (), where: Sequence[str] = (), percentile: bool = False) -> MetricQuery:
        """Build from request/CLI text; raises ``MetricQueryError`` naming the bad part."""
        if grain in ("", "none", "total"):
            grain = None
        if grain is not None and grain not in GRAINS:
            raise MetricQueryError(f"grain {grain!r} is not one of {', '.join(GRAINS)}")
        try:
            since_d = parse_since(since)
            until_d = parse_since(until)
        except ValueError as exc:
            raise MetricQueryError(str(exc)) from None
        by_list = [b.split("__")[-1] for item in by for b in item.split(",") if b.strip()]
        return cls(metric, grain, since_d, until_d, by_list, [w for w in where if w.strip()], percentile)


@dataclass
class MetricResult:
    metric: str
    label: str
    format: str
    grain: str | None
    columns: list[str]
    rows: list[list[object]]
    sql: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "label": self.label, "format": self.format, "grain": self.grain,
                "columns": self.columns, "rows": self.rows}


def check_expression(text: str, names: set[str]) -> None:
    """A derived metric's ``expr`` may use + - * / ( ), numbers, COALESCE and its inputs' names."""
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"{text!r} is not a valid expression: {str(exc).splitlines()[0]}") from None
    for node in tree.walk():
        if isinstance(node, exp.Column):
            if node.name not in names:
                raise ValueError(f"{node.name!r} is not one of the metrics listed ({', '.join(sorted(names))})")
        elif not isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Paren | exp.Neg | exp.Literal
                            | exp.Identifier | exp.Coalesce | exp.Null):
            raise ValueError(f"{node.sql()!r} is not allowed; use + - * / ( ), numbers and metric names")


def _evaluate(node: exp.Expr, values: dict[str, float | None]) -> float | None:
    if isinstance(node, exp.Paren):
        return _evaluate(node.this, values)
    if isinstance(node, exp.Literal):
        return float(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Column):
        return values.get(node.name)
    if isinstance(node, exp.Neg):
        inner = _evaluate(node.this, values)
        return None if inner is None else -inner
    if isinstance(node, exp.Coalesce):
        for part in [node.this, *node.expressions]:
            got = _evaluate(part, values)
            if got is not None:
                return got
        return None
    if not isinstance(node, exp.Binary):
        raise ValueError(f"unsupported expression {node.sql()}")
    left, right = _evaluate(node.left, values), _evaluate(node.right, values)
    if left is None or right is None:
        return None
    if isinstance(node, exp.Add):
        return left + right
    if isinstance(node, exp.Sub):
        return left - right
    if isinstance(node, exp.Mul):
        return left * right
    if isinstance(node, exp.Div):
        return None if right == 0 else left / right
    raise ValueError(f"unsupported expression {node.sql()}")


def _num(value: object) -> float | None:
    """A cell of a measure's query as its float; None when the period has none (NULL, or NaN on some engines)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return opt_float(value, "a metric value")


class MetricEngine:
    """Runs metric queries against one warehouse. ``resolve`` maps a semantic model to its relation."""

    def __init__(self, catalog: Catalog, warehouse: Warehouse, resolve: Callable[[SemanticModel], str],
                 today: Callable[[], date] | None = None) -> None:
        self.catalog = catalog
        self.warehouse = warehouse
        self.resolve = resolve
        self.today = today or (lambda: datetime.now(UTC).date())
        self.cache = ResultCache()
        self._compiled: dict[Key, tuple[str, list[object]]] = {}
        """Measure results of tracked relations, kept until a build or load of what they read."""

    # -- public ----------------------------------------------------------------------------------
    def query(self, q: MetricQuery) -> MetricResult:
        metric = self._metric(q.metric)
        allowed = self.allowed_dimensions(q.metric)
        for name in q.by:
            if name not in allowed:
                raise MetricQueryError(f"metric {q.metric!r} has no dimension {name!r}; "
                                       f"dimensions: {', '.join(sorted(allowed)) or 'none'}")
        filters = [Filter.parse(w) for w in q.where]
        for f in filters:
            if f.dimension not in allowed:
                raise MetricQueryError(f"cannot filter metric {q.metric!r} on {f.dimension!r}; "
                                       f"dimensions: {', '.join(sorted(allowed)) or 'none'}")
        sql: list[str] = []
        series = self._series(metric, q, filters, sql, set())
        rows: list[list[object]] = []
        for key in sorted(series, key=_sort_key):
            value = series[key]
            if q.grain and q.since and as_date(key[0]) is not None and as_date(key[0]) < truncate(q.since, q.grain):  # type: ignore[operator]
                continue
            period = [key[0].isoformat()] if q.grain else []
            dims = list(key[1:] if q.grain else key)
            rows.append([*period, *dims, _round(value)])
        columns = [*(["period"] if q.grain else []), *q.by, "value"]
        if q.percentile:
            _add_percentile(rows)
            columns.append("percentile")
        return MetricResult(q.metric, metric.label or metric.name.replace("_", " ").capitalize(), metric.format,
                            q.grain, columns, rows, sql)

    def rows(self, sql: str, params: list[object], deps: set[str], cacheable: bool = True) -> list[Row]:
        """Run ``sql``; results of relations whose freshness is known (built models, raw.events) are kept
        until ``cache.invalidate`` names one of ``deps``."""
        key = (self.today(), sql, tuple(params))
        found = self.cache.get(key) if cacheable else None
        if found is None:
            found = self.warehouse.query(sql, params).rows
            if cacheable:
                self.cache.put(key, found, deps)
        return found

    def allowed_dimensions(self, metric_name: str) -> set[str]:
        dims = set(self.catalog.dimensions_of(metric_name))
        models = self.catalog.semantic_models_of(metric_name)
        if models:
            ents = {e.name for e in models[0].entities}
            for sm in models[1:]:
                ents &= {e.name for e in sm.entities}
            dims |= ents
        return dims

    # -- composition -----------------------------------------------------------------------------
    def _metric(self, name: str) -> Metric:
        metric = self.catalog.metrics.get(name)
        if metric is None:
            known = ", ".join(sorted(self.catalog.metrics)) or "none (add metrics/*.yml)"
            raise MetricQueryError(f"no metric {name!r}; metrics: {known}")
        return metric

    def _series(self, metric: Metric, q: MetricQuery, filters: list[Filter], sql: list[str],
                stack: set[str]) -> Series:
        if metric.name in stack:
            raise MetricQueryError(f"metric {metric.name!r} refers to itself through {', '.join(sorted(stack))}")
        stack = stack | {metric.name}
        conditions = [metric.filter] if metric.filter else []
        if metric.type == "simple":
            return self._measure(metric.measure_name, q, filters, conditions, sql, q.since)
        if metric.type == "cumulative":
            return self._cumulative(metric, q, filters, conditions, sql)
        if metric.type == "ratio":
            num_in, den_in = self.catalog.input_metrics(metric)
            num = self._input(num_in.name, num_in.filter, q, filters, sql, stack)
            den = self._input(den_in.name, den_in.filter, q, filters, sql, stack)
            out: Series = {}
            for key in set(num) | set(den):
                n, d = num.get(key), den.get(key)
                out[key] = None if n is None or not d else n / d
            return out
        # derived
        tree = sqlglot.parse_one(str(metric.type_params.expr), read="duckdb")
        inputs: dict[str, Series] = {}
        for inp in self.catalog.input_metrics(metric):
            shifted = q
            window = parse_window(inp.offset_window) if inp.offset_window else None
            if window:
                shifted = MetricQuery(**{**q.__dict__, "since": shift(q.since, window) if q.since else None,
                                         "until": shift(q.until or self.today(), window)})
            got = self._input(inp.name, inp.filter, shifted, filters, sql, stack)
            if window and q.grain:
                got = {(truncate(shift(k[0], window, +1), q.grain), *k[1:]): v for k, v in got.items()}
            inputs[inp.alias or inp.name] = got
        keys: set[Key] = set().union(*[set(s) for s in inputs.values()]) if inputs else set()
        return {k: _evaluate(tree, {name: s.get(k, 0.0) for name, s in inputs.items()}) for k in keys}

    def _input(self, name: str, extra_filter: str | None, q: MetricQuery, filters: list[Filter], sql: list[str],
               stack: set[str]) -> Series:
        metric = self._metric(name)
        if extra_filter:
            metric = metric.model_copy(update={"filter": " AND ".join(
                f"({c})" for c in [metric.filter, extra_filter] if c)})
        return self._series(metric, q, filters, sql, stack)

    def _measure(self, measure_name: str, q: MetricQuery, filters: list[Filter], conditions: list[str],
                 sql: list[str], since: date | None, fill: bool = True) -> Series:
        found = self.catalog.measures.get(measure_name)
        if found is None:
            raise MetricQueryError(f"no measure {measure_name!r}")
        sm, measure = found
        mq = MeasureQuery(sm=sm, measure=measure, relation=self.resolve(sm), grain=q.grain, since=since,
                          until=q.until, by=q.by, filters=filters, conditions=conditions)
        sql_key = (sm.name, measure.name, mq.relation, q.grain, since, q.until, tuple(q.by), tuple(filters),
                   tuple(conditions), self.warehouse.dialect)
        compiled = self._compiled.get(sql_key)
        if compiled is None:
            compiled = compile_measure(mq, self.warehouse.dialect)
            if len(self._compiled) > 2048:
                self._compiled.clear()
            self._compiled[sql_key] = compiled
        text, params = compiled[0], list(compiled[1])
        sql.append(text)
        deps = {mq.relation, *([self.catalog.model_name(sm)] if sm.model else [])}
        rows = self.rows(text, params, {d for d in deps if d}, cacheable=bool(sm.model) or mq.relation == "raw.events")
        series: Series = {}
        for row in rows:
            if q.grain:
                key: Key = (as_date(row[0]), *row[1:-1])
            else:
                key = tuple(row[:-1])
            value = _num(row[-1])
            series[key] = 0.0 if value is None and measure.agg in _ADDITIVE else value
        if q.grain and fill:
            start = since or min((k[0] for k in series), default=None)
            end = q.until or max([self.today(), *(k[0] for k in series)])
            if start is not None:
                dims = {k[1:] for k in series} or ({()} if not q.by else set())
                zero = 0.0 if measure.agg in _ADDITIVE else None
                for period in periods_between(start, end, q.grain):
                    for d in dims:
                        series.setdefault((period, *d), zero)
        elif not q.grain and not q.by and not series:
            series[()] = 0.0 if measure.agg in _ADDITIVE else None
        return series

    def _cumulative(self, metric: Metric, q: MetricQuery, filters: list[Filter], conditions: list[str],
                    sql: list[str]) -> Series:
        p = metric.type_params
        window = parse_window(p.window) if p.window else None
        gtd = p.grain_to_date
        end = q.until or self.today()
        if not q.grain:
            if window:
                return self._measure(metric.measure_name, MetricQuery(**{**q.__dict__, "until": end}), filters,
                                     conditions, sql, _next_day(shift(end, window)))
            if gtd:
                return self._measure(metric.measure_name, MetricQuery(**{**q.__dict__, "until": end}), filters,
                                     conditions, sql, truncate(end, gtd))
            return self._measure(metric.measure_name, MetricQuery(**{**q.__dict__, "until": end}), filters,
                                 conditions, sql, None)
        base_since: date | None = None
        if q.since is not None and window:
            base_since = shift(truncate(q.since, q.grain), window)
        elif q.since is not None and gtd:
            base_since = truncate(truncate(q.since, q.grain), gtd)
        elif q.since is not None:
            base_since = truncate(q.since, q.grain)
        base = self._measure(metric.measure_name, q, filters, conditions, sql, base_since, fill=True)
        if q.since is not None and not window and not gtd:
            # all-time running total: everything before the range starts is the opening balance
            opening = self._measure(metric.measure_name,
                                    MetricQuery(**{**q.__dict__, "grain": None,
                                                   "until": step(truncate(q.since, q.grain), "day", -1)}),
                                    filters, conditions, sql, None, fill=False)
            if not q.by and not opening:
                opening = {(): 0.0}
        else:
            opening = {}
        groups: dict[Key, list[tuple[date, float | None]]] = {}
        for key, value in base.items():
            groups.setdefault(tuple(key[1:]), []).append((key[0], value))
        out: Series = {}
        for dims, points in groups.items():
            points.sort(key=lambda pv: pv[0])
            running = opening.get(dims) or 0.0
            for i, (period, _value) in enumerate(points):
                if window:
                    lower = shift(period, window)
                    total = sum(v or 0.0 for d, v in points[: i + 1] if d > lower)
                    out[(period, *dims)] = total
                elif gtd:
                    bucket = truncate(period, gtd)
                    out[(period, *dims)] = sum(v or 0.0 for d, v in points[: i + 1] if truncate(d, gtd) == bucket)
                else:
                    running += _value or 0.0
                    out[(period, *dims)] = running
        return out


class ResultCache:
    """A bounded map (today, sql, params) -> rows, dropped by ``invalidate(names)`` when what it read changes."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._rows: OrderedDict[Key, tuple[list[Row], set[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: Key) -> list[Row] | None:
        with self._lock:
            found = self._rows.get(key)
            if found is None:
                return None
            self._rows.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Key, rows: list[Row], deps: set[str]) -> None:
        with self._lock:
            self._rows[key] = (rows, deps)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def invalidate(self, names: set[str] | None = None) -> None:
        """Forget results that read any of ``names`` (model names or relations); everything when None."""
        with self._lock:
            if names is None:
                self._rows.clear()
                return
            for key in [k for k, (_rows, deps) in self._rows.items() if deps & names]:
                del self._rows[key]


def _next_day(day: date) -> date:
    return step(day, "day", 1)


def _round(value: float | None) -> float | int | None:
    if value is None:
        return None
    if float(value).is_integer():
        return int(value)
    return round(value, 6)


def _sort_key(key: Key) -> tuple[tuple[bool, int | float | date | str], ...]:
    return tuple((v is None, v if isinstance(v, int | float | date) and not isinstance(v, bool) else str(v))
                 for v in key)


def _add_percentile(rows: list[list[object]]) -> None:
    """Each row's percentile among the rows (PERCENT_RANK: 0 for the lowest value, 1 for the highest)."""
    values = sorted(v for v in (opt_number(r[-1], "a metric value") for r in rows) if v is not None)
    n = len(values)
    for row in rows:
        value = opt_number(row[-1], "a metric value")
        if value is None or n == 0:
            row.append(None)
            continue
        below = sum(1 for v in values if v < value)
        row.append(round(below / (n - 1), 4) if n > 1 else 0.0)
