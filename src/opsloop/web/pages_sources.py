"""The sources pages: ``/sources`` (each pull's state, schedule, last and next run, rows) and
``/sources/<name>`` (its streams with their cursors and rows, its runs with their warnings, and "Pull now").

The data is ``sources.source_status`` and the ``source_runs`` table (the same as ``GET /api/sources`` and
``opsloop sources``); "Pull now" is a form posting the session's CSRF token after a confirmation.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._halt import Interrupted
from ..errors import OpsloopError
from ..sources.project_files import SOURCES
from . import pages_format
from ._live_rows import live_rows

if TYPE_CHECKING:
    from ..sources.config import SourceConfig
    from .server import Web


LIVE_POLL = 1.0
"""Seconds between two looks of ``/sources/<name>/live`` at the source's runs."""


def warnings_of(message: object) -> list[str]:
    """A run's message split into its notes (missing scopes, drift, quota), one per line."""
    text = message if isinstance(message, str) else ""
    return [part.strip() for part in text.split("; ") if part.strip()]


def routes(web: Web) -> list[Route]:
    app = web.app

    def configured() -> dict[str, SourceConfig]:
        return SOURCES.of(app.project)

    async def sources_page(request: Request) -> Response:
        if not configured():
            return web.render(request, "sources.html", sources=[], message=None)
        from ..sources import source_status

        listing = await asyncio.to_thread(source_status, app)
        return web.render(request, "sources.html", sources=listing, message=request.query_params.get("message"))

    async def source_page(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in configured():
            known = ", ".join(sorted(configured())) or "none"
            return web.render(request, "missing.html", status_code=404, title="No such source",
                              message=f"There is no source {name!r} in this project (sources: {known}).",
                              back="/sources", back_label="all sources")
        from ..sources import source_runs, source_status

        def load() -> tuple[Mapping[str, object], Sequence[Mapping[str, object]]]:
            status = next(s for s in source_status(app) if s["name"] == name)
            return status, _with_warnings(source_runs(app, name, 25))

        status, history = await asyncio.to_thread(load)
        config = configured()[name]
        streams = status.get("streams")
        return web.render(request, "source.html", name=name, config=config, message=request.query_params.get("message"),
                          streams=sorted(streams.items()) if isinstance(streams, dict) else [],
                          cursor_text=_cursor_text, source=status, runs=history, live=_live_url(name, history))

    async def source_live(request: Request) -> Response:
        """Server-sent events for ``/sources/<name>``'s runs (``_live_rows``): the pulls that start while the page
        is open, and the new row of a pull shown running once it ends."""
        name = request.path_params["name"]
        raw = request.query_params.get("after", "")
        after = _parse_place(raw) if raw else None
        if name not in configured() or (raw and after is None):
            return web.render(request, "missing.html", status_code=404 if name not in configured() else 400,
                              title="Sources", message=f"No source {name!r}" if name not in configured() else
                              f"'after' should be what the page gives, not {raw!r}",
                              back="/sources", back_label="all sources")
        from ..sources import source_runs

        row = web.env.get_template("_source_run_row.html")
        return live_rows(app.stopping, LIVE_POLL, lambda: _with_warnings(source_runs(app, name, 25)), _place,
                         lambda r: row.render(r=r), after, request.query_params.get("watch", "").split(","))

    async def pull_now(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in configured() or "sources" not in app.services:
            return RedirectResponse("/sources", status_code=303)
        scheduler = app.sources
        try:
            result = await asyncio.to_thread(scheduler.pull, name, False)
            run = result.run
            told = f"pull {run.status}: {run.rows} rows" + (f"; {run.message}" if run.message else "")
        except Interrupted as exc:
            told = f"pull interrupted: {exc}"
        except OpsloopError as exc:
            told = f"pull failed: {exc}"
        return RedirectResponse(f"/sources/{quote(name)}?message={quote(told)}", status_code=303)

    return [Route("/sources", sources_page), Route("/sources/{name}", source_page),
            Route("/sources/{name}/pull", pull_now, methods=["POST"]), Route("/sources/{name}/live", source_live)]


def _with_warnings(history: list[dict[str, object]]) -> list[dict[str, object]]:
    for run in history:
        message = run.get("message")
        run["warnings"] = warnings_of(message if isinstance(message, str) else None)
    return history


def _place(run: Mapping[str, object]) -> tuple[float, str]:
    """``(started_at, id)``: how the runs list orders a run (newest first)."""
    started = run.get("started_at")
    return (float(started) if isinstance(started, (int, float)) else 0.0), str(run.get("id"))


def _parse_place(text: str) -> tuple[float, str] | None:
    at, _, run_id = text.partition("~")
    try:
        when = float(at)
    except ValueError:
        return None
    return (when, run_id) if math.isfinite(when) else None  # nan would compare false with every run


def _live_url(name: str, history: Sequence[Mapping[str, object]]) -> str:
    top = "{!r}~{}".format(*_place(history[0])) if history else ""
    watch = ",".join(str(r.get("id")) for r in history if r.get("status") == "running")
    return f"/sources/{quote(name)}/live?" + urlencode({"after": top, "watch": watch})


def _cursor_text(cursor: object) -> str | Markup:
    """A stream's cursor as a person reads it: a Unix time (seconds or milliseconds) as a time."""
    if cursor is None:
        return "none yet (the next pull reads everything)"
    if isinstance(cursor, (int, float)) and not isinstance(cursor, bool):
        for scale in (1.0, 1000.0):
            if pages_format.EPOCH_MIN <= cursor / scale <= pages_format.EPOCH_MAX:
                return pages_format.when(cursor / scale)
    if isinstance(cursor, str):
        return cursor
    if isinstance(cursor, dict) and all(isinstance(v, (str, int, float)) for v in cursor.values()):
        return ", ".join(f"{k} {v}" for k, v in cursor.items())  # {"since": "2026-…"} reads "since 2026-…"
    return json.dumps(cursor, default=str)
