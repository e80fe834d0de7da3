"""build, run, test, seed, compile, lineage, query: the model engine's verbs.

While `opsloop up` runs, verbs that touch the warehouse go through the server's API (``_client.Server``)
instead of opening the DuckDB file (which would fail on its lock); a build in this process writes the same
``model.built`` events as the server's.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..narrow import json_list, json_object
from ._client import Server, jsonable, local_or_server
from ._common import JsonOpt, ProjectOpt, fail, print_json, print_table
from ._progress import Progress, seconds

if TYPE_CHECKING:
    from .._json import JsonObject
    from ..models import ModelEngine
    from ..models.freshness import FreshnessResult
    from ..models.runner import NodeResult
    from ..project import Project
    from ..warehouse import Warehouse

SelectOpt = Annotated[list[str] | None, typer.Option("--select", "-s", help="Nodes: name, +name, name+, tag:x, "
                                                                              "path:models/dir (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Leave these out (same syntax).")]
FullRefreshOpt = Annotated[bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Models run in parallel (default 4).")]
VarsOpt = Annotated[str | None, typer.Option("--vars", help="Vars as a YAML or JSON mapping: '{key: value}' "
                                                          "(win over dbt_project.yml's).")]
StateOpt = Annotated[Path | None, typer.Option("--state", help="An earlier build's target/ folder, for "
                                                            "-s state:modified / state:new.")]
ShowFailuresOpt = Annotated[bool, typer.Option("--show-failures", help="Print each failing test's rows.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="With --show-failures: at most this many rows a test.")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="target.name in Jinja (default dev).")]
_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
EventTimeStartOpt = Annotated[datetime | None, typer.Option(
    "--event-time-start", formats=_TIME_FORMATS, help="Microbatch models: rebuild the batches from this time "
    "(UTC, inclusive; with --event-time-end).")]
EventTimeEndOpt = Annotated[datetime | None, typer.Option(
    "--event-time-end", formats=_TIME_FORMATS, help="Microbatch models: rebuild the batches up to this time "
    "(UTC, exclusive).")]


def _event_times(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime] | None:
    """``--event-time-start`` / ``--event-time-end``: both or neither, start before end (as dbt checks)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        given, missing = ("--event-time-start", "--event-time-end") if end is None else \
            ("--event-time-end", "--event-time-start")
        fail(f"{given} was given without {missing}; give both (the range microbatch models rebuild)")
    if start >= end:
        fail("--event-time-start must be before --event-time-end")
    return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)


def _parse_vars(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        fail(f"--vars is not valid YAML or JSON: {str(exc).splitlines()[0]} (write it as '{{key: value}}')")
    if not isinstance(data, dict):
        fail(f"--vars must be a mapping such as '{{key: value}}', not {text!r}")
    return {str(k): v for k, v in data.items()}


def _project_root(project: Path) -> Path:
    return (project or Path.cwd()).resolve()


def _engine(root: Path) -> tuple[Warehouse, ModelEngine]:
    """The engine on the project's warehouse, without a whole App (keeps start-up fast)."""
    from ..models import ModelEngine
    from ..project import read_project_config
    from ..settings import resolve_settings
    from ..warehouse import open_warehouse

    loaded = read_project_config(root)
    wh = open_warehouse(resolve_settings(loaded).warehouse, loaded.root)
    return wh, ModelEngine(loaded, wh)


def _run_verb(project: Path, select: list[str] | None, exclude: list[str] | None, full_refresh: bool,
              kinds: tuple[str, ...], json_out: bool, threads: int | None, vars_text: str | None = None,
              target: str | None = None, state: Path | None = None, show_failures: int = 0,
              event_times: tuple[datetime, datetime] | None = None) -> None:
    root = _project_root(project)
    cli_vars = _parse_vars(vars_text)

    def remote(server: Server) -> list[JsonObject]:
        if cli_vars or target or state or show_failures or event_times:
            fail("--vars, --target, --state, --show-failures and --event-time-start/-end do not go through the "
                 "running server yet; stop `opsloop up` to use them, or put the vars in dbt_project.yml")
        if not json_out:
            sys.stderr.write(f"(through the running server at {server.url})\n")
        return server.build(select, exclude, full_refresh, kinds)

    results = local_or_server(root, lambda: _build_here(root, select, exclude, full_refresh, kinds, json_out,
                                                         threads, cli_vars, target, state, show_failures,
                                                         event_times), remote)
    _report(results, json_out)


def _build_here(root: Path, select: list[str] | None, exclude: list[str] | None, full_refresh: bool,
                kinds: tuple[str, ...], json_out: bool, threads: int | None, cli_vars: dict[str, object],
                target: str | None, state: Path | None, show_failures: int = 0,
                event_times: tuple[datetime, datetime] | None = None) -> list[JsonObject]:
    """The build in this process; its ``model.built`` events go to the log, as the server's builds' do."""

    wh, engine = _engine(root)
    engine.threads = threads
    engine.cli_vars = cli_vars
    engine.target_name = target or "dev"
    engine.state_dir = state.resolve() if state else None
    engine.show_failures = show_failures
    engine.event_time_start, engine.event_time_end = event_times or (None, None)
    try:
        with Progress(json_out) as progress:
            uids = _built_uids(engine, select, exclude, kinds)
            shown = _BuildProgress(progress, uids, *_last_timings(engine, uids))
            objs: list[NodeResult] = engine.build(select, exclude, full_refresh, kinds,
                                                  on_result=shown.done, on_start=shown.started)
    finally:
        wh.close()
    _record_built(engine.project, objs)
    return [json_object(jsonable(r.as_dict())) for r in objs]


def _built_uids(engine: ModelEngine, select: list[str] | None, exclude: list[str] | None,
                kinds: tuple[str, ...]) -> list[str]:
    """The nodes a build runs (as ``ModelEngine.build`` chooses them: ephemeral models are compiled into their
    children, not run)."""
    models = engine.compiler().mp.models
    return [u for u in engine.selected(select, exclude, kinds)
            if not (u.startswith("model.") and models[u[6:]].materialized == "ephemeral")]


def _record_built(project: Project, results: list[NodeResult]) -> None:
    """``model.built`` per model or seed built, in the project's event log (``ModelService`` writes them)."""
    if not any(r.status == "success" for r in results):
        return
    from ..app import App

    app_ = App(project)
    try:
        app_.models.record_built(results)
        # what the server's metrics service records from these events, so `opsloop metric` answers before
        # any server has read them (the relation a metric over ref('model') reads)
        for r in results:
            if r.kind in ("model", "seed") and r.status == "success" and r.relation and \
                    r.materialization != "ephemeral":
                app_.metrics.record_build(r.name, r.relation)
    finally:
        app_.close()


class _BuildProgress:
    """A build's ``on_start``/``on_result`` callbacks: on a terminal a bar of nodes done of total, the
    running ones and an ETA from the last build's timings (``target/run_results.json``); otherwise the
    line per node that dbt prints."""

    def __init__(self, progress: Progress, uids: list[str], last: dict[str, float], scale: float) -> None:
        self.progress = progress
        self.total = len(uids)
        self.count = 0
        self.running: dict[str, float] = {}
        known = [last[u] for u in uids if u in last]
        typical = statistics.median(known) if known else 0.0
        # each node's seconds in the last build (the median for a new one); the ETA is what is left of them,
        # scaled by how much wall time a node-second took then (threads run several at once)
        self.weight = {u: last.get(u, typical) for u in uids}
        self.left = sum(self.weight.values())
        self.scale = scale if known else 0.0
        progress.add("build", "building", total=self.total)

    def started(self, uid: str) -> None:
        self.running[uid] = time.monotonic()
        self._show()

    def done(self, res: NodeResult) -> None:
        rows = "" if res.rows is None else f" rows={res.rows}"
        what = f"{res.status.upper():7} {res.kind} {res.name} [{res.materialization}{rows} in {res.seconds:.2f}s]"
        if res.uid not in self.weight:  # an on-run-start/-end hook: not one of the nodes counted
            self.progress.step(what)
            return
        self.count += 1
        self.running.pop(res.uid, None)
        self.left -= self.weight[res.uid]
        self._show()
        eta = self.eta()
        left = f"  (about {seconds(eta)} left)" if eta is not None and self.count < self.total else ""
        self.progress.step(f"{self.count} of {self.total} {what}{left}")

    def eta(self) -> float | None:
        """Seconds left, from the last build's timings of the nodes not done yet (None on a first build)."""
        if not self.scale:
            return None
        now = time.monotonic()
        left = self.left - sum(min(now - began, self.weight.get(uid, 0.0)) for uid, began in self.running.items())
        return max(0.0, left * self.scale)

    def _show(self) -> None:
        names = [uid.split(".", 1)[1] for uid in self.running]
        detail = ("running " + ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")) \
            if names else ""
        eta = self.eta()
        if eta is not None and self.count < self.total:
            detail += f"  about {seconds(eta)} left"
        self.progress.update("build", completed=self.count, detail=detail)


def _last_timings(engine: ModelEngine, uids: list[str]) -> tuple[dict[str, float], float]:
    """The last build's seconds per node (opsloop uids) and its wall seconds per node-second, from
    ``target/run_results.json`` (empty and 0 when there is none, or it cannot be read)."""
    from ..models.artifacts import dbt_uid

    compiler = engine.compiler()
    path = compiler.mp.root / "target" / "run_results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        times = {str(r["unique_id"]): float(r["execution_time"]) for r in data["results"]}
        elapsed = float(data["elapsed_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}, 0.0
    by_dbt = {dbt_uid(compiler, u): u for u in uids}
    node_seconds = sum(times.values())
    # at most 1: the last build's elapsed time also holds its start (parsing), which this one has done
    scale = min(1.0, elapsed / node_seconds) if node_seconds > 0 else 0.0
    return {by_dbt[k]: v for k, v in times.items() if k in by_dbt}, scale


def _report(results: list[JsonObject], json_out: bool) -> None:
    bad = [r for r in results if r["status"] in ("error", "fail")]
    if json_out:
        print_json({"results": results, "ok": not bad})
    else:
        print_table(["model", "materialization", "rows", "seconds", "status"],
                    [[r["name"], r["materialization"], "" if r["rows"] is None else r["rows"],
                      f"{r['seconds']:.2f}", r["status"]] for r in results])
        for r in results:
            if r["message"] and r["status"] in ("error", "fail", "warn", "skipped"):
                sys.stderr.write(f"{r['status']}: {r['name']}: {r['message']}\n")
            if r.get("failing_rows"):
                _print_failing_rows(str(r["name"]), json_object(r["failing_rows"]))
        counts: dict[str, int] = {}
        for r in results:
            status = str(r["status"])
            counts[status] = counts.get(status, 0) + 1
        sys.stderr.write("done: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "\n")
    if bad:
        raise typer.Exit(1)


def _print_failing_rows(name: str, found: JsonObject) -> None:
    """``--show-failures``: a failing test's first rows, as aligned columns on stderr."""
    rows = [["NULL" if v is None else str(v) for v in json_list(row)] for row in json_list(found["rows"])]
    table = [[str(c) for c in json_list(found["columns"])], *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))] if table[0] else []
    sys.stderr.write(f"failing rows of {name} (the first {len(rows)}):\n")
    for row in table:
        sys.stderr.write("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def register(app: typer.Typer) -> None:
    @app.command()
    def build(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
              full_refresh: FullRefreshOpt = False, threads: ThreadsOpt = None, json_out: JsonOpt = False,
              vars_text: VarsOpt = None, target: TargetOpt = None, state: StateOpt = None,
              show_failures: ShowFailuresOpt = False, limit: LimitOpt = 10,
              event_time_start: EventTimeStartOpt = None, event_time_end: EventTimeEndOpt = None) -> None:
        """Seed, run, snapshot and test the selected nodes in DAG order (writes target/manifest.json)."""
        _run_verb(project, select, exclude, full_refresh, ("model", "seed", "snapshot", "test"), json_out, threads,
                  vars_text, target, state, limit if show_failures else 0,
                  _event_times(event_time_start, event_time_end))

    @app.command()
    def snapshot(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
                 threads: ThreadsOpt = None, json_out: JsonOpt = False, vars_text: VarsOpt = None,
                 target: TargetOpt = None) -> None:
        """Build the selected snapshots (SCD2 tables, as `dbt snapshot`)."""
        _run_verb(project, select, exclude, False, ("snapshot",), json_out, threads, vars_text, target)

    @app.command()
    def run(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
            full_refresh: FullRefreshOpt = False, threads: ThreadsOpt = None, json_out: JsonOpt = False,
            vars_text: VarsOpt = None, target: TargetOpt = None, state: StateOpt = None,
            event_time_start: EventTimeStartOpt = None, event_time_end: EventTimeEndOpt = None) -> None:
        """Build the selected models (no seeds, no tests)."""
        _run_verb(project, select, exclude, full_refresh, ("model",), json_out, threads, vars_text, target, state,
                  event_times=_event_times(event_time_start, event_time_end))

    @app.command("test")
    def test_(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
              threads: ThreadsOpt = None, json_out: JsonOpt = False, vars_text: VarsOpt = None,
              target: TargetOpt = None, state: StateOpt = None, show_failures: ShowFailuresOpt = False,
              limit: LimitOpt = 10) -> None:
        """Run the data tests and unit tests of the selected models (--show-failures prints failing rows)."""
        _run_verb(project, select, exclude, False, ("test",), json_out, threads, vars_text, target, state,
                  limit if show_failures else 0)

    @app.command()
    def seed(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
             full_refresh: FullRefreshOpt = False, json_out: JsonOpt = False, vars_text: VarsOpt = None,
             target: TargetOpt = None) -> None:
        """Load seeds/*.csv into the warehouse."""
        _run_verb(project, select, exclude, full_refresh, ("seed",), json_out, None, vars_text, target)

    source_app = typer.Typer(help="dbt sources: how fresh their tables are.")
    app.add_typer(source_app, name="source")

    @source_app.command("freshness")
    def freshness(project: ProjectOpt = Path("."), select: SelectOpt = None,
                  output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write sources.json "
                                                              "(default target/sources.json).")] = None,
                  json_out: JsonOpt = False) -> None:
        """Check the freshness of sources with freshness: and loaded_at_field: (as `dbt source freshness`)."""
        root = _project_root(project)

        def here() -> list[FreshnessResult]:
            wh, engine = _engine(root)
            try:
                return list(engine.source_freshness(select, output.resolve() if output else None))
            finally:
                wh.close()

        def remote(server: Server) -> list[FreshnessResult]:
            fail("`opsloop source freshness` does not go through the running server yet; stop `opsloop up` first")

        results = local_or_server(root, here, remote)
        rows = [{"source": f"{r.source.source_name}.{r.source.name}", "status": r.status,
                 "max_loaded_at": r.max_loaded_at.isoformat() if r.max_loaded_at else None,
                 "age_seconds": None if r.age is None else round(r.age, 1), "message": r.message} for r in results]
        if json_out:
            print_json({"results": rows, "ok": not any(r["status"] in ("error", "runtime error") for r in rows)})
        else:
            print_table(["source", "max_loaded_at", "age_seconds", "status"],
                        [[r["source"], r["max_loaded_at"] or "", "" if r["age_seconds"] is None else r["age_seconds"],
                          r["status"]] for r in rows])
            for r in rows:
                if r["message"]:
                    sys.stderr.write(f"{r['status']}: {r['source']}: {r['message']}\n")
        if any(r["status"] in ("error", "runtime error") for r in rows):
            raise typer.Exit(1)

    @app.command("compile")
    def compile_(model: Annotated[str, typer.Argument(help="The model to compile.")],
                 project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Print the SQL a model runs (refs resolved, ephemeral models inlined)."""
        root = _project_root(project)

        def here() -> str:
            wh, engine = _engine(root)
            try:
                return str(engine.compile_sql(model))
            finally:
                wh.close()

        sql = local_or_server(root, here, lambda server: server.compiled(model))
        if json_out:
            print_json({"model": model, "sql": sql})
        else:
            sys.stdout.write(sql + "\n")

    @app.command()
    def lineage(target: Annotated[str, typer.Argument(help="MODEL or MODEL.COLUMN.")],
                project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Column lineage: where each column of a model comes from, back to seeds and sources."""
        from ..models.lineage import lineage as lineage_of
        from ..project import read_project_config

        data = lineage_of(read_project_config(_project_root(project)), target)
        if json_out:
            print_json(data)
            return
        for line in data["lines"]:
            sys.stdout.write(line + "\n")

    @app.command()
    def query(sql: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
              project: ProjectOpt = Path("."),
              limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 1000,
              timeout: Annotated[float | None, typer.Option(
                  help="Stop the query after this many seconds (at most OPSLOOP_QUERY_TIMEOUT, default 30).")] = None,
              json_out: JsonOpt = False) -> None:
        """Run a read-only query on the warehouse (through the server when one is up).

        Sandboxed: the query reads the warehouse's tables only (no host files, network or settings)."""
        root = _project_root(project)

        def here() -> JsonObject:
            from ..models import ModelEngine
            from ..project import read_project_config
            from ..settings import resolve_settings
            from ..warehouse import open_warehouse

            loaded = read_project_config(root)
            wh = open_warehouse(resolve_settings(loaded).warehouse, loaded.root, read_only=True)
            try:
                wh.lock_down()
                result = ModelEngine(loaded, wh).query(sql, limit, timeout)
            finally:
                wh.close()
            return {"columns": [*result.columns], "rows": jsonable([list(r) for r in result.rows]),
                    "truncated": result.truncated}

        data = local_or_server(root, here, lambda server: server.query(sql, limit, timeout))
        columns = [str(c) for c in json_list(data["columns"])]
        rows, more = [json_list(r) for r in json_list(data["rows"])], bool(data.get("truncated"))
        if json_out:
            print_json([dict(zip(columns, r, strict=True)) for r in rows])
        else:
            print_table(columns, rows)
        if more:
            sys.stderr.write(f"(the first {limit} rows; more matched: add a LIMIT or WHERE, or pass --limit)\n")
