"""Run a selection of the DAG: seeds, models (view, table, incremental, ephemeral) and data tests.

Independent nodes run in parallel on their own warehouse sessions when the engine gains from it;
a node runs once all its selected parents succeeded, and is skipped when one failed.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._halt import Halt
from ..errors import OpsloopError
from ..narrow import as_int, mapping
from ..warehouse import Warehouse
from ..warehouse.sql import Statements
from ._config import as_list
from ._seeds import engine_type, seed_table
from .compiler import Compiler
from .nodes import DataTest, Model, Seed, Snapshot

if TYPE_CHECKING:
    from .microbatch import Batch


@dataclass
class NodeResult:
    """What happened to one node: shown in the summary table and returned by the Python API."""

    uid: str
    name: str
    kind: str
    materialization: str
    relation: str
    status: str
    """success | error | skipped | pass | fail | warn"""
    rows: int | None = None
    changed_rows: int | None = None
    seconds: float = 0.0
    message: str = ""
    failing_rows: dict[str, object] | None = None
    """A failing test's first rows (``columns``, ``rows``) with ``--show-failures``."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ModelRunError(OpsloopError):
    """A model failed in the warehouse; the message names the model file."""


class Runner:
    def __init__(self, compiler: Compiler, warehouse: Warehouse, full_refresh: bool = False,
                 threads: int | None = None, on_result: Callable[[NodeResult], None] | None = None,
                 on_start: Callable[[str], None] | None = None, halt: Halt | None = None) -> None:
        self.c = compiler
        self.halt = halt
        self.wh = warehouse
        self.full_refresh = full_refresh
        self.threads = max(1, threads or compiler.target.threads) if warehouse.PARALLEL_SESSIONS else 1
        self.on_result = on_result
        self.on_start = on_start
        self._existing: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._schemas: set[str] = set()
        self.show_failures = 0
        """``--show-failures``: keep up to this many failing rows of each failing test (0: none)."""
        self.event_time_start: datetime | None = None
        self.event_time_end: datetime | None = None
        """``--event-time-start`` / ``--event-time-end``: the range microbatch models rebuild (a backfill)."""
        self.started_at = datetime.now(UTC)
        """'now' for microbatch models: the end of their last batch (dbt's invocation time)."""

    # -- orchestration -----------------------------------------------------------------------
    def run(self, selected: list[str]) -> list[NodeResult]:
        """Run ``selected`` uids (in any order) respecting the DAG; returns results in completion order."""
        self._existing = self.wh.relations()
        chosen = set(selected)
        # ephemeral models are compiled into their children: their parents become the children's parents
        parents = {uid: {p for p in self._through_ephemeral(uid) if p in chosen} for uid in chosen}
        units = {uid for uid in chosen if uid.startswith("test.")
                 and getattr(self.c.mp.tests.get(uid[5:]), "test", None) == "unit"}
        _gate_on_tests(parents, units)
        for uid in units:  # a model waits for its unit tests (a failing one skips it), as in dbt's build
            test = self.c.mp.tests[uid[5:]]
            if test.attached in chosen:
                parents[test.attached].add(uid)
        results: list[NodeResult] = []
        state: dict[str, str] = {}
        children: dict[str, list[str]] = {uid: [] for uid in chosen}
        waiting = {uid: len(ps) for uid, ps in parents.items()}
        for uid, ps in parents.items():
            for p in ps:
                children[p].append(uid)
        order = {uid: i for i, uid in enumerate(self.c.order)}
        ready = sorted((u for u, n in waiting.items() if n == 0), key=lambda u: order.get(u, 0), reverse=True)
        # With a halt, even one thread gets its own session: a stop interrupts the build's statement only.
        own = self.threads > 1 or (self.halt is not None and self.wh.PARALLEL_SESSIONS)
        sessions = [self.wh.session() for _ in range(self.threads)] if own else [self.wh]
        free = list(sessions)
        if self.wh.dialect == "duckdb" and any(src.external for src in self.c.mp.sources.values()):
            from ..warehouse.sql import literal

            for s in sessions:  # read_csv('data/x.csv') in an external_location: the dbt project's data/
                s.execute(f"SET file_search_path = {literal(str(self.c.mp.root), 'duckdb')}")
        watching = contextlib.ExitStack()
        if self.halt is not None and self.wh.dialect == "duckdb":
            for s in sessions:
                watching.enter_context(self.halt.watching(getattr(s, "con", None)))
        running: dict[Future[NodeResult], tuple[str, Warehouse]] = {}

        def finished(uid: str, status: str) -> None:
            state[uid] = status
            for child in children[uid]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
            ready.sort(key=lambda u: order.get(u, 0), reverse=True)

        try:
            with watching, ThreadPoolExecutor(max_workers=self.threads) as pool:
                while ready or running:
                    while ready and free:
                        if self.halt is not None:
                            self.halt.check("the model build")  # a safe point: between nodes
                        uid = ready.pop()
                        bad = [p for p in parents[uid] if state[p] in ("error", "fail", "skipped")]
                        if bad:
                            res = self._skipped(uid, bad[0])
                            self._emit(res, results)
                            finished(uid, "skipped")
                            continue
                        session = free.pop()
                        if self.on_start:
                            self.on_start(uid)
                        running[pool.submit(self._run_node, uid, session)] = (uid, session)
                    if not running:
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        uid, session = running.pop(fut)
                        free.append(session)
                        res = fut.result()
                        if self.halt is not None and self.halt.tripped and res.status == "error":
                            continue  # interrupted by the stop, not the model's fault: redone at the next start
                        self._emit(res, results)
                        finished(uid, res.status)
            if self.halt is not None:
                self.halt.check("the model build")
        finally:
            for s in sessions:
                if s is not self.wh:
                    self.wh.release(s)
        return results

    def _through_ephemeral(self, uid: str) -> set[str]:
        out: set[str] = set()
        for parent in self.c.parents.get(uid, set()):
            if parent.startswith("model.") and self.c.mp.models[parent[6:]].materialized == "ephemeral":
                out |= self._through_ephemeral(parent)
            else:
                out.add(parent)
        return out

    def _emit(self, res: NodeResult, results: list[NodeResult]) -> None:
        results.append(res)
        if self.on_result:
            self.on_result(res)

    def _skipped(self, uid: str, because: str) -> NodeResult:
        kind, _, name = uid.partition(".")
        return NodeResult(uid, name, kind, self._mat(uid), "", "skipped",
                          message=f"skipped because {because.split('.', 1)[1]} did not succeed")

    def _mat(self, uid: str) -> str:
        kind, _, name = uid.partition(".")
        if kind == "model":
            return self.c.mp.models[name].materialized
        if kind == "test" and self.c.mp.tests[name].test == "unit":
            return "unit_test"
        return kind

    def _run_node(self, uid: str, wh: Warehouse) -> NodeResult:
        kind, _, name = uid.partition(".")
        started = time.perf_counter()
        try:
            with self.c.using(wh):
                res = self._dispatch(kind, name, uid, wh)
        except Exception as exc:
            where = ""
            if kind == "model":
                model = self.c.mp.models[name]
                line = getattr(exc, "line", None) or self.c.source_line(model.raw_sql, str(exc))
                where = f"{model.file}:{line}: " if line else f"{model.file}: "
            elif kind == "seed":
                where = f"{self.c.mp.seeds[name].file}: "
            elif kind == "snapshot":
                snap = self.c.mp.snapshots[name]
                line = getattr(exc, "line", None) or self.c.source_line(snap.raw_sql, str(exc)) or snap.line
                where = f"{snap.file}:{line}: " if line else f"{snap.file}: "
            elif kind == "test":
                t = self.c.mp.tests[name]
                line = t.line or self.c.source_line(t.raw_sql, str(exc))
                where = f"{t.file}:{line}: " if line else f"{t.file}: "
            res = NodeResult(uid, name, kind, self._mat(uid), "", "error", message=f"{where}{_short(exc)}")
        res.seconds = time.perf_counter() - started
        return res

    def _dispatch(self, kind: str, name: str, uid: str, wh: Warehouse) -> NodeResult:
        if kind == "test":
            return self._test(self.c.mp.tests[name], wh)
        node: Model | Seed | Snapshot
        if kind == "model":
            node = self.c.mp.models[name]
        elif kind == "seed":
            node = self.c.mp.seeds[name]
        elif kind == "snapshot":
            node = self.c.mp.snapshots[name]
        else:
            return NodeResult(uid, name, kind, kind, self.c.relation_of(uid), "success")
        self._hooks(node, "pre_hook", wh)
        if isinstance(node, Model):
            res = self._model(node, wh)
        elif isinstance(node, Seed):
            res = self._seed(node, wh)
        else:
            res = self._snapshot(node, wh)
        self._hooks(node, "post_hook", wh)
        return res

    def _hooks(self, node: Model | Seed | Snapshot, key: str, wh: Warehouse) -> None:
        """The node's pre- or post-hooks (the project's, then the folder's, then its own), on its session."""
        from .project import hook_list

        if getattr(node, "materialized", "") == "ephemeral":
            return
        for i, sql in enumerate(hook_list(node.config.get(key)), 1):
            text = self.c.render_hook(node, sql, node.file)
            if not text:
                continue
            try:
                wh.execute(text)
            except Exception as exc:
                raise ModelRunError(f"{key.replace('_', '-')} {i} failed: {_short(exc)}") from exc

    def run_operations(self, which: str, hooks: list[str], done: list[NodeResult] | None = None) -> list[NodeResult]:
        """on-run-start / on-run-end: each statement of dbt_project.yml, in order; stops at the first error.
        on-run-end sees ``schemas`` (where the build wrote) and ``results`` (one per node, as dbt's)."""
        out: list[NodeResult] = []
        project = self.c.mp.name
        extra: dict[str, object] = {}
        if done is not None:
            built = [r for r in done if r.kind in ("model", "seed", "snapshot") and r.relation]
            schemas = sorted({r.relation.rsplit(".", 1)[0] for r in built})
            extra["schemas"] = schemas
            extra["database_schemas"] = [(None, s) for s in schemas]
            extra["results"] = [_HookResult(r, self.c.mp.name) for r in done if r.kind != "operation"]
        for i, sql in enumerate(hooks):
            name = f"{project}-{which}-{i}"
            res = NodeResult(f"operation.{name}", name, "operation", "hook", "", "success")
            started = time.perf_counter()
            try:
                with self.c.using(self.wh):
                    text = self.c.render_hook(None, sql, "dbt_project.yml", extra)
                    if text:
                        self.wh.execute(text)
            except Exception as exc:
                res.status, res.message = "error", f"dbt_project.yml: {which} hook {i + 1} failed: {_short(exc)}"
            res.seconds = time.perf_counter() - started
            self._emit(res, out)
            if res.status == "error":
                break
        return out

    def _ensure_schema(self, wh: Warehouse, schema: str) -> None:
        with self._lock:  # held while creating it: a second model in the schema waits until it exists
            if schema in self._schemas:
                return
            if not any(s == schema.lower() for s, _ in self._existing):
                wh.ensure_schema(schema)
            self._schemas.add(schema)

    # -- models ------------------------------------------------------------------------------
    def _model(self, model: Model, wh: Warehouse) -> NodeResult:
        mat = model.materialized
        schema, ident = self.c.node_relation(model)
        d = wh.dialect
        st = Statements(wh)
        target = st.rel(schema, ident)
        res = NodeResult(model.uid, model.name, "model", mat, f"{schema}.{ident}", "success")
        if mat == "ephemeral":
            return res
        self._ensure_schema(wh, schema)
        header = model.config.get("sql_header")
        if header:  # dbt-duckdb runs it with the statement that builds the model, on the same connection
            text = self.c.render_hook(model, str(header), model.file)
            if text:
                try:
                    wh.execute(text)
                except Exception as exc:
                    raise ModelRunError(f"sql_header failed: {_short(exc)}") from exc
        existing = self._existing.get((schema.lower(), ident.lower()))
        if mat == "view":
            if existing == "table":
                wh.execute(st.drop(target, "table"))
            for stmt in st.create_view(target, self.c.sql(model, dialect=d)):
                wh.execute(stmt)
            res.rows, res.changed_rows = None, 0
            self._set_existing(schema, ident, "view")
            return res
        if model.language == "python":
            from .python_models import build as build_python

            full = self.full_refresh and model.config.get("full_refresh") is not False
            if mat == "incremental" and existing == "table" and not full:  # dbt.is_incremental is True
                return self._incremental(model, wh, st, target, schema, ident, res,
                                         fill=lambda tmp: build_python(self.c, model, wh, tmp, this=target,
                                                                       is_incremental=True))
            if existing == "view":
                wh.execute(st.drop(target, "view"))
            build_python(self.c, model, wh, target)
            res.rows = res.changed_rows = as_int(wh.query(st.count(target)).rows[0][0])
            self._set_existing(schema, ident, "table")
            return res
        if mat == "external":
            return self._external(model, wh, st, target, existing, res)
        full = self.full_refresh and model.config.get("full_refresh") is not False
        if mat == "incremental" and model.config.get("incremental_strategy") == "microbatch":
            return self._microbatch(model, wh, st, target, schema, ident, res, existing == "table" and not full)
        if mat == "incremental" and existing == "table" and not full:
            return self._incremental(model, wh, st, target, schema, ident, res)
        if existing == "view":
            wh.execute(st.drop(target, "view"))
        body = self.c.sql(model, is_incremental=False, dialect=d)
        count = None
        for stmt in st.create_table(target, body, replace=existing == "table"):
            count = wh.execute_count(stmt)
        if count is None:
            count = as_int(wh.query(st.count(target)).rows[0][0])
        res.rows = res.changed_rows = count
        self._set_existing(schema, ident, "table")
        return res

    def _external(self, model: Model, wh: Warehouse, st: Statements, target: str, existing: str | None,
                  res: NodeResult) -> NodeResult:
        """dbt-duckdb's ``external``: the rows written to a parquet/csv/json file (``location``, default
        ``./<name>.<format>``), and the model a view over the file. A relative location is the dbt project's."""
        from pathlib import Path

        from ..warehouse.sql import literal

        if wh.dialect != "duckdb":
            raise ModelRunError(f"materialized='external' runs on DuckDB only (this warehouse is {wh.dialect})")
        location = str(model.config.get("location") or "")
        fmt = str(model.config.get("format") or (Path(location).suffix.lstrip(".") if location else "") or "parquet")
        fmt = fmt.lower()
        if fmt not in ("parquet", "csv", "json"):
            raise ModelRunError(f"external format {fmt!r} is not supported; use parquet, csv or json")
        path = Path(location or f"{model.alias or model.name}.{fmt}")
        if not path.is_absolute() and "://" not in str(path):
            path = self.c.mp.root / path
        if "://" not in str(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        where = literal(str(path), "duckdb")
        options = {"parquet": "FORMAT PARQUET", "csv": "FORMAT CSV, HEADER", "json": "FORMAT JSON"}[fmt]
        wh.execute(f"COPY (\n{self.c.sql(model, dialect=wh.dialect)}\n) TO {where} ({options})")
        if existing == "table":
            wh.execute(st.drop(target, "table"))
        reader = {"parquet": f"read_parquet({where})", "csv": f"read_csv({where}, auto_detect = true)",
                  "json": f"read_json_auto({where})"}[fmt]
        for stmt in st.create_view(target, f"select * from {reader}"):
            wh.execute(stmt)
        schema, _, ident = res.relation.partition(".")
        self._set_existing(schema, ident, "view")
        res.rows = res.changed_rows = as_int(wh.query(st.count(target)).rows[0][0])
        return res

    def _set_existing(self, schema: str, ident: str, kind: str) -> None:
        with self._lock:
            self._existing[(schema.lower(), ident.lower())] = kind

    def _microbatch(self, model: Model, wh: Warehouse, st: Statements, target: str, schema: str, ident: str,
                    res: NodeResult, incremental: bool) -> NodeResult:
        """dbt's microbatch: the batches of microbatch.py. Without the table (or with --full-refresh) the first
        batch creates it; each later one replaces its window in one transaction (delete and insert: a reader
        never sees the window empty). As in dbt, the first and the last batch run alone, and the ones between
        run at once on up to ``threads`` sessions when the engine gains from it and the model allows it
        (``concurrent_batches`` true, or unset and the model does not read ``this``). A failed batch is
        reported and the others still run (all of them skipped when the first one fails)."""
        from .microbatch import plan

        batches = plan(model.config, incremental, self.started_at, self.event_time_start, self.event_time_end)
        event_time = str(model.config["event_time"])
        failed: dict[int, str] = {}
        changed: dict[int, int] = {}
        key = (schema.lower(), ident.lower())

        def one(i: int, batch: Batch, on: Warehouse) -> None:
            nonlocal incremental  # the first batch creates the table; the others replace their window in it
            try:
                if not incremental:
                    if self._existing.get(key) == "view":
                        on.execute(st.drop(target, "view"))
                    for stmt in st.create_table(target, self.c.sql(model, dialect=on.dialect, batch=batch),
                                                replace=self._existing.get(key) == "table"):
                        on.execute(stmt)
                    self._set_existing(schema, ident, "table")
                    changed[i] = as_int(on.query(st.count(target)).rows[0][0])
                    incremental = True
                else:
                    part = NodeResult(res.uid, res.name, res.kind, res.materialization, res.relation, res.status)
                    self._incremental(model, on, st, target, schema, ident, part, batch=(batch, event_time),
                                      tmp_suffix=f"_{i}" if 0 < i < len(batches) - 1 else "")
                    changed[i] = part.changed_rows or 0
            except Exception as exc:
                line = getattr(exc, "line", None) or self.c.source_line(model.raw_sql, str(exc))
                failed[i] = f"batch {batch.label} failed: {f'line {line}: ' if line else ''}{_short(exc)}"

        one(0, batches[0], wh)
        middle = list(range(1, len(batches) - 1))
        at_once = self._concurrent_batches(model, len(middle)) if 0 not in failed else 1
        if 0 in failed:
            for i in range(1, len(batches)):
                failed[i] = f"batch {batches[i].label} skipped"
        elif at_once > 1:
            sessions: queue.SimpleQueue[Warehouse] = queue.SimpleQueue()
            opened = [self.wh.session() for _ in range(at_once)]
            for s_ in opened:
                sessions.put(s_)

            def on_a_session(i: int) -> None:
                session = sessions.get()
                try:
                    one(i, batches[i], session)
                finally:
                    sessions.put(session)

            try:
                with ThreadPoolExecutor(max_workers=at_once) as pool:
                    list(pool.map(on_a_session, middle))
            finally:
                for s_ in opened:
                    self.wh.release(s_)
        else:
            for i in middle:
                one(i, batches[i], wh)
        if len(batches) > 1 and 0 not in failed:
            one(len(batches) - 1, batches[-1], wh)
        res.changed_rows = sum(changed.values())
        if self._existing.get(key) == "table":
            res.rows = as_int(wh.query(st.count(target)).rows[0][0])
        if failed:
            ok = len(batches) - len(failed)
            summary = "; ".join(failed[i] for i in sorted(failed))
            if ok:
                raise ModelRunError(f"partial success ({ok}/{len(batches)} batches): {summary}")
            raise ModelRunError(f"every batch failed ({len(batches)}): {summary}")
        res.message = f"{len(batches)} batch(es) from {batches[0].label}"
        if at_once > 1:
            res.message += f", {len(middle)} of them {at_once} at a time"
        return res

    def _concurrent_batches(self, model: Model, middle: int) -> int:
        """How many of a microbatch model's middle batches run at once (1: in order), as dbt decides: the
        model's ``concurrent_batches`` config, else at once unless the model reads ``{{ this }}``; never more
        than ``threads`` sessions, and only on an engine that gains from parallel sessions (DuckDB)."""
        if self.threads < 2 or middle < 2 or not self.wh.PARALLEL_SESSIONS:
            return 1
        allowed = model.config.get("concurrent_batches")
        if allowed is None:
            allowed = not _READS_THIS.search(model.raw_sql)
        return min(self.threads, middle) if allowed else 1

    def _incremental(self, model: Model, wh: Warehouse, st: Statements, target: str, schema: str, ident: str,
                     res: NodeResult, fill: Callable[[str], None] | None = None,
                     batch: tuple[Batch, str] | None = None, tmp_suffix: str = "") -> NodeResult:
        """The new rows into ``<model>__dbt_tmp`` (the SQL with is_incremental() true, or ``fill`` for a Python
        model), then appended / merged / delete+inserted into the model's table. A microbatch ``batch``
        (and its event_time column) replaces its window: delete it, insert the new rows inside it."""
        tmp_name = f"{ident}__dbt_tmp{tmp_suffix}"
        tmp = st.rel(schema, tmp_name)
        wh.execute(st.drop(tmp, "table"))
        if fill is not None:
            fill(tmp)
        else:
            body = self.c.sql(model, is_incremental=True, dialect=wh.dialect, batch=batch[0] if batch else None)
            for stmt in st.create_table(tmp, body, replace=False):
                wh.execute(stmt)
        try:
            new_cols = wh.columns(schema, tmp_name)
            old_cols = wh.columns(schema, ident)
            columns = self._schema_change(model, wh, st, target, new_cols, old_cols)
            if batch is not None:  # as dbt-duckdb's microbatch: delete the window, insert its new rows
                window = batch[0].predicate(batch[1])
                names = ", ".join(st.q(c) for c in columns)
                res.changed_rows = as_int(wh.query(f"select count(*) from {tmp} where {window}").rows[0][0])
                wh.atomic([f"delete from {target} where {window}",
                           f"insert into {target} ({names}) select {names} from {tmp} where {window}"])
                return res
            res.changed_rows = as_int(wh.query(st.count(tmp)).rows[0][0])
            keys = model.config.get("unique_key")
            key_list = as_list(keys) if keys else []
            strategy = model.config.get("incremental_strategy") or ("merge" if key_list else "append")
            if not key_list or strategy == "append":
                wh.execute(st.insert_select(target, tmp, columns))
            elif strategy == "merge" and wh.SUPPORTS_MERGE:
                wh.execute(st.merge(target, tmp, key_list, columns))
            else:  # one transaction: a reader never sees the matching rows gone
                wh.atomic([st.delete_matching(target, tmp, key_list), st.insert_select(target, tmp, columns)])
        finally:
            wh.execute(st.drop(tmp, "table"))
        res.rows = as_int(wh.query(st.count(target)).rows[0][0])
        return res

    def _schema_change(self, model: Model, wh: Warehouse, st: Statements, target: str,
                       new_cols: list[tuple[str, str]], old_cols: list[tuple[str, str]]) -> list[str]:
        mode = model.config.get("on_schema_change") or "ignore"
        old_names = [c for c, _ in old_cols]
        new_names = [c for c, _ in new_cols]
        added = [(c, t) for c, t in new_cols if c.lower() not in {o.lower() for o in old_names}]
        removed = [c for c in old_names if c.lower() not in {n.lower() for n in new_names}]
        if mode == "fail" and (added or removed):
            raise ModelRunError(
                f"the columns changed (added {[c for c, _ in added]}, removed {removed}) and on_schema_change is "
                "'fail'; run with --full-refresh or set on_schema_change to append_new_columns / sync_all_columns")
        if mode in ("append_new_columns", "sync_all_columns"):
            for col, type_ in added:
                wh.execute(st.add_column(target, col, type_))
            if mode == "sync_all_columns":
                for col in removed:
                    wh.execute(st.drop_column(target, col))
            cols = [c for c in new_names]
            return cols
        return [c for c in new_names if c.lower() in {o.lower() for o in old_names}]

    # -- snapshots ---------------------------------------------------------------------------
    def _snapshot(self, snap: Snapshot, wh: Warehouse) -> NodeResult:
        """Build a snapshot as dbt-duckdb does (see snapshots.py); --full-refresh does not rebuild it."""
        from . import snapshots as sn

        if wh.dialect != "duckdb":
            raise ModelRunError(f"snapshots run on DuckDB only for now (this warehouse is {wh.dialect})")
        schema, ident = self.c.node_relation(snap)
        st = Statements(wh)
        target = st.rel(schema, ident)
        res = NodeResult(snap.uid, snap.name, "snapshot", "snapshot", f"{schema}.{ident}", "success")
        self._ensure_schema(wh, schema)
        strategy = sn.strategy_of(snap)
        sql = self.c.sql(snap, dialect=wh.dialect)
        existing = self._existing.get((schema.lower(), ident.lower()))
        if existing is None:
            for stmt in st.create_table(target, sn.first_build_sql(strategy, sql), replace=False):
                wh.execute(stmt)
            res.rows = res.changed_rows = as_int(wh.query(st.count(target)).rows[0][0])
            self._set_existing(schema, ident, "table")
            return res
        if existing != "table":
            raise ModelRunError(f"{schema}.{ident} is a {existing}, not the snapshot's table; drop it or set another "
                                "schema/alias")
        target_cols = [c for c, _ in wh.columns(schema, ident)]
        source_cols = wh.query(f"select * from (\n{sql}\n) subq limit 0").columns
        check: list[str] = []
        added = False
        if strategy.name == "check":
            wanted = (source_cols if strategy.check_cols == "all" else
                      wh.query(f"select {', '.join(strategy.check_cols or [])} from (\n{sql}\n) subq limit 0").columns)
            have = {c for c in target_cols}
            check = [st.q(c) for c in wanted if c in have]
            added = any(c not in have for c in wanted)
        changed = sn.row_changed(strategy, check, added)
        staging_name = f"{ident}__dbt_tmp"
        staging = st.rel(schema, staging_name)
        wh.execute(st.drop(staging, "table"))
        for stmt in st.create_table(staging, sn.staging_sql(strategy, sql, target, changed, list(source_cols),
                                                           target_cols, st.q), replace=False):
            wh.execute(stmt)
        try:
            lowered = {c.lower() for c in target_cols}
            staged = [(c, t) for c, t in wh.columns(schema, staging_name) if not sn.internal_column(c)]
            for col, type_ in staged:
                if col.lower() not in lowered:  # a new column in the query: the snapshot gains it
                    wh.execute(st.add_column(target, col, type_))
            res.changed_rows = as_int(wh.query(f"select count(*) from {staging} where dbt_change_type = 'insert'")
                                   .rows[0][0])
            for stmt in sn.merge_sql(strategy, target, staging, [st.q(c) for c, _ in staged]):
                wh.execute(stmt)
        finally:
            wh.execute(st.drop(staging, "table"))
        res.rows = as_int(wh.query(st.count(target)).rows[0][0])
        return res

    # -- seeds -------------------------------------------------------------------------------
    def _seed(self, seed: Seed, wh: Warehouse) -> NodeResult:
        schema, ident = self.c.node_relation(seed)
        st = Statements(wh)
        target = st.rel(schema, ident)
        self._ensure_schema(wh, schema)
        path = self.c.mp.root / seed.path
        col_types = {k: str(v) for k, v in mapping(seed.config.get("column_types")).items()}
        header, types, rows = seed_table(path, col_types, str(seed.config.get("delimiter") or ","))
        if not header:
            raise ModelRunError(f"{seed.file} is empty; a seed needs a header row")
        existing = self._existing.get((schema.lower(), ident.lower()))
        same = existing == "table" and not self.full_refresh and \
            [c.lower() for c, _ in wh.columns(schema, ident)] == [h.lower() for h in header]
        if same:
            wh.execute(f"TRUNCATE TABLE {target}")  # as dbt: keep the table (and views bound to it), reload rows
        else:
            if existing:
                wh.execute(st.drop(target, existing))
            cols = ", ".join(f"{st.q(c)} {engine_type(t, wh.dialect)}" for c, t in zip(header, types, strict=True))
            suffix = f" {wh.TABLE_SUFFIX}" if wh.TABLE_SUFFIX else ""
            wh.execute(f"CREATE TABLE {target} ({cols}){suffix}")
        written = wh.insert_rows(target, header, rows)
        self._set_existing(schema, ident, "table")
        return NodeResult(seed.uid, seed.name, "seed", "seed", f"{schema}.{ident}", "success", written, written)

    # -- tests -------------------------------------------------------------------------------
    def _test(self, test: DataTest, wh: Warehouse) -> NodeResult:
        if test.test == "unit":
            return self._unit_test(test, wh)
        sql = self.c.test_sql(test, wh.dialect)
        relation = ""
        source = sql
        if test.stores_failures:  # as dbt: the failing rows go into <schema>_dbt_test__audit.<test>
            relation = self._store_failures(test, sql, wh)
            source = f"select * from {relation}"
        calc = test.fail_calc  # as dbt's test materialization: fail_calc, warn_if, error_if
        row = wh.query(f"select {calc} as failures, ({calc}) {test.warn_if} as should_warn, ({calc}) {test.error_if} "
                       f"as should_error from (\n{source}\n) dbt_internal_test").rows[0]
        failures = as_int(row[0] or 0)
        status = "fail" if test.severity == "error" and row[2] else "warn" if row[1] else "pass"
        where = f"{test.file}:{test.line}" if test.line else test.file
        msg = "" if status == "pass" else f"{where}: {failures} failing row(s) for {test.describe()}"
        if failures and relation:
            msg += f" (see them: select * from {relation})"
        res = NodeResult(test.uid, test.name, "test", "test", relation, status, failures, None, message=msg)
        if failures and self.show_failures:
            found = wh.query(f"select * from {relation} limit {self.show_failures}" if relation else
                             f"select * from (\n{sql}\n) dbt_internal_test limit {self.show_failures}")
            res.failing_rows = {"columns": list(found.columns), "rows": [list(r) for r in found.rows]}
        return res

    def audit_schema(self) -> str:
        """Where stored test failures go: ``generate_schema_name('dbt_test__audit')``, as in dbt."""
        return self.c.schema_for_custom("dbt_test__audit")

    def _store_failures(self, test: DataTest, sql: str, wh: Warehouse) -> str:
        schema = self.audit_schema()
        ident = test.alias or test.name
        st = Statements(wh)
        target = st.rel(schema, ident)
        self._ensure_schema(wh, schema)
        existing = self._existing.get((schema.lower(), ident.lower()))
        if existing:
            wh.execute(st.drop(target, existing))
        if test.store_failures_as == "view":
            for stmt in st.create_view(target, sql):
                wh.execute(stmt)
            self._set_existing(schema, ident, "view")
        else:
            for stmt in st.create_table(target, sql, replace=False):
                wh.execute(stmt)
            self._set_existing(schema, ident, "table")
        return target


    def _unit_test(self, test: DataTest, wh: Warehouse) -> NodeResult:
        from .unit_tests import run_unit_test

        try:
            differing, diff = run_unit_test(self.c, test, wh)
        except Exception as exc:
            raise ModelRunError(f"{test.describe()}: {_short(exc)}") from exc
        where = f"{test.file}:{test.line}" if test.line else test.file
        msg = f"{where}: {test.describe()}: {diff}" if differing else ""
        return NodeResult(test.uid, test.name, "test", "unit_test", "", "pass" if not differing else "fail",
                          differing, None, message=msg)


class _HookResult:
    """One node's result as on-run-end's ``results`` shows it (dbt's RunResult: status, node, message)."""

    def __init__(self, res: NodeResult, project: str) -> None:
        self.status = res.status
        self.message = res.message
        self.execution_time = res.seconds
        self.failures = res.rows if res.kind == "test" else None
        self.adapter_response = {"rows_affected": res.changed_rows}
        schema, _, alias = res.relation.rpartition(".")
        self.node = {"unique_id": f"{res.kind}.{project}.{res.name}", "name": res.name, "resource_type": res.kind,
                     "schema": schema, "alias": alias, "config": {"materialized": res.materialization}}


def _gate_on_tests(parents: dict[str, set[str]], units: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """As ``dbt build``: the tests of a node run before what reads it, and a failing one skips it. A test
    joins the parents of each node downstream of one of its parents when all its parents are upstream.
    Unit tests (``units``) gate only the model they test; the caller adds that edge."""
    tests = [(t, ps) for t, ps in parents.items() if t.startswith("test.") and ps and t not in units]
    if not tests:
        return
    children: dict[str, list[str]] = {}
    for uid, ps in parents.items():
        if not uid.startswith("test."):
            for p in ps:
                children.setdefault(p, []).append(uid)
    ancestors: dict[str, set[str]] = {}

    def upstream(uid: str) -> set[str]:
        found = ancestors.get(uid)
        if found is None:
            found = ancestors[uid] = set()
            for p in parents.get(uid, ()):
                if not p.startswith("test."):
                    found |= {p, *upstream(p)}
        return found

    for test, ps in tests:
        for child in {c for p in ps for c in children.get(p, ())}:
            if ps <= upstream(child):
                parents[child].add(test)


_READS_THIS = re.compile(r"\{[{%][^}%]*\bthis\b")
"""A model whose Jinja reads ``this`` (its own table): dbt runs its batches one after another."""


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if len(text) > 400 else text
