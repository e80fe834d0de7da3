"""pull, sources."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .._json import JsonObject
from ..narrow import json_object, json_objects, number
from ._client import Server, jsonable, local_or_server
from ._common import JsonOpt, ProjectOpt, fail, print_json, print_table, when
from ._progress import Progress, count, seconds

if TYPE_CHECKING:
    from ..app import App
    from ..sources import StreamProgress


def _short(value: object, width: int = 40) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


class _PullProgress:
    """A pull's ``progress`` callback: a row per stream (pages, rows, rows/s) on a terminal; a line per
    page (at most one a second per stream) and one when the stream ends, otherwise."""

    def __init__(self, source: str, progress: Progress) -> None:
        self.source = source
        self.progress = progress
        self.started: dict[str, float] = {}

    def __call__(self, report: StreamProgress) -> None:
        key = f"{self.source}.{report.stream}"
        began = self.started.setdefault(key, time.monotonic())
        elapsed = time.monotonic() - began
        rate = report.rows / elapsed if elapsed > 0 else 0.0
        pages = f"{count(report.pages)} page{'' if report.pages == 1 else 's'}"
        detail = f"{pages}  {count(report.rows)} rows  {count(rate)} rows/s"
        ended = report.status in ("done", "partial", "failed")
        if report.status != "running":
            detail += f"  {report.status}"
        self.progress.update(key, label=key, detail=detail, finished=ended)
        if ended:
            self.progress.step(f"{key}: {report.status}, {pages}, {count(report.rows)} rows in {seconds(elapsed)}")
        elif report.status == "loading":
            self.progress.step(f"{key}: loading {count(report.rows)} rows into the warehouse")
        elif report.pages:
            self.progress.step(f"{key}: {pages}, {count(report.rows)} rows, {count(rate)} rows/s", throttle=key)


def _print_run(name: str, run: JsonObject) -> None:
    for stream, found in json_object(run.get("streams")).items():
        info = json_object(found)
        typer.echo(f"{name}.{stream}: {info['rows']} rows -> {info.get('table', '')} ({info['status']})")
    finished, started = number(run.get("finished_at")), number(run.get("started_at"))
    duration = finished - started if finished and started is not None else 0.0
    line = f"{name}: {run['status']}, {run['rows']} rows in {duration:.1f}s, {run['requests']} requests"
    if run.get("message"):
        line += f" — {run['message']}"
    typer.echo(line)


def _pull_here(app_: App, name: str, full_refresh: bool, json_out: bool) -> JsonObject:
    """One source pulled in this process: its run as a JSON object (``status: failed`` when it failed)."""
    from ..sources import SourceError
    from ..sources import pull as run_pull

    app_.warehouse.query("SELECT 1")  # WarehouseLocked here, before a pull that would report it as its failure
    with Progress(json_out) as progress:
        try:
            result = run_pull(app_, name, full_refresh, _PullProgress(name, progress))
        except SourceError as exc:
            return {"source": name, "status": "failed", "message": str(exc)}
    return json_object(jsonable({**result.run.as_dict(), "drift": result.drift, "events": result.events}))


def _pull_app(project: Path) -> App:
    """An App with only what a pull (and ``opsloop sources``) needs: ``opsloop.yml`` and ``sources/*.yml``,
    the state store (runs, cursors, change events), the warehouse and the bus; no other subsystem's files,
    services or imports."""
    from ..app import App
    from ..settings import resolve_settings
    from ..sources.project_files import load_sources_project

    loaded = load_sources_project(project)
    return App(loaded, resolve_settings(loaded), services=False)


def _pull_one(app_: App, name: str, full_refresh: bool, json_out: bool) -> JsonObject:
    return local_or_server(app_.project.root, lambda: _pull_here(app_, name, full_refresh, json_out),
                           lambda server: server.pull(name, full_refresh))


def register(app: typer.Typer) -> None:
    @app.command()
    def pull(
        source: Annotated[str | None, typer.Argument(help="Source name (sources/<name>.yml); default: all.")] = None,
        project: ProjectOpt = Path("."),
        full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Drop the tables and cursors; "
                                                   "load everything again.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Pull sources into the warehouse now (incremental from each stream's cursor)."""
        app_ = _pull_app(project)
        try:
            from ..sources.project_files import SOURCES

            names = sorted(SOURCES.of(app_.project))
            if source is not None:
                names = [source]
            if not names:
                fail("no sources in this project; add sources/<name>.yml (see docs/sources.md)")
            results: list[JsonObject] = []
            for name in names:
                run = _pull_one(app_, name, full_refresh, json_out)
                results.append(run)
                if json_out:
                    continue
                if run["status"] == "failed":
                    sys.stderr.write(f"error: {run['message']}\n")
                else:
                    _print_run(name, run)
        finally:
            app_.close()
        if json_out:
            print_json(results)
        if any(r["status"] == "failed" for r in results):
            raise typer.Exit(1)

    @app.command()
    def sources(project: ProjectOpt = Path("."), json_out: JsonOpt = False) -> None:
        """Each source's state, cursors, last run, rows and next scheduled run."""
        from ..sources import source_status

        app_ = _pull_app(project)  # the same few parts as a pull: the sources' config, the store
        try:
            status = local_or_server(app_.project.root, lambda: json_objects(jsonable(source_status(app_))),
                                     Server.sources)
        finally:
            app_.close()
        if json_out:
            print_json(status)
            return
        rows = []
        for s in status:
            last = json_object(s["last_run"])
            cursors = "; ".join(f"{k}={_short(cursor, 30)}" for k, v in json_object(s["streams"]).items()
                                if (cursor := json_object(v)["cursor"]))
            rows.append([s["name"], s["type"], s["state"], when(number(last.get("started_at"))),
                         last.get("rows", ""), s["rows_total"], when(number(s["next_run"])) or "on demand",
                         _short(cursors, 60),
                         _short(last.get("message"), 60)])
        print_table(["source", "type", "state", "last run", "last rows", "total rows", "next run", "cursors",
                     "message"], rows)
