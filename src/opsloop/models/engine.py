"""``ModelEngine``: the Python API the CLI, the server and other subsystems call.

    engine = ModelEngine(app.project, app.warehouse)
    results = engine.build(select=["+orders"], full_refresh=False)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, OpsloopError, Problem
from ..project import Project
from ..warehouse import QueryResult, Warehouse
from .compiler import Compiler, Target
from .project import ModelProject, read_model_project
from .runner import NodeResult, Runner
from .selection import select as select_nodes


class ModelError(OpsloopError):
    """A model command cannot run (unknown model, nothing to build)."""


class ModelEngine:
    """Reads the project's models on demand (re-reading when files change) and runs them."""

    def __init__(self, project: Project, warehouse: Warehouse, threads: int | None = None) -> None:
        self.project = project
        self.warehouse = warehouse
        self.threads = threads
        self._compiler: Compiler | None = None
        self._signature: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self.check_columns = True

    # -- loading -----------------------------------------------------------------------------
    def _files_signature(self) -> tuple[Any, ...]:
        root = self.project.root
        dbt = self.project.config.dbt_project
        base = (root / dbt).resolve() if dbt else root
        sig: list[Any] = []
        for folder in ("models", "seeds", "macros", "dbt_project.yml"):
            path = base / folder
            if path.is_file():
                sig.append((str(path), path.stat().st_mtime_ns))
            elif path.is_dir():
                for p in path.rglob("*"):
                    if p.suffix in (".sql", ".yml", ".yaml", ".csv"):
                        sig.append((str(p), p.stat().st_mtime_ns))
        sig.sort()
        return tuple(sig)

    def compiler(self) -> Compiler:
        """The parsed project (cached until a model file changes). Raises ConfigError on problems."""
        with self._lock:
            sig = self._files_signature()
            if self._compiler is not None and sig == self._signature:
                return self._compiler
            problems: list[Problem] = []
            mp = self.project.extras.get("models") if self._signature is None else None
            if not isinstance(mp, ModelProject):
                mp = read_model_project(self.project.root, self.project.config.dbt_project, problems)
            if mp is None:
                raise ModelError("this project has no models (add models/*.sql or point dbt_project: at a dbt project)")
            if problems:
                raise ConfigError(problems)
            wh = self.warehouse
            target = Target(schema=wh.default_schema, type=wh.dialect, dialect=wh.dialect,
                            threads=self.threads or min(4, os.cpu_count() or 1))
            compiler = Compiler(mp, target, self.project.env, self.project.config.vars)
            problems = compiler.parse()
            if problems:
                raise ConfigError(problems)
            if self.check_columns:
                from .checks import check_columns

                problems = check_columns(compiler, self.warehouse)
                if problems:
                    raise ConfigError(problems)
            self._compiler, self._signature = compiler, sig
            return compiler

    # -- verbs -------------------------------------------------------------------------------
    def build(self, select: list[str] | None = None, exclude: list[str] | None = None, full_refresh: bool = False,
              kinds: tuple[str, ...] = ("model", "seed", "test"),
              on_result: Callable[[NodeResult], None] | None = None,
              on_start: Callable[[str], None] | None = None) -> list[NodeResult]:
        """Build the selection (seeds, models, tests in DAG order); one result per node."""
        compiler = self.compiler()
        uids = select_nodes(compiler, select, exclude, kinds)
        uids = [u for u in uids if not (u.startswith("model.") and
                                        compiler.mp.models[u[6:]].materialized == "ephemeral")]
        runner = Runner(compiler, self.warehouse, full_refresh=full_refresh, threads=self.threads,
                        on_result=on_result, on_start=on_start)
        return runner.run(uids)

    def selected(self, select: list[str] | None, exclude: list[str] | None = None,
                 kinds: tuple[str, ...] = ("model", "seed", "test")) -> list[str]:
        return select_nodes(self.compiler(), select, exclude, kinds)

    def compile_sql(self, name: str) -> str:
        """The SQL a model runs (its SELECT, ephemerals inlined), in the warehouse's dialect."""
        compiler = self.compiler()
        model = compiler.mp.models.get(name)
        if model is None:
            if name in compiler.mp.tests:
                return compiler.test_sql(compiler.mp.tests[name])
            raise ModelError(f"no model named {name!r}; models: {', '.join(sorted(compiler.mp.models)[:20])}")
        schema, ident = compiler.node_relation(model)
        exists = (schema.lower(), ident.lower()) in self.warehouse.relations()
        incremental = model.materialized == "incremental" and exists
        return compiler.sql(model, is_incremental=incremental)

    def downstream_of_relations(self, relations: set[str]) -> list[str]:
        """Selectors for the models that read the given ``schema.table`` relations (sources or models)."""
        compiler = self.compiler()
        wanted = {r.lower() for r in relations}
        roots = [uid for uid in compiler.parents
                 if not uid.startswith("test.") and compiler.relation_of(uid).lower() in wanted]
        out: list[str] = []
        for uid in roots:
            for child in sorted(compiler.children.get(uid, set())):
                if child.startswith("model."):
                    out.append(child.split(".", 1)[1] + "+")
        return out

    def query(self, sql: str, limit: int | None = 1000) -> QueryResult:
        """A read-only query (one SELECT/WITH/SHOW/DESCRIBE statement)."""
        check_read_only(sql, self.warehouse.dialect)
        result = self.warehouse.query(sql)
        if limit is not None:
            result.rows = result.rows[:limit]
        return result


def check_read_only(sql: str, dialect: str) -> None:
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise ModelError(f"cannot parse the query: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1:
        raise ModelError("give exactly one statement to `opsloop query`")
    stmt = statements[0]
    allowed = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Describe, exp.Show, exp.Pragma)
    if not isinstance(stmt, allowed) and not (isinstance(stmt, exp.Command) and
                                               str(stmt.this).upper() in ("SHOW", "DESCRIBE", "SUMMARIZE")):
        raise ModelError("`opsloop query` runs read-only queries (SELECT, WITH, SHOW, DESCRIBE); "
                         "change data with a model instead")
    for node in stmt.walk():
        if isinstance(node, exp.Insert | exp.Delete | exp.Update | exp.Create | exp.Drop | exp.Alter):
            raise ModelError("`opsloop query` runs read-only queries; this one writes")
