"""build, run, test, seed, compile, lineage, query: the model engine's verbs.

While `opsloop up` runs (state/server.json names it), verbs that touch a single-writer warehouse go
through the server's API instead of opening the DuckDB file (which would fail on its lock).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import JsonOpt, ProjectOpt, fail, print_json, print_table

SelectOpt = Annotated[list[str] | None, typer.Option("--select", "-s", help="Nodes: name, +name, name+, tag:x, "
                                                                              "path:models/dir (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Leave these out (same syntax).")]
FullRefreshOpt = Annotated[bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Models run in parallel (default 4).")]
VarsOpt = Annotated[str | None, typer.Option("--vars", help="Vars as a YAML or JSON mapping: '{key: value}' "
                                                          "(win over dbt_project.yml's).")]
StateOpt = Annotated[Path | None, typer.Option("--state", help="An earlier build's target/ folder, for "
                                                            "-s state:modified / state:new.")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="target.name in Jinja (default dev).")]


def _parse_vars(text: str | None) -> dict[str, Any]:
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


def running_server(root: Path) -> tuple[str, str | None] | None:
    """``(base_url, token)`` of the `opsloop up` that owns this project's warehouse, if one is running."""
    info_path = root / "state" / "server.json"
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
        pid = int(info["pid"])
    except (ValueError, KeyError, OSError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    from ..project._env import read_dotenv

    token = os.environ.get("OPSLOOP_API_TOKEN") or read_dotenv(root / ".env").get("OPSLOOP_API_TOKEN")
    host = info.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{info['port']}", token


def _remote(root: Path, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    found = running_server(root)
    assert found is not None
    url, token = found
    import httpx

    if not token:
        fail("`opsloop up` is running and owns the warehouse, but OPSLOOP_API_TOKEN is not set here; "
             "set it (from the project's .env) so this command can go through the server")
    try:
        response = httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                                 timeout=3600)
    except httpx.HTTPError as exc:
        fail(f"`opsloop up` is running (state/server.json) but {url} did not answer: {exc}. "
             "If it is not running any more, delete state/server.json")
        return None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text}
    if response.status_code >= 400:
        message = data.get("error") if isinstance(data, dict) else str(data)
        problems = data.get("problems") if isinstance(data, dict) else None
        if problems:
            for p in problems:
                sys.stderr.write(p + "\n")
            raise typer.Exit(1)
        fail(f"{message}")
    return data


def _engine(root: Path) -> tuple[Any, Any]:
    """The engine on the project's warehouse, without a whole App (keeps start-up fast)."""
    from ..models import ModelEngine
    from ..models.engine import load_project_light
    from ..settings import resolve_settings
    from ..warehouse import open_warehouse

    loaded = load_project_light(root)
    wh = open_warehouse(resolve_settings(loaded).warehouse, loaded.root)
    return wh, ModelEngine(loaded, wh)


def _run_verb(project: Path, select: list[str] | None, exclude: list[str] | None, full_refresh: bool,
              kinds: tuple[str, ...], json_out: bool, threads: int | None, vars_text: str | None = None,
              target: str | None = None, state: Path | None = None) -> None:
    root = _project_root(project)
    cli_vars = _parse_vars(vars_text)
    if running_server(root) is not None:
        if cli_vars or target or state:
            fail("--vars, --target and --state do not go through the running server yet; stop `opsloop up` to use "
                 "them, or put the vars in dbt_project.yml")
        data = _remote(root, "POST", "/api/models/build", {"select": select, "exclude": exclude,
                                                          "full_refresh": full_refresh, "kinds": list(kinds)})
        results = data["results"]
        if not json_out:
            sys.stderr.write(f"(through the running server at {running_server(root)[0]})\n")  # type: ignore[index]
    else:
        from ..models.runner import NodeResult

        app_, engine = _engine(root)
        engine.threads = threads
        engine.cli_vars = cli_vars
        engine.target_name = target or "dev"
        engine.state_dir = state.resolve() if state else None
        try:
            progress = _Progress(json_out)
            try:
                with progress:
                    progress.total = len(engine.selected(select, exclude, kinds))
                    objs: list[NodeResult] = engine.build(select, exclude, full_refresh, kinds,
                                                          on_result=progress.done, on_start=progress.started)
            finally:
                pass
        finally:
            app_.close()
        results = [r.as_dict() for r in objs]
    _report(results, json_out)


class _Progress:
    """A Rich progress bar on a terminal; one line per node otherwise (on stderr)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.total = 0
        self.count = 0
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from ._common import console

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("building", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def started(self, uid: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, total=self.total or None, description=uid.split(".", 1)[1])

    def done(self, res: Any) -> None:
        self.count += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=1)
            return
        rows = "" if res.rows is None else f" rows={res.rows}"
        sys.stderr.write(f"{self.count} of {self.total} {res.status.upper():7} {res.kind} {res.name}"
                         f" [{res.materialization}{rows} in {res.seconds:.2f}s]\n")


def _report(results: list[dict[str, Any]], json_out: bool) -> None:
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
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        sys.stderr.write("done: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "\n")
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    @app.command()
    def build(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
              full_refresh: FullRefreshOpt = False, threads: ThreadsOpt = None, json_out: JsonOpt = False,
              vars_text: VarsOpt = None, target: TargetOpt = None, state: StateOpt = None) -> None:
        """Seed, run, snapshot and test the selected nodes in DAG order (writes target/manifest.json)."""
        _run_verb(project, select, exclude, full_refresh, ("model", "seed", "snapshot", "test"), json_out, threads,
                  vars_text, target, state)

    @app.command()
    def snapshot(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
                 threads: ThreadsOpt = None, json_out: JsonOpt = False, vars_text: VarsOpt = None,
                 target: TargetOpt = None) -> None:
        """Build the selected snapshots (SCD2 tables, as `dbt snapshot`)."""
        _run_verb(project, select, exclude, False, ("snapshot",), json_out, threads, vars_text, target)

    @app.command()
    def run(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
            full_refresh: FullRefreshOpt = False, threads: ThreadsOpt = None, json_out: JsonOpt = False,
            vars_text: VarsOpt = None, target: TargetOpt = None, state: StateOpt = None) -> None:
        """Build the selected models (no seeds, no tests)."""
        _run_verb(project, select, exclude, full_refresh, ("model",), json_out, threads, vars_text, target, state)

    @app.command("test")
    def test_(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
              threads: ThreadsOpt = None, json_out: JsonOpt = False, vars_text: VarsOpt = None,
              target: TargetOpt = None, state: StateOpt = None) -> None:
        """Run the data tests of the selected models."""
        _run_verb(project, select, exclude, False, ("test",), json_out, threads, vars_text, target, state)

    @app.command()
    def seed(project: ProjectOpt = Path("."), select: SelectOpt = None, exclude: ExcludeOpt = None,
             full_refresh: FullRefreshOpt = False, json_out: JsonOpt = False, vars_text: VarsOpt = None,
             target: TargetOpt = None) -> None:
        """Load seeds/*.csv into the warehouse."""
        _run_verb(project, select, exclude, full_refresh, ("seed",), json_out, None, vars_text, target)

    @app.command("compile")
    def compile_(model: Annotated[str, typer.Argument(help="The model to compile.")],
                 project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Print the SQL a model runs (refs resolved, ephemeral models inlined)."""
        root = _project_root(project)
        if running_server(root) is not None:
            sql = _remote(root, "GET", f"/api/models/{model}/compiled")["sql"]
        else:
            app_, engine = _engine(root)
            try:
                sql = engine.compile_sql(model)
            finally:
                app_.close()
        if json_out:
            print_json({"model": model, "sql": sql})
        else:
            sys.stdout.write(sql + "\n")

    @app.command()
    def lineage(target: Annotated[str, typer.Argument(help="MODEL or MODEL.COLUMN.")],
                project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Column lineage: where each column of a model comes from, back to seeds and sources."""
        from ..models.engine import load_project_light
        from ..models.lineage import lineage as lineage_of

        data = lineage_of(load_project_light(_project_root(project)), target)
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
        if running_server(root) is not None:
            body: dict[str, Any] = {"sql": sql, "limit": limit}
            if timeout is not None:
                body["timeout"] = timeout
            data = _remote(root, "POST", "/api/query", body)
            columns, rows, more = data["columns"], data["rows"], bool(data.get("truncated"))
        else:
            from ..models import ModelEngine
            from ..models.engine import load_project_light
            from ..settings import resolve_settings
            from ..warehouse import open_warehouse

            loaded = load_project_light(root)
            wh = open_warehouse(resolve_settings(loaded).warehouse, loaded.root, read_only=True)
            try:
                wh.lock_down()
                result = ModelEngine(loaded, wh).query(sql, limit, timeout)
            finally:
                wh.close()
            columns, rows, more = result.columns, [list(r) for r in result.rows], result.truncated
        if json_out:
            print_json([dict(zip(columns, r, strict=True)) for r in rows])
        else:
            print_table(columns, rows)
        if more:
            sys.stderr.write(f"(the first {limit} rows; more matched: add a LIMIT or WHERE, or pass --limit)\n")
