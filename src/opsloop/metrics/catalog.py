"""The metrics catalog: every semantic model, metric, highlight, alert and dashboard of a project.

``load_catalog(project, problems)`` reads ``metrics/*.yml`` and ``dashboards/*.yml`` and checks the
references between them (a metric's measure, a tile's metric, a SQL expression that does not parse),
appending one located ``Problem`` per mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from ..errors import Problem
from ..project.loader import Project, Section
from .spec import (
    Alert,
    Dashboard,
    Dimension,
    Highlight,
    Measure,
    Metric,
    MetricInput,
    MetricsFile,
    SemanticModel,
)

_REF = re.compile(r"""^\s*ref\(\s*['"]([A-Za-z0-9_.]+)['"]\s*\)\s*$""")
_JINJA_REF = re.compile(r"""\{\{\s*(Dimension|TimeDimension|Entity)\(\s*['"]([A-Za-z0-9_]+)['"][^)]*\)\s*\}\}""")


@dataclass
class Located:
    file: str
    line: int | None


@dataclass
class Catalog:
    semantic_models: dict[str, SemanticModel] = field(default_factory=dict)
    measures: dict[str, tuple[SemanticModel, Measure]] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    highlights: dict[str, Highlight] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    dashboards: dict[str, Dashboard] = field(default_factory=dict)
    where: dict[str, Located] = field(default_factory=dict)
    """``kind:name`` -> the file and line that declared it (for error messages)."""

    # -- lookups ---------------------------------------------------------------------------------
    def model_name(self, sm: SemanticModel) -> str | None:
        """The model-engine name a semantic model reads (``ref('x')`` -> ``x``), if any."""
        if sm.model:
            match = _REF.match(sm.model)
            return match.group(1) if match else sm.model
        return None

    def input_metrics(self, metric: Metric) -> list[MetricInput]:
        p = metric.type_params
        if metric.type == "ratio":
            return [_as_input(p.numerator), _as_input(p.denominator)]
        if metric.type == "derived":
            return [_as_input(m) for m in p.metrics or []]
        return []

    def semantic_models_of(self, metric_name: str, seen: set[str] | None = None) -> list[SemanticModel]:
        """Every semantic model a metric reads, through ratio and derived inputs."""
        seen = seen if seen is not None else set()
        if metric_name in seen or metric_name not in self.metrics:
            return []
        seen.add(metric_name)
        metric = self.metrics[metric_name]
        if metric.type in ("simple", "cumulative"):
            found = self.measures.get(metric.measure_name)
            return [found[0]] if found else []
        out: list[SemanticModel] = []
        for inp in self.input_metrics(metric):
            for sm in self.semantic_models_of(inp.name, seen):
                if sm not in out:
                    out.append(sm)
        return out

    def entities_of(self, metric_name: str) -> set[str]:
        return {e.name for sm in self.semantic_models_of(metric_name) for e in sm.entities}

    def dimensions_of(self, metric_name: str) -> dict[str, Dimension]:
        """Dimensions every semantic model of the metric has (so ``--by`` works on all its inputs)."""
        models = self.semantic_models_of(metric_name)
        if not models:
            return {}
        common = {d.name: d for d in models[0].dimensions}
        for sm in models[1:]:
            names = {d.name for d in sm.dimensions}
            common = {k: v for k, v in common.items() if k in names}
        return common

    def locate(self, kind: str, name: str) -> str:
        loc = self.where.get(f"{kind}:{name}")
        if loc is None:
            return ""
        return f"{loc.file}:{loc.line}" if loc.line else loc.file


def _as_input(value: str | MetricInput | None) -> MetricInput:
    if isinstance(value, MetricInput):
        return value
    return MetricInput(name=str(value))


def jinja_to_sql(text: str) -> str:
    """MetricFlow filters say ``{{ Dimension('customer__plan') }}``; opsloop reads them as column ``plan``."""

    def repl(match: re.Match[str]) -> str:
        ref = match.group(2)
        return ref.split("__")[-1]

    return _JINJA_REF.sub(repl, text)


def parse_condition(text: str) -> exp.Expr:
    """Parse an author's SQL condition (DuckDB syntax); raises ``sqlglot.errors.ParseError``."""
    return sqlglot.parse_one(jinja_to_sql(text), read="duckdb")


def load_catalog(root: Path, problems: list[Problem]) -> Catalog:
    from pydantic import ValidationError

    from ..project.loader import pydantic_problems, validate_model
    from ..project.yaml_files import yaml_mappings

    catalog = Catalog()
    expected = "expected a mapping: semantic_models:, metrics:, highlights:, alerts:"
    for _path, rel, doc in yaml_mappings(root / "metrics", root, expected, problems, empty_ok=True):
        unknown = set(doc.data) - set(MetricsFile.model_fields)
        for key in sorted(unknown, key=str):
            problems.append(Problem(rel, doc.line_of((key,)), f"unknown key {key!r}",
                                    "use semantic_models:, metrics:, highlights: or alerts:"))
        groups: list[tuple[str, list[Any], dict[str, Any]]] = []
        for kind, model, target in (("semantic_models", SemanticModel, catalog.semantic_models),
                                    ("metrics", Metric, catalog.metrics),
                                    ("highlights", Highlight, catalog.highlights),
                                    ("alerts", Alert, catalog.alerts)):
            raw = doc.data.get(kind) or []
            if not isinstance(raw, list):
                problems.append(Problem(rel, doc.line_of((kind,)), f"{kind} should be a list (items start with -)"))
                continue
            items: list[Any] = []
            for i, entry in enumerate(raw):
                try:
                    items.append(model.model_validate(entry))
                except ValidationError as exc:
                    problems.extend(pydantic_problems(doc, rel, exc, prefix=(kind, i)))
                    items.append(None)
            groups.append((kind, items, target))
        for kind, items, target in groups:
            for i, item in enumerate(items):
                if item is None:
                    continue
                line = doc.line_of((kind, i))
                key = f"{kind}:{item.name}"
                if item.name in target:
                    problems.append(Problem(rel, line, f"{kind[:-1].replace('_', ' ')} {item.name!r} is defined twice",
                                            f"the first is at {catalog.locate(kind, item.name)}"))
                    continue
                target[item.name] = item
                catalog.where[key] = Located(rel, line)
                if kind == "semantic_models":
                    for j, measure in enumerate(item.measures):
                        if measure.name in catalog.measures:
                            problems.append(Problem(rel, doc.line_of((kind, i, "measures", j)),
                                                    f"measure {measure.name!r} is defined twice",
                                                    "measure names are global across semantic models"))
                            continue
                        catalog.measures[measure.name] = (item, measure)
                        catalog.where[f"measures:{measure.name}"] = Located(
                            rel, doc.line_of((kind, i, "measures", j)))
    for path, rel, doc in yaml_mappings(root / "dashboards", root, "expected a mapping: title:, filters:, tiles:",
                                        problems):
        board: Dashboard | None = validate_model(Dashboard, doc, rel, {"name": path.stem, **doc.data}, problems)
        if board is None:
            continue
        catalog.dashboards[board.name] = board
        catalog.where[f"dashboards:{board.name}"] = Located(rel, 1)
        for i, _tile in enumerate(board.tiles):
            catalog.where[f"tiles:{board.name}:{i}"] = Located(rel, doc.line_of(("tiles", i)))
    _check(catalog, problems)
    return catalog


def _problem(catalog: Catalog, kind: str, name: str, message: str, hint: str = "") -> Problem:
    loc = catalog.where.get(f"{kind}:{name}")
    return Problem(loc.file if loc else "metrics", loc.line if loc else None, message, hint)


def _check_sql(catalog: Catalog, kind: str, name: str, what: str, text: str | None, problems: list[Problem],
               condition: bool = False) -> None:
    if not text:
        return
    try:
        parsed = parse_condition(text)
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        problems.append(_problem(catalog, kind, name, f"{what} is not valid SQL: {first}",
                                 "write a DuckDB SQL expression over the model's columns"))
        return
    if condition and isinstance(parsed, exp.Select | exp.Insert | exp.Delete | exp.Update | exp.Drop):
        problems.append(_problem(catalog, kind, name, f"{what} must be an expression, not a statement"))


def _check(catalog: Catalog, problems: list[Problem]) -> None:
    for sm in catalog.semantic_models.values():
        dims = {d.name for d in sm.dimensions}
        default_time = sm.defaults.agg_time_dimension if sm.defaults else None
        _check_sql(catalog, "semantic_models", sm.name, "filter", sm.filter, problems, condition=True)
        for d in sm.dimensions:
            _check_sql(catalog, "semantic_models", sm.name, f"dimension {d.name!r} expr", d.expr, problems)
        for e in sm.entities:
            _check_sql(catalog, "semantic_models", sm.name, f"entity {e.name!r} expr", e.expr, problems)
        for m in sm.measures:
            _check_sql(catalog, "measures", m.name, f"measure {m.name!r} expr", m.expr, problems)
            _check_sql(catalog, "measures", m.name, f"measure {m.name!r} filter", m.filter, problems, condition=True)
            time_dim = m.agg_time_dimension or default_time
            if time_dim is None:
                continue
            if time_dim not in dims:
                problems.append(_problem(catalog, "measures", m.name,
                                         f"measure {m.name!r}: agg_time_dimension {time_dim!r} is not a dimension "
                                         f"of semantic model {sm.name!r}", "add it under dimensions: with type: time"))
            elif next(d for d in sm.dimensions if d.name == time_dim).type != "time":
                problems.append(_problem(catalog, "measures", m.name,
                                         f"measure {m.name!r}: {time_dim!r} is not a time dimension",
                                         "set type: time on that dimension"))
    for metric in catalog.metrics.values():
        _check_sql(catalog, "metrics", metric.name, "filter", metric.filter, problems, condition=True)
        if metric.type in ("simple", "cumulative"):
            if metric.measure_name not in catalog.measures:
                known = ", ".join(sorted(catalog.measures)) or "none"
                problems.append(_problem(catalog, "metrics", metric.name,
                                         f"metric {metric.name!r} uses measure {metric.measure_name!r}, "
                                         "which no semantic model defines", f"measures: {known}"))
            else:
                sm, measure = catalog.measures[metric.measure_name]
                default_time = sm.defaults.agg_time_dimension if sm.defaults else None
                if not (measure.agg_time_dimension or default_time):
                    problems.append(_problem(catalog, "metrics", metric.name,
                                             f"measure {measure.name!r} has no time dimension",
                                             f"set defaults.agg_time_dimension on semantic model {sm.name!r}"))
        for inp in catalog.input_metrics(metric):
            if inp.name not in catalog.metrics:
                problems.append(_problem(catalog, "metrics", metric.name,
                                         f"metric {metric.name!r} uses metric {inp.name!r}, which is not defined"))
            if inp.offset_window:
                from .periods import parse_window

                try:
                    parse_window(inp.offset_window)
                except ValueError as exc:
                    problems.append(_problem(catalog, "metrics", metric.name, str(exc)))
        if metric.type == "derived" and metric.type_params.expr:
            try:
                from .engine import check_expression

                check_expression(metric.type_params.expr,
                                 {i.alias or i.name for i in catalog.input_metrics(metric)})
            except ValueError as exc:
                problems.append(_problem(catalog, "metrics", metric.name, f"expr: {exc}"))
        if metric.type == "cumulative" and metric.type_params.window:
            from .periods import parse_window

            try:
                parse_window(metric.type_params.window)
            except ValueError as exc:
                problems.append(_problem(catalog, "metrics", metric.name, str(exc)))
    for h in catalog.highlights.values():
        if h.semantic_model:
            hsm = catalog.semantic_models.get(h.semantic_model)
            if hsm is None:
                problems.append(_problem(catalog, "highlights", h.name,
                                         f"highlight {h.name!r}: no semantic model {h.semantic_model!r}"))
            else:
                names = {d.name for d in hsm.dimensions}
                for dim in (h.time_dimension, h.subject_dimension):
                    if dim and dim not in names:
                        problems.append(_problem(catalog, "highlights", h.name,
                                                 f"highlight {h.name!r}: {dim!r} is not a dimension of "
                                                 f"{h.semantic_model!r}"))
        _check_sql(catalog, "highlights", h.name, "filter", h.filter, problems, condition=True)
    for alert in catalog.alerts.values():
        if alert.metric not in catalog.metrics:
            problems.append(_problem(catalog, "alerts", alert.name,
                                     f"alert {alert.name!r} watches metric {alert.metric!r}, which is not defined"))
    for board in catalog.dashboards.values():
        for i, tile in enumerate(board.tiles):
            loc = catalog.where[f"tiles:{board.name}:{i}"]
            for name in [*([tile.metric] if tile.metric else []), *tile.metrics]:
                if name not in catalog.metrics:
                    known = ", ".join(sorted(catalog.metrics)) or "none"
                    problems.append(Problem(loc.file, loc.line, f"tile {i + 1} uses metric {name!r}, "
                                            "which is not defined in metrics/*.yml", f"metrics: {known}"))
            if isinstance(tile.highlights, list):
                for name in tile.highlights:
                    if name not in catalog.highlights:
                        known = ", ".join(sorted(catalog.highlights)) or "none"
                        problems.append(Problem(loc.file, loc.line, f"tile {i + 1} draws highlight {name!r}, "
                                                "which is not defined in metrics/*.yml", f"highlights: {known}"))
            if tile.type == "cohort":
                for ref, what in ((tile.signup, "signup"), (tile.activity, "activity")):
                    model, _, dim = str(ref).partition(".")
                    csm = catalog.semantic_models.get(model)
                    if csm is None or dim not in {d.name for d in csm.dimensions}:
                        problems.append(Problem(loc.file, loc.line, f"cohort tile: {what} {ref!r} should be "
                                                "semantic_model.time_dimension"))
                    elif tile.entity not in {e.name for e in csm.entities}:
                        problems.append(Problem(loc.file, loc.line, f"cohort tile: semantic model {model!r} has "
                                                f"no entity {tile.entity!r}"))


CATALOG: Section[Catalog | None] = Section("metrics", lambda: None)
"""``metrics/*.yml`` and ``dashboards/*.yml`` (``CATALOG.of(project)``); None when not loaded."""


def catalog_of(project: Project) -> Catalog:
    """The project's catalog (loaded with the project); an empty one when there are no metric files."""
    return CATALOG.of(project) or Catalog()
