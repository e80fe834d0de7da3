"""The sources pages: ``/sources`` (each pull's state, schedule, last and next run, rows) and
``/sources/<name>`` (its streams with their cursors and rows, its runs with their warnings, and "Pull now").

The data is ``sources.source_status`` and the ``source_runs`` table (the same as ``GET /api/sources`` and
``opsloop sources``); "Pull now" is a form posting the session's CSRF token after a confirmation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._halt import Interrupted
from ..errors import OpsloopError
from ..sources.project_files import SOURCES
from . import pages_format

if TYPE_CHECKING:
    from ..sources.config import SourceConfig
    from .server import Web


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
            history = source_runs(app, name, 25)
            for run in history:
                message = run.get("message")
                run["warnings"] = warnings_of(message if isinstance(message, str) else None)
            return status, history

        status, history = await asyncio.to_thread(load)
        config = configured()[name]
        streams = status.get("streams")
        return web.render(request, "source.html", name=name, config=config, message=request.query_params.get("message"),
                          streams=sorted(streams.items()) if isinstance(streams, dict) else [],
                          cursor_text=_cursor_text, source=status, runs=history)

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
            Route("/sources/{name}/pull", pull_now, methods=["POST"])]


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
