"""Parse every model once (config, refs, sources), build the DAG, and compile SQL on demand."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypedDict

from ..errors import Problem
from ..warehouse.sql import literal, relation
from ._config import as_list
from ._render import DEFAULT_NAMING_MACROS, MacroPackage, Relation, RenderContext, Renderer, RenderError
from .nodes import DataTest, Model, Seed, Snapshot, Source
from .project import ModelProject, _check_model_config, merge_config

if TYPE_CHECKING:
    from ..warehouse import QueryResult, Warehouse
    from .microbatch import Batch

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
RAW_EVENTS_COLUMNS = {
    "event_id": "VARCHAR", "seq": "BIGINT", "endpoint": "VARCHAR", "name": "VARCHAR",
    "received_at": "TIMESTAMPTZ", "idempotency_key": "VARCHAR", "source": "VARCHAR", "payload": "JSON",
}


@dataclass
class Target:
    schema: str
    type: str = "duckdb"
    name: str = "dev"
    dialect: str = "duckdb"
    """Dialect of the engine; the project's SQL is written in ``source_dialect`` and transpiled."""
    source_dialect: str = "duckdb"
    threads: int = 4


class CompileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class Compiler:
    """The parsed project for one target: relations, parents, order; ``sql(model)`` compiles one model."""

    def __init__(self, mp: ModelProject, target: Target, env: Mapping[str, str],
                 extra_vars: Mapping[str, object] | None = None) -> None:
        self.mp = mp
        self.target = target
        if ("raw", "events") not in mp.sources:
            mp.sources[("raw", "events")] = Source("raw", "events", "raw", "events", "(built in)", None,
                                                   dict(RAW_EVENTS_COLUMNS), "events loaded from the event log")
        macros = []
        for path in mp.macro_files:
            try:
                macros.append((mp.rel(path), path.read_text(encoding="utf-8")))
            except OSError:
                continue
        self._naming = {name for name in ("generate_schema_name", "generate_alias_name")
                        if any(f"macro {name}" in text for _, text in macros)}
        if self._naming:
            macros.insert(0, ("(dbt's built-in macros)", DEFAULT_NAMING_MACROS))
        target_ctx = {"schema": target.schema, "type": target.type, "name": target.name, "threads": target.threads,
                      "database": "", "project_name": mp.name, "profile_name": mp.name}
        packages = [MacroPackage(pkg.name, [(mp.rel(p), p.read_text(encoding="utf-8")) for p in pkg.macro_files])
                    for pkg in mp.packages]
        self.renderer = Renderer({**mp.vars, **(extra_vars or {})}, env, target_ctx, macros, packages,
                                 mp.dispatch, adapter_type=target.source_dialect)
        self.parents: dict[str, set[str]] = {}
        self.order: list[str] = []
        self.problems: list[Problem] = list(self.renderer.problems)
        self._sql_cache: dict[tuple[str, bool, str, Batch | None], str] = {}
        self.warehouse: Warehouse | None = None
        """The warehouse that run_query / statement / adapter.get_columns_in_relation ask (set by the engine)."""
        self.state_dir: Path | None = None
        """``--state``: the folder of an earlier build's manifest.json, for ``state:modified``."""
        self._local = _OnThread()
        self._graph: dict[str, object] | None = None
        self._graph_lock = threading.Lock()
        self.renderer.graph = self.graph

    def graph(self) -> dict[str, object]:
        """dbt's ``graph`` context variable, built once (the first time a node compiled to run reads it)."""
        with self._graph_lock:
            if self._graph is None:
                from .artifacts import flat_graph

                self._graph = flat_graph(self)
            return self._graph

    @contextlib.contextmanager
    def using(self, warehouse: Warehouse | None) -> Iterator[None]:
        """Compile on this thread against ``warehouse`` (a build thread's own session)."""
        saved = self._local.using, self._local.wh
        self._local.using, self._local.wh = True, warehouse
        try:
            yield
        finally:
            self._local.using, self._local.wh = saved

    def _query_fn(self) -> Callable[[str], QueryResult] | None:
        wh = self._local.wh if self._local.using else self.warehouse
        if wh is None:
            return None

        def query(sql: str) -> QueryResult:
            self._local.touched = True  # the SQL depends on the warehouse's state: not cached
            return wh.query(sql)

        return query

    # -- relations ---------------------------------------------------------------------------
    def schema_for(self, custom: object) -> str:
        return f"{self.target.schema}_{custom}" if custom else self.target.schema

    def schema_for_custom(self, custom: str) -> str:
        """The schema for a custom schema name, through the project's generate_schema_name when it has one
        (where dbt puts stored test failures: ``dbt_test__audit``)."""
        if "generate_schema_name" not in self._naming:
            return self.schema_for(custom)
        info = {"name": custom, "resource_type": "test", "config": {}, "fqn": [], "path": "",
                "package_name": self.mp.name, "unique_id": "", "tags": []}
        return self.renderer.call("generate_schema_name", (custom, info), RenderContext(_no_ref, _no_ref, None, False))

    def _place(self, node: Model | Seed | Snapshot, kind: str) -> None:
        """Set the node's schema and alias, through the project's generate_schema_name /
        generate_alias_name when it overrides them (as dbt does)."""
        custom, alias = node.config.get("schema"), node.config.get("alias")
        if not self._naming:
            node.schema, node.alias = self.schema_for(custom), str(alias or node.name)
            return
        info = {"name": node.name, "resource_type": kind, "config": node.config, "fqn": getattr(node, "fqn", []),
                "path": node.path, "original_file_path": node.path, "package_name": self.mp.name,
                "unique_id": f"{kind}.{self.mp.name}.{node.name}", "version": None, "tags": node.tags}
        ctx = RenderContext(_no_ref, _no_ref, None, False)
        try:
            node.schema = (self.renderer.call("generate_schema_name", (custom, info), ctx)
                           if "generate_schema_name" in self._naming else self.schema_for(custom))
            node.alias = (self.renderer.call("generate_alias_name", (alias, info), ctx)
                          if "generate_alias_name" in self._naming else str(alias or node.name))
        except RenderError as exc:
            self.problems.append(Problem(node.file, None, f"naming the {kind}'s relation: {exc}", exc.hint))
            node.schema, node.alias = self.schema_for(custom), str(alias or node.name)

    def node_relation(self, node: Model | Seed | Snapshot) -> tuple[str, str]:
        return node.schema, node.alias or node.name

    def rel_text(self, schema: str, name: str, dialect: str | None = None) -> str:
        return relation(schema, name, dialect or self.target.source_dialect)

    def relation_of(self, uid: str) -> str:
        """``schema.name`` for a model, seed or source uid (for display and events)."""
        kind, _, rest = uid.partition(".")
        if kind == "model":
            s, n = self.node_relation(self.mp.models[rest])
        elif kind == "seed":
            s, n = self.node_relation(self.mp.seeds[rest])
        elif kind == "snapshot":
            s, n = self.node_relation(self.mp.snapshots[rest])
        else:
            src = self.mp.sources[tuple(rest.split(".", 1))]  # type: ignore[index]
            s, n = src.schema, src.identifier
        return f"{s}.{n}"

    # -- parse -------------------------------------------------------------------------------
    def parse(self) -> list[Problem]:
        mp = self.mp
        for seed in mp.seeds.values():
            self._place(seed, "seed")
            self.parents[seed.uid] = set()
        for source in mp.sources.values():
            self.parents[source.uid] = set()
            for attr in ("schema", "identifier"):
                value = getattr(source, attr)
                if "{{" in value or "{%" in value:
                    try:
                        rendered, _ = self.renderer.render(source.file, value, RenderContext(
                            _no_ref, _no_ref, None, False))
                    except RenderError as exc:
                        self.problems.append(Problem(source.file, source.line, f"{attr} of source "
                                                     f"{source.source_name}.{source.name}: {exc}", exc.hint))
                        continue
                    setattr(source, attr, rendered.strip())
        cache = _ParseCache(self)
        for model in mp.models.values():
            if model.language == "python":  # read with ast, not rendered (see python_models.py)
                from .python_models import parse as parse_python

                self.problems.extend(parse_python(self, model))
                if model.config.get("incremental_strategy") == "microbatch":
                    from .microbatch import config_problems

                    self.problems.extend(config_problems(model, None)[:1])  # dbt refuses it for Python models
                self._place(model, "model")
                self.parents[model.uid] = set(model.depends_on)
                continue
            key = cache.key(model)
            hit = cache.get(model.name, key)
            if hit is not None:
                self._apply_parsed(model, hit)
                continue
            before = len(self.problems)
            self._parse_model(model)
            if len(self.problems) == before:
                cache.put(model, key)
        cache.save()
        disabled = {m.uid for m in mp.models.values() if m.config.get("enabled") is False}
        for uid in disabled:
            del mp.models[uid[6:]]
            self.parents.pop(uid, None)
        for model in mp.models.values():
            for uid in disabled & model.depends_on:
                self.problems.append(Problem(model.file, model.ref_lines.get(uid) or None,
                                             f"ref({uid[6:]!r}) names a disabled model", "enable it or remove the ref"))
        for name in [n for n, t in mp.tests.items() if t.attached in disabled]:
            del mp.tests[name]
        for snap in list(mp.snapshots.values()):
            self._parse_snapshot(snap)
        for test in mp.tests.values():
            self._parse_test(test)
        for name in [n for n, t in mp.tests.items() if t.test in ("singular", "generic") and t.uid not in self.parents]:
            del mp.tests[name]  # disabled, or it did not parse (reported)
        self.order = self._toposort()
        return self.problems

    def _apply_parsed(self, model: Model, hit: _Parsed) -> None:
        """A cached parse: the same config(), refs and sources as last time, without rendering."""
        if hit["captured"]:
            model.config = merge_config(model.config, hit["captured"])
        model.depends_on = set(hit["depends_on"])
        model.ref_lines = dict(hit["ref_lines"])
        self._place(model, "model")
        self.parents[model.uid] = set(model.depends_on)

    def _parse_model(self, model: Model) -> None:
        found = self.renderer.check(model.file, model.raw_sql)
        model.depends_on = set()
        if found:
            self.problems.extend(found)
            self.parents[model.uid] = set()
            return

        ref, source = self._resolvers(model.raw_sql, model.depends_on, model.ref_lines)
        this = Relation(self.target.schema, model.name, "__this__")
        try:
            _, captured = self.renderer.render(model.file, model.raw_sql,
                                               RenderContext(ref, source, this, False, dict(model.config),
                                                             execute=False, model=lambda: {
                                                                 "name": model.name, "resource_type": "model",
                                                                 "unique_id": f"model.{self.mp.name}.{model.name}",
                                                                 "package_name": self.mp.name,
                                                                 "config": model.config, "batch": None}))
        except RenderError as exc:
            self.problems.append(Problem(model.file, exc.line, str(exc), exc.hint))
            self.parents[model.uid] = set(model.depends_on)
            return
        model.captured = dict(captured)
        if captured:
            model.config = merge_config(model.config, captured)
            config_line = next((i for i, ln in enumerate(model.raw_sql.splitlines(), 1) if "config(" in ln), None)
            _check_model_config(model, captured, self.problems, config_line)
        self._place(model, "model")
        if model.materialized == "incremental":
            strategy = model.config.get("incremental_strategy")
            if strategy in ("merge", "delete+insert") and not model.config.get("unique_key"):
                self.problems.append(Problem(model.file, None, f"incremental_strategy {strategy!r} needs unique_key",
                                             "add unique_key='id' to config()"))
            if strategy == "microbatch":
                from .microbatch import config_problems

                line = next((i for i, ln in enumerate(model.raw_sql.splitlines(), 1) if "config(" in ln), None)
                self.problems.extend(config_problems(model, line))
        self.parents[model.uid] = set(model.depends_on)

    def _parse_snapshot(self, snap: Snapshot) -> None:
        """A snapshot: its refs and sources, the config() it sets, its relation and a valid strategy."""
        from .snapshots import snapshot_problems

        found = self.renderer.check(snap.file, snap.raw_sql)
        self.parents[snap.uid] = set()
        if found:
            self.problems.extend(found)
            return
        ref, source = self._resolvers(snap.raw_sql, snap.depends_on, snap.ref_lines)
        this = Relation(self.target.schema, snap.name, "__this__")
        try:
            _, captured = self.renderer.render(snap.file, snap.raw_sql, RenderContext(
                ref, source, this, False, dict(snap.config), execute=False))
        except RenderError as exc:
            self.problems.append(Problem(snap.file, exc.line, str(exc), exc.hint))
            return
        snap.config = merge_config(snap.config, captured)
        if snap.config.get("enabled") is False:
            del self.mp.snapshots[snap.name]
            del self.parents[snap.uid]
            return
        self.problems.extend(snapshot_problems(snap))
        self._place(snap, "snapshot")
        if snap.config.get("target_schema"):  # the legacy config names the schema as it is (dbt < 1.9 style)
            snap.schema = str(snap.config["target_schema"])
        self.parents[snap.uid] = set(snap.depends_on)

    def _resolvers(self, raw_sql: str, depends_on: set[str],
                   ref_lines: dict[str, int]) -> tuple[Callable[..., Relation], Callable[..., Relation]]:
        """``ref`` and ``source`` for parsing: they record what a node reads, and where."""
        lines = self.renderer.ref_lines(raw_sql)

        def line_for(func: str, last: str) -> int | None:
            for f, args, line in lines:
                if f == func and args and args[-1] == last:
                    return line
            return None

        def ref(*args: str, **kwargs: object) -> Relation:
            name = str(kwargs.get("name") or args[-1]) if (args or kwargs) else ""
            target = self.mp.models.get(name) or self.mp.seeds.get(name) or self.mp.snapshots.get(name)
            if target is None:
                close = _closest(name, [*self.mp.models, *self.mp.seeds, *self.mp.snapshots])
                raise RenderError(f"ref({name!r}) names no model or seed", line_for("ref", name),
                                  f"did you mean {close!r}?" if close else "check the name")
            depends_on.add(target.uid)
            ref_lines.setdefault(target.uid, line_for("ref", name) or 0)
            return Relation(target.schema, target.name, "__placeholder__")

        def source(source_name: str, table_name: str) -> Relation:
            src = self.mp.sources.get((source_name, table_name))
            if src is None:
                known = [f"{a}.{b}" for a, b in self.mp.sources]
                close = _closest(f"{source_name}.{table_name}", known)
                raise RenderError(f"source({source_name!r}, {table_name!r}) is not declared",
                                  line_for("source", table_name),
                                  f"did you mean {close!r}?" if close else
                                  "declare it under sources: in a models/*.yml file")
            depends_on.add(src.uid)
            ref_lines.setdefault(src.uid, line_for("source", table_name) or 0)
            return Relation(src.schema, src.identifier, "__placeholder__")

        return ref, source

    def _parse_generic(self, test: DataTest) -> None:
        """A custom generic test: the call of its ``test_<name>`` macro, then parsed as a singular test."""
        from ._generic import call_text, resolve_macro

        kind = str(test.kwargs.get("_macro"))
        callee = resolve_macro(self.renderer, kind)
        if callee is None:
            ns, _, bare = kind.rpartition(".")
            where = f"the {ns} package" if ns else "a package"
            self.problems.append(Problem(test.file, test.line, f"unknown test {kind!r}: no {{% test {bare} %}} macro "
                                         f"in macros/, tests/generic/ or {where}",
                                         "check the name, or install the package that defines it"))
            return
        for attr in ("_enabled", "severity", "where"):  # config values may be Jinja ("{{ 'warn' if ... }}")
            raw = test.kwargs.get(attr) if attr == "_enabled" else getattr(test, attr)
            if isinstance(raw, str) and "{{" in raw:
                ref, source = self._resolvers(raw, set(), {})
                try:
                    value, _ = self.renderer.render(test.file, raw, RenderContext(ref, source, None, False,
                                                                                  execute=False))
                except RenderError as exc:
                    self.problems.append(Problem(test.file, test.line, f"{attr}: {exc}", exc.hint))
                    return
                if attr == "_enabled":
                    if value.strip().lower() in ("false", "0", "no", "none", ""):
                        return  # disabled: not a node (dropped with the tests that did not parse)
                    continue
                setattr(test, attr, value.strip().lower() if attr == "severity" else value.strip())
        if test.severity not in ("error", "warn"):
            self.problems.append(Problem(test.file, test.line, f"severity must be error or warn, not "
                                         f"{test.severity!r}"))
            return
        group, _, rest = test.attached.partition(".")
        args = ", ".join(json.dumps(p) for p in rest.split(".", 1))
        target = f"source({args})" if group == "source" else f"ref({json.dumps(rest)})"
        test.raw_sql = call_text(test, callee, target)
        self._parse_singular(test)

    def _parse_singular(self, test: DataTest) -> None:
        """A singular test: its refs and sources, and the config() it sets (severity, enabled, tags)."""
        found = self.renderer.check(test.file, test.raw_sql)
        if test.test == "generic":
            found = [dataclasses.replace(p, line=test.line) for p in found]
        if found:
            self.problems.extend(found)
            return
        ref_lines: dict[str, int] = {}
        ref, source = self._resolvers(test.raw_sql, test.depends_on, ref_lines)
        try:
            _, captured = self.renderer.render(test.file, test.raw_sql, RenderContext(ref, source, None, False,
                                                                                          execute=False))
        except RenderError as exc:  # a generic test's error is at its schema file's line
            line = test.line if test.test == "generic" else exc.line
            self.problems.append(Problem(test.file, line, str(exc), exc.hint))
            return
        severity = str(captured.get("severity", test.severity)).lower()
        if severity not in ("error", "warn"):
            self.problems.append(Problem(test.file, None, f"severity must be error or warn, not {severity!r}"))
        test.severity = severity
        for key in ("fail_calc", "warn_if", "error_if"):
            if captured.get(key):
                setattr(test, key, str(captured[key]))
        test.tags = [*test.tags, *as_list(captured.get("tags"))]
        from .project import apply_test_config

        apply_test_config(test, captured)
        if captured.get("where"):
            test.where = str(captured["where"])
        if captured.get("enabled") is False:  # {{ config(enabled=false) }}: not a node, as in dbt
            return
        self.parents[test.uid] = set(test.depends_on)

    def _parse_test(self, test: DataTest) -> None:
        if test.test == "generic":
            self._parse_generic(test)
            return
        if test.test == "singular":
            self._parse_singular(test)
            return
        if test.test == "unit":  # it reads what its model reads (and the model waits for it in a build)
            from .unit_tests import parse_problems

            found = parse_problems(self, test)
            if found:
                self.problems.extend(found)
                return
            self.parents[test.uid] = set(self.parents.get(test.attached, set()))
            return
        to = test.kwargs.get("_to_uid")
        if isinstance(to, str) and to.startswith("ref:"):
            name = to[4:]
            target = self.mp.models.get(name) or self.mp.seeds.get(name) or self.mp.snapshots.get(name)
            if target is None:
                self.problems.append(Problem(test.file, test.line, f"relationships test refers to ref({name!r}), "
                                             "which names no model or seed", "check the name"))
                return
            test.kwargs["_to_uid"] = target.uid
        elif isinstance(to, str) and to.startswith("source.") and tuple(to.split(".")[1:3]) not in self.mp.sources:
            self.problems.append(Problem(test.file, test.line, f"relationships test refers to an undeclared {to}"))
            return
        if isinstance(to_uid := test.kwargs.get("_to_uid"), str):
            test.depends_on.add(to_uid)
        self.parents[test.uid] = set(test.depends_on)

    def _toposort(self) -> list[str]:
        children: dict[str, set[str]] = {uid: set() for uid in self.parents}
        indegree = {uid: 0 for uid in self.parents}
        for uid, parents in self.parents.items():
            for p in parents:
                if p in children:
                    children[p].add(uid)
                    indegree[uid] += 1
        ready = sorted(uid for uid, d in indegree.items() if d == 0)
        order: list[str] = []
        while ready:
            uid = ready.pop(0)
            order.append(uid)
            for child in sorted(children[uid]):
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if len(order) < len(self.parents):
            cycle = self._find_cycle({u for u, d in indegree.items() if d > 0})
            first = self.mp.models[cycle[0].split(".", 1)[1]]
            line = first.ref_lines.get(cycle[1]) or None
            path = " -> ".join(u.split(".", 1)[1] for u in cycle)
            self.problems.append(Problem(first.file, line, f"models form a cycle: {path}",
                                         "remove one of these refs"))
            order.extend(sorted(u for u in self.parents if u not in order))
        self.children = children
        return order

    def _find_cycle(self, nodes: set[str]) -> list[str]:
        start = sorted(u for u in nodes if u.startswith("model."))[0]
        path = [start]
        seen = {start: 0}
        current = start
        while True:
            nxt = sorted(p for p in self.parents[current] if p in nodes)[0]
            if nxt in seen:
                cycle = [*path[seen[nxt]:], nxt]
                return cycle
            seen[nxt] = len(path)
            path.append(nxt)
            current = nxt

    # -- compile -----------------------------------------------------------------------------
    def sql(self, model: Model | Snapshot, is_incremental: bool = False, dialect: str | None = None,
            batch: Batch | None = None) -> str:
        """The model's SELECT, with ephemeral models injected as CTEs, in the engine's dialect. With a
        microbatch ``batch``, refs and sources that have an ``event_time`` read only the batch's window."""
        key = (model.uid, is_incremental, dialect or self.target.dialect, batch)
        cached = self._sql_cache.get(key)
        if cached is None:
            self._local.touched = False
            cached = self._compile(model, is_incremental, dialect, batch)
            if not self._local.touched:
                self._sql_cache[key] = cached
        return cached

    def _compile(self, model: Model | Snapshot, is_incremental: bool, dialect: str | None,
                 batch: Batch | None = None) -> str:
        ephemerals: dict[str, str] = {}
        body = self._render(model, is_incremental, ephemerals, batch)
        if ephemerals:
            body = _inject_ctes(body, ephemerals)
        from ..warehouse.sql import transpile

        return transpile(body, self.target.source_dialect, dialect or self.target.dialect)

    def _render(self, model: Model | Snapshot, is_incremental: bool, ephemerals: dict[str, str],
                batch: Batch | None = None) -> str:
        ref, source = self._compile_resolvers(ephemerals, batch)
        schema, ident = self.node_relation(model)
        this = Relation(schema, ident, self.rel_text(schema, ident))
        sql, _ = self.renderer.render(model.file, model.raw_sql,
                                      RenderContext(ref, source, this, is_incremental, dict(model.config),
                                                    query=self._query_fn(),
                                                    model=lambda: self._model_context(model, batch)))
        return sql.strip().rstrip(";").strip()

    def _model_context(self, node: Model | Snapshot, batch: Batch | None) -> dict[str, object]:
        """dbt's ``model`` for a node compiled to run: its ``graph.nodes`` entry, and ``batch``."""
        from .artifacts import dbt_uid

        nodes = self.graph()["nodes"]
        found = nodes.get(dbt_uid(self, node.uid)) if isinstance(nodes, dict) else None
        out = dict(found) if isinstance(found, dict) else {"name": node.name, "config": node.config}
        out["batch"] = batch.context() if batch is not None else None
        return out

    def render_hook(self, node: Model | Seed | Snapshot | None, sql: str, file: str,
                    extra: dict[str, object] | None = None) -> str:
        """A hook's SQL (pre/post-hook of ``node``, or on-run-start/end when None), rendered when it runs."""
        ref, source = self._compile_resolvers({})
        this = None
        config: dict[str, object] = {}
        if node is not None:
            schema, ident = self.node_relation(node)
            this, config = Relation(schema, ident, self.rel_text(schema, ident)), dict(node.config)
        out, _ = self.renderer.render(file, sql, RenderContext(ref, source, this, False, config,
                                                               query=self._query_fn(), extra=extra or {}))
        return out.strip().rstrip(";").strip()

    def _compile_resolvers(self, ephemerals: dict[str, str], batch: Batch | None = None) \
            -> tuple[Callable[..., Relation], Callable[..., Relation]]:
        """``ref`` and ``source`` for compiling: relation names, ephemeral models collected as CTEs; in a
        microbatch ``batch``, a node with an ``event_time`` config is read through the batch's window."""
        def windowed(rel: Relation, event_time: object) -> Relation:
            if batch is None or not event_time:
                return rel
            return Relation(rel.schema, rel.identifier, batch.filtered(rel.text, str(event_time)), rel.database)

        def ref(*args: str, **kwargs: object) -> Relation:
            return windowed(plain_ref(*args, **kwargs), _node_event_time(self, *args, **kwargs))

        def plain_ref(*args: str, **kwargs: object) -> Relation:
            name = str(kwargs.get("name") or args[-1])
            target = self.mp.models.get(name) or self.mp.seeds.get(name) or self.mp.snapshots.get(name)
            if target is None:
                raise RenderError(f"ref({name!r}) names no model or seed")
            if isinstance(target, Model) and target.materialized == "ephemeral":
                cte = f"__dbt__cte__{target.name}"
                if cte not in ephemerals:
                    ephemerals[cte] = ""  # reserve the slot (cycles were rejected at parse)
                    inner: dict[str, str] = {}
                    text = self._render(target, False, inner)
                    for key, value in inner.items():
                        ephemerals.setdefault(key, value)
                    ephemerals.pop(cte, None)
                    ephemerals[cte] = text
                return Relation(target.schema, target.name, cte)
            schema, ident = self.node_relation(target)
            return Relation(schema, ident, self.rel_text(schema, ident))

        def source(source_name: str, table_name: str) -> Relation:
            src = self.mp.sources[(source_name, table_name)]
            return windowed(Relation(src.schema, src.identifier,
                                     src.external or self.rel_text(src.schema, src.identifier)), src.event_time)

        return ref, source

    def source_line(self, raw_sql: str, message: str) -> int | None:
        """The line of the user's source that a database error's ``LINE n: <text>`` points at.

        The engine counts lines of the statement it ran (CREATE ... AS, rendered Jinja), not of the
        model file, so the line is found by its text; the nearest match to n when the text repeats."""
        import re

        match = re.search(r"LINE (\d+): ?(.*)", message)
        if not match:
            return None
        reported, snippet = int(match.group(1)), match.group(2).strip().strip(".").strip()
        if not snippet:
            return None
        lines = raw_sql.splitlines()
        found = [i for i, ln in enumerate(lines, 1) if snippet in ln.strip() or (ln.strip() and ln.strip() in snippet
                                                                                 and len(ln.strip()) > 8)]
        return min(found, key=lambda i: abs(i - reported)) if found else None

    # -- tests -------------------------------------------------------------------------------
    def test_sql(self, test: DataTest, dialect: str | None = None) -> str:
        """A query returning the failing rows, as dbt's built-in tests write it."""
        d = self.target.source_dialect
        if test.test in ("singular", "generic"):
            from ..warehouse.sql import transpile

            ephemerals: dict[str, str] = {}
            sql, _ = self.renderer.render(test.file, test.raw_sql,
                                          RenderContext(*self._compile_resolvers(ephemerals), None, False,
                                                        query=self._query_fn()))
            sql = sql.strip().rstrip(";").strip()
            return transpile(_inject_ctes(sql, ephemerals) if ephemerals else sql, d, dialect or self.target.dialect)
        model_rel = self._uid_rel(test.attached)
        # a column name is quoted; an expression (column_name: "a || '-' || b") is used as written, as dbt does
        q = _q(test.column, d) if _IDENT.fullmatch(test.column) else f"({test.column})"
        if test.where:
            model_rel = f"(select * from {model_rel} where {test.where}) dbt_subquery"
        if test.test == "not_null":  # with store_failures dbt keeps the whole failing rows
            sql = f"select {'*' if test.stores_failures else q}\nfrom {model_rel}\nwhere {q} is null"
        elif test.test == "unique":
            sql = (f"select {q} as unique_field, count(*) as n_records\nfrom {model_rel}\nwhere {q} is not null\n"
                   f"group by {q}\nhaving count(*) > 1")
        elif test.test == "accepted_values":
            quote = test.kwargs.get("quote", True)
            values = ", ".join(literal(str(v), d) if quote else str(v) for v in as_list(test.kwargs["values"]))
            sql = (f"with all_values as (\n  select {q} as value_field, count(*) as n_records\n  from {model_rel}\n"
                   f"  group by {q}\n)\nselect *\nfrom all_values\nwhere value_field not in ({values})")
        else:
            parent = self._uid_rel(str(test.kwargs["_to_uid"]))
            field_ = _q(str(test.kwargs["field"]), d)
            sql = (f"with child as (\n  select {q} as from_field\n  from {model_rel}\n  where {q} is not null\n),\n"
                   f"parent as (\n  select {field_} as to_field\n  from {parent}\n)\n"
                   "select from_field\nfrom child\nleft join parent on child.from_field = parent.to_field\n"
                   "where parent.to_field is null")
        from ..warehouse.sql import transpile

        return transpile(sql, d, dialect or self.target.dialect)

    def _uid_rel(self, uid: str) -> str:
        kind, _, rest = uid.partition(".")
        if kind == "model":
            model = self.mp.models[rest]
            if model.materialized == "ephemeral":
                return f"({self.sql(model, dialect=self.target.source_dialect)}) as __eph"
            return self.rel_text(*self.node_relation(model))
        if kind == "seed":
            return self.rel_text(*self.node_relation(self.mp.seeds[rest]))
        if kind == "snapshot":
            return self.rel_text(*self.node_relation(self.mp.snapshots[rest]))
        src_name, _, table = rest.partition(".")
        src = self.mp.sources[(src_name, table)]
        return src.external or self.rel_text(src.schema, src.identifier)


class _OnThread(threading.local):
    """What this thread compiles against: ``Compiler.using``'s warehouse, and whether the SQL asked it."""

    using = False
    wh: Warehouse | None = None
    touched = False


def _node_event_time(compiler: Compiler, *args: str, **kwargs: object) -> object:
    """The ``event_time`` config of the model, seed or snapshot a ``ref(...)`` names (None: not filtered)."""
    name = str(kwargs.get("name") or args[-1])
    mp = compiler.mp
    target = mp.models.get(name) or mp.seeds.get(name) or mp.snapshots.get(name)
    return target.config.get("event_time") if target is not None else None


def _no_ref(*args: object, **kwargs: object) -> NoReturn:
    raise RenderError("ref() and source() cannot be used here")


def _q(name: str, dialect: str) -> str:
    from ..warehouse.sql import quote

    return quote(name, dialect)


def _inject_ctes(sql: str, ctes: dict[str, str]) -> str:
    """Put ephemeral models in front as CTEs, joining an existing WITH (as dbt does)."""
    import sqlglot
    from sqlglot.tokens import TokenType  # type: ignore[attr-defined]

    defs = ",\n".join(f"{name} as (\n{body}\n)" for name, body in ctes.items())
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except Exception:
        tokens = []
    if tokens and tokens[0].token_type == TokenType.WITH:
        start, end = tokens[0].start, tokens[0].end + 1
        rest = sql[end:]
        recursive = rest.lstrip().lower().startswith("recursive")
        if recursive:
            return f"{sql[:end]} {defs},\n{rest.lstrip()[len('recursive'):]}".replace("with ", "with recursive ", 1)
        return f"{sql[:start]}with {defs},\n{rest.lstrip()}"
    return f"with {defs}\n{sql}"


def _closest(name: str, options: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return found[0] if found else None


class _Parsed(TypedDict):
    """What parsing a model found, as the parse cache keeps it."""

    captured: dict[str, object]
    depends_on: list[str]
    ref_lines: dict[str, int]


class _ParseCache:
    """What parsing each model found (config(), refs, sources), by content, in state/model_parse.json.

    Like dbt's partial parsing: running one model in a 500-model project renders only what it runs.
    The key covers the model's text, its folder config, the project's vars, macros and node names, and
    the environment when the model reads ``env_var``.
    """

    def __init__(self, compiler: Compiler) -> None:
        import hashlib
        import json

        mp = compiler.mp
        self.path = mp.display_root / "state" / "model_parse.json"
        names = sorted([*mp.models, *(f"seed:{s}" for s in mp.seeds), *(f"{a}.{b}" for a, b in mp.sources)])
        macros = [text for _, text in compiler.renderer.macro_sources]
        macros += [text for pkg in compiler.renderer.packages for _, text in pkg.files]
        base = json.dumps([compiler.renderer.vars, macros, names, compiler.target.schema], sort_keys=True,
                          default=str)
        self.base = hashlib.sha256(base.encode()).hexdigest()
        self.env = hashlib.sha256(json.dumps(sorted(compiler.renderer.env.items())).encode()).hexdigest()
        self.uses_env = any("env_var" in m for m in macros)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        models = data.get("models") if isinstance(data, dict) and data.get("base") == self.base else None
        self.models: dict[str, object] = models if isinstance(models, dict) else {}
        self.dirty = False

    def key(self, model: Model) -> str:
        import hashlib
        import json

        env = self.env if (self.uses_env or "env_var" in model.raw_sql) else ""
        text = json.dumps([model.raw_sql, model.config, env], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, name: str, key: str) -> _Parsed | None:
        entry = self.models.get(name)
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        parsed = entry["parsed"]
        return _Parsed(captured=dict(parsed["captured"]), depends_on=list(parsed["depends_on"]),
                       ref_lines=dict(parsed["ref_lines"]))

    def put(self, model: Model, key: str) -> None:
        parsed = _Parsed(captured=model.captured, depends_on=sorted(model.depends_on), ref_lines=model.ref_lines)
        self.models[model.name] = {"key": key, "parsed": parsed}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        import json

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"base": self.base, "models": self.models}))
        except OSError:
            pass
