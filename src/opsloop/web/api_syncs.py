"""``GET /api/syncs`` and ``POST /api/syncs/{name}/run``, used by the CLI while the server owns the warehouse.
The handlers call ``SyncService`` (``opsloop.syncs.service``); auth is ``web.guard``'s."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import openapi

if TYPE_CHECKING:
    from ..app import App


def routes(app: App) -> list[Route]:
    service = app.syncs

    async def list_syncs(request: Request) -> Response:
        from ..syncs.listing import sync_listing

        data = await asyncio.to_thread(sync_listing, app)
        return JSONResponse(json.loads(json.dumps(data, default=str)), headers={"cache-control": "no-store"})

    async def show_sync(request: Request) -> Response:
        from ..syncs.listing import sync_detail

        detail = await asyncio.to_thread(sync_detail, app, request.path_params["name"])
        if detail is None:
            return JSONResponse({"error": f"no sync {request.path_params['name']!r}"}, status_code=404)
        return JSONResponse(json.loads(json.dumps(detail, default=str)), headers={"cache-control": "no-store"})

    async def run_sync(request: Request) -> Response:
        from ..syncs import SyncError

        name = request.path_params["name"]
        options = (await openapi.RUN_SYNC.body(request)).model_dump()
        try:
            service.runner.get(name)
        except SyncError as exc:
            return JSONResponse({"error": str(exc), "parameter": "name", "in": "path"}, status_code=404)
        result = await service.run_now(name, trigger="api", **options)
        return JSONResponse(json.loads(json.dumps(result.as_dict(), default=str)))

    return [Route("/api/syncs", list_syncs), Route("/api/syncs/{name}", show_sync),
            Route("/api/syncs/{name}/run", run_sync, methods=["POST"])]
