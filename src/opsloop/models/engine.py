"""``ModelEngine``: the Python API the CLI, the server and other subsystems call.

    engine = ModelEngine(app.project, app.warehouse)
    results = engine.build(select=["+orders"], full_refresh=False)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .._halt import Halt
from ..errors import ConfigError, OpsloopError, Problem
from ..project import Project
from ..warehouse import DEFAULT_LIMIT, MAX_LIMIT, QueryRefused, QueryResult, Warehouse, query_timeout
from .compiler import Compiler, Target
from .project import ModelProject, read_model_project
from .project_files import MODELS
from .runner import NodeResult, Runner
from .selection import select as select_nodes

if TYPE_CHECKING:
    from .freshness import FreshnessResult


class ModelError(OpsloopError):
    """A model command cannot run (unknown model, nothing to build)."""


class ModelEngine:
    """Reads the project's models on demand (re-reading when files change) and runs them."""

    def __init__(self, project: Project, warehouse: Warehouse, threads: int | None = None) -> None:
        self.project = project
        self.warehouse = warehouse
        self.threads = threads
        self._compiler: Compiler | None = None
        self._signature: tuple[tuple[str, int | str], ...] | None = None
        self._lock = threading.Lock()
        self.check_columns = True
        self.cli_vars: dict[str, object] = {}
        """``--vars``: win over dbt_project.yml's and opsloop.yml's vars."""
        self.target_name = "dev"
        """``--target``: what ``target.name`` is in Jinja (dbt's profile target)."""
        self.state_dir: Path | None = None
        """``--state``: an earlier build's target/ folder, for ``state:modified`` / ``state:new``."""
        self.show_failures = 0
        """``--show-failures``: keep up to this many failing rows of each failing test (on its result)."""
        self.write_artifacts = True
        """Write target/manifest.json and run_results.json after each build."""
        self.event_time_start: datetime | None = None
        self.event_time_end: datetime | None = None
        """``--event-time-start`` / ``--event-time-end``: the range microbatch models rebuild (UTC when naive)."""

    # -- loading -----------------------------------------------------------------------------
    def _files_signature(self) -> tuple[tuple[str, int | str], ...]:
        root = self.project.root
        dbt = self.project.config.dbt_project
        base = (root / dbt).resolve() if dbt else root
        sig: list[tuple[str, int | str]] = []
        for folder in ("models", "seeds", "macros", "tests", "snapshots", "dbt_project.yml", "packages.yml",
                       "dependencies.yml", "dbt_packages"):
            path = base / folder
            if path.is_file():
                sig.append((str(path), path.stat().st_mtime_ns))
            elif path.is_dir():
                for p in path.rglob("*"):
                    if p.suffix in (".sql", ".py", ".yml", ".yaml", ".csv"):
                        sig.append((str(p), p.stat().st_mtime_ns))
        sig.sort()
        import json

        sig.append(("--vars/--target", json.dumps([self.cli_vars, self.target_name], sort_keys=True, default=str)))
        return tuple(sig)

    def compiler(self) -> Compiler:
        """The parsed project (cached until a model file changes). Raises ConfigError on problems."""
        with self._lock:
            sig = self._files_signature()
            if self._compiler is not None and sig == self._signature:
                return self._compiler
            problems: list[Problem] = []
            mp = MODELS.of(self.project) if self._signature is None else None
            if not isinstance(mp, ModelProject):
                mp = read_model_project(self.project.root, self.project.config.dbt_project, problems)
            if mp is None:
                raise ModelError("this project has no models (add models/*.sql or point dbt_project: at a dbt project)")
            wh = self.warehouse
            target = Target(schema=wh.default_schema, type=wh.dialect, dialect=wh.dialect, name=self.target_name,
                            threads=self.threads or min(4, os.cpu_count() or 1))
            compiler = Compiler(mp, target, self.project.env, {**self.project.config.vars, **self.cli_vars})
            compiler.warehouse = wh
            problems = [*mp.read_problems, *compiler.parse()]  # all of them in one pass
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
              kinds: tuple[str, ...] = ("model", "seed", "snapshot", "test"),
              on_result: Callable[[NodeResult], None] | None = None,
              on_start: Callable[[str], None] | None = None, halt: Halt | None = None) -> list[NodeResult]:
        """Build the selection (seeds, models, tests in DAG order); one result per node. With ``halt``, a
        stop ends the build between nodes and interrupts a running statement (raising ``Interrupted``)."""
        import time

        began = time.perf_counter()
        compiler = self.compiler()
        compiler.state_dir = self.state_dir
        uids = select_nodes(compiler, select, exclude, kinds)
        uids = [u for u in uids if not (u.startswith("model.") and
                                        compiler.mp.models[u[6:]].materialized == "ephemeral")]
        self._ensure_raw_events(compiler, uids)
        runner = Runner(compiler, self.warehouse, full_refresh=full_refresh, threads=self.threads,
                        on_result=on_result, on_start=on_start, halt=halt)
        runner.show_failures = self.show_failures
        runner.event_time_start, runner.event_time_end = self.event_time_start, self.event_time_end
        mp = compiler.mp
        results = runner.run_operations("on-run-start", mp.on_run_start)
        if not any(r.status == "error" for r in results):  # as dbt: a failing on-run-start builds nothing
            results += runner.run(uids)
            results += runner.run_operations("on-run-end", mp.on_run_end, results)
        if self.write_artifacts:
            from .artifacts import write_artifacts

            write_artifacts(compiler, results, time.perf_counter() - began)
        return results

    def source_freshness(self, select: list[str] | None = None,
                         output: Path | None = None) -> list[FreshnessResult]:
        """``dbt source freshness``: check each selected source table with ``freshness:`` (``source:raw``,
        ``raw.orders``, globs); writes target/sources.json (or ``output``). Returns FreshnessResults."""
        import fnmatch
        import time

        from .freshness import check, sources_json, write_sources_json

        began = time.perf_counter()
        compiler = self.compiler()
        terms = [t.removeprefix("source:") for chunk in select or [] for t in chunk.split()]
        chosen = [src for src in compiler.mp.sources.values() if src.freshness is not None and (
            not terms or any(fnmatch.fnmatch(src.source_name, t) or fnmatch.fnmatch(f"{src.source_name}.{src.name}", t)
                             for t in terms))]
        if terms and not chosen:
            raise ModelError(f"--select {' '.join(terms)!r} matches no source table with freshness: configured")
        results = [check(src, self.warehouse, compiler.rel_text(src.schema, src.identifier))
                   for src in sorted(chosen, key=lambda s: (s.source_name, s.name))]
        path = output or compiler.mp.root / "target" / "sources.json"
        try:
            write_sources_json(path, sources_json(compiler.mp.name, results, time.perf_counter() - began))
        except OSError as exc:
            raise ModelError(f"cannot write {path}: {exc}") from exc
        return results

    def _ensure_raw_events(self, compiler: Compiler, uids: list[str]) -> None:
        """Before the first `opsloop up`, raw.events does not exist yet: create it (empty) so the models
        reading ``source('raw', 'events')`` build instead of failing."""
        src = compiler.mp.sources.get(("raw", "events"))
        if src is None or (src.schema, src.identifier) != ("raw", "events") or self.warehouse.dialect != "duckdb":
            return
        readers = {uid for uid in uids if src.uid in compiler.parents.get(uid, set())}
        if not readers or ("raw", "events") in self.warehouse.relations():
            return
        from ..events.loader import RawEventLoader

        RawEventLoader(self.warehouse).ensure_table()

    def selected(self, select: list[str] | None, exclude: list[str] | None = None,
                 kinds: tuple[str, ...] = ("model", "seed", "snapshot", "test")) -> list[str]:
        compiler = self.compiler()
        compiler.state_dir = self.state_dir
        return select_nodes(compiler, select, exclude, kinds)

    def compile_sql(self, name: str) -> str:
        """The SQL a model runs (its SELECT, ephemerals inlined), in the warehouse's dialect."""
        compiler = self.compiler()
        model = compiler.mp.models.get(name)
        if model is None:
            if name in compiler.mp.tests:
                return compiler.test_sql(compiler.mp.tests[name])
            raise ModelError(f"no model named {name!r}; models: {', '.join(sorted(compiler.mp.models)[:20])}")
        if model.language == "python":
            return model.raw_sql
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

    def query(self, sql: str, limit: int | None = DEFAULT_LIMIT, timeout: float | None = None) -> QueryResult:
        """A caller's query (`opsloop query`, ``POST /api/query``), read-only and sandboxed: one statement
        that reads the warehouse's tables, no host files, network or settings, at most ``limit`` rows
        (``result.truncated`` says when more matched), stopped after ``timeout`` seconds (at most the
        project's ``OPSLOOP_QUERY_TIMEOUT``, default 30 s). Raises ``QueryRefused`` / ``QueryTimeout``
        (``WarehouseError``) with what was refused and why."""
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise QueryRefused(f"limit must be between 1 and {MAX_LIMIT} rows, not {limit} (for more, build a model "
                               "or sync the rows out)")
        most = query_timeout(self.project.env)
        if timeout is not None and timeout <= 0:
            raise QueryRefused(f"timeout must be a positive number of seconds, not {timeout:g}")
        return self.warehouse.sandboxed_query(sql, limit, most if timeout is None else min(timeout, most))
