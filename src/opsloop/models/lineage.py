"""Column lineage with sqlglot: where each column of a model comes from, back to seeds and sources.

    opsloop lineage dim_customers.lifetime_value
    dim_customers.lifetime_value
    └── fct_orders.amount
        ├── stg_orders.quantity
        │   └── orders.quantity (seed)
        └── stg_products.price
            └── products.price (seed)
"""

from __future__ import annotations

from typing import TypedDict

from ..project import Project
from .checks import _data_parents, _mapping, output_columns
from .compiler import Compiler, Target
from .engine import ModelError


def _compiler(project: Project) -> Compiler:
    from ..errors import ConfigError, Problem
    from ..settings import resolve_settings
    from ..warehouse import open_warehouse
    from .project import ModelProject, read_model_project
    from .project_files import MODELS

    problems: list[Problem] = []
    mp = MODELS.of(project)
    if not isinstance(mp, ModelProject):
        mp = read_model_project(project.root, project.config.dbt_project, problems)
    if mp is None or problems:
        raise ConfigError(problems) if problems else ModelError("this project has no models")
    wh = open_warehouse(resolve_settings(project).warehouse, project.root)  # not connected: names only
    compiler = Compiler(mp, Target(schema=wh.default_schema, type=wh.dialect, dialect=wh.dialect),
                        project.env, project.config.vars)
    found = compiler.parse()
    if found:
        raise ConfigError(found)
    return compiler


class Lineage:
    """Direct column sources of every model column, computed once per compiled project."""

    def __init__(self, compiler: Compiler) -> None:
        self.c = compiler
        self.columns = output_columns(compiler, None)
        self.by_relation = {compiler.relation_of(uid).lower(): uid for uid in compiler.parents
                            if not uid.startswith("test.")}

    def sources_of(self, uid: str, column: str) -> list[tuple[str, str]]:
        """``(uid, column)`` pairs a model column is computed from (through ephemeral CTEs)."""
        from sqlglot import exp
        from sqlglot.lineage import lineage

        model = self.c.mp.models[uid.split(".", 1)[1]]
        mapping = _mapping(self.c, self.columns, _data_parents(self.c, uid))
        if mapping is None:
            return []
        d = self.c.target.source_dialect
        try:
            node = lineage(column, self.c.sql(model, dialect=d), schema=mapping, dialect=d)
        except Exception:
            return []
        out: list[tuple[str, str]] = []
        for item in node.walk():
            if item.downstream or not isinstance(item.source, exp.Table):
                continue
            table = item.source
            rel = f"{table.db}.{table.name}".lower()
            found = self.by_relation.get(rel)
            pair = (found or rel, item.name.split(".")[-1])
            if pair not in out:
                out.append(pair)
        return out

    def tree(self, uid: str, column: str, prefix: str = "", seen: frozenset[str] = frozenset()) -> list[str]:
        lines: list[str] = []
        parents = sorted(self.sources_of(uid, column)) if uid.startswith("model.") else []
        for i, (puid, pcol) in enumerate(parents):
            last = i == len(parents) - 1
            kind, _, name = puid.partition(".")
            label = f"{name}.{pcol}" + ("" if kind == "model" else f" ({kind})")
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label}")
            key = f"{puid}.{pcol}"
            if key not in seen:
                lines.extend(self.tree(puid, pcol, prefix + ("    " if last else "│   "), seen | {key}))
        return lines


class ColumnLineage(TypedDict):
    """``opsloop lineage MODEL.COLUMN``: the column's sources and its lineage as a tree (``lines``)."""

    model: str
    column: str
    sources: list[str]
    lines: list[str]


class ModelLineage(TypedDict):
    """``opsloop lineage MODEL``: its upstream and downstream nodes, each column's direct sources."""

    model: str
    upstream: list[str]
    downstream: list[str]
    columns: dict[str, list[str]]
    lines: list[str]


def lineage(project: Project, target: str) -> ColumnLineage | ModelLineage:
    """``MODEL`` lists its upstream and downstream nodes and each column's direct sources;
    ``MODEL.COLUMN`` prints that column's lineage as a tree."""
    compiler = _compiler(project)
    name, _, column = target.partition(".")
    model = compiler.mp.models.get(name)
    if model is None:
        raise ModelError(f"no model named {name!r}")
    lin = Lineage(compiler)
    cols = lin.columns.get(model.uid) or []
    if column:
        if cols and column not in cols:
            raise ModelError(f"{name} has no column {column!r}; its columns: {', '.join(cols)}")
        lines = [f"{name}.{column}", *lin.tree(model.uid, column)]
        sources = [f"{u}.{c}" for u, c in sorted(lin.sources_of(model.uid, column))]
        return {"model": name, "column": column, "sources": sources,
                "lines": lines}
    ups = sorted(compiler.parents.get(model.uid, set()))
    downs = sorted(u for u in compiler.children.get(model.uid, set()) if not u.startswith("test."))
    lines = [f"{name} ({model.materialized}, {compiler.relation_of(model.uid)})",
             "upstream: " + (", ".join(u.split(".", 1)[1] for u in ups) or "none"),
             "downstream: " + (", ".join(u.split(".", 1)[1] for u in downs) or "none"), "columns:"]
    columns: dict[str, list[str]] = {}
    for col in cols:
        srcs = [f"{u.split('.', 1)[1]}.{c}" for u, c in sorted(lin.sources_of(model.uid, col))]
        columns[col] = srcs
        lines.append(f"  {col} <- {', '.join(srcs) or '(computed)'}")
    return {"model": name, "upstream": ups, "downstream": downs, "columns": columns, "lines": lines}
