"""``/api/sources``: the sources JSON API (``opsloop pull`` goes through it while `opsloop up` owns the
warehouse). The handlers call ``SourceScheduler`` (``opsloop.sources.service``); auth is ``web.guard``'s."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._halt import Interrupted
from ..errors import TransientError
from ..sources.project_files import SOURCES
from . import openapi

if TYPE_CHECKING:
    from ..app import App


def routes(app: App) -> list[Route]:
    """The routes exist only in a project with sources (as the scheduler does)."""
    if "sources" not in app.services:
        return []
    scheduler = app.sources

    async def api_sources(request: Request) -> Response:
        from ..sources import source_status  # sources (pyarrow, connectors) load on first use, not at import

        return JSONResponse(await asyncio.to_thread(source_status, app))

    async def api_pull(request: Request) -> Response:
        from ..sources import SourceError

        name = request.path_params["name"]
        full = openapi.PULL.query(request).full_refresh
        if name not in SOURCES.of(app.project):
            message = f"no source named {name!r}; sources: {', '.join(sorted(SOURCES.of(app.project)))}"
            return JSONResponse({"error": message, "message": message, "parameter": "name", "in": "path"}, 404)
        try:
            result = await asyncio.to_thread(scheduler.pull, name, full)
        except Interrupted as exc:
            return JSONResponse({"source": name, "status": "interrupted", "message": str(exc)}, status_code=503)
        except SourceError as exc:
            # the vendor could not be reached or said "later": 502; refused (credentials, request): 409
            status = 502 if isinstance(exc, TransientError) else 409
            return JSONResponse({"source": name, "status": "failed", "message": str(exc), "error": str(exc)}, status)
        return JSONResponse({**result.run.as_dict(), "drift": result.drift, "events": result.events})

    return [Route("/api/sources", api_sources), Route("/api/sources/{name}/pull", api_pull, methods=["POST"])]
