"""``/api/models`` and ``/api/query``: the models JSON API that CLI verbs use while `opsloop up` owns the
warehouse. The handlers call ``ModelService`` (``opsloop.models.service``); auth is ``web.guard``'s."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from sqlglot.errors import SqlglotError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ConfigError, OpsloopError
from . import openapi
from ._params import not_found

if TYPE_CHECKING:
    from ..app import App


def _json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status_code=status, media_type="application/json")


def _error(exc: Exception) -> Response:
    if isinstance(exc, ConfigError):
        return _json({"error": str(exc), "problems": [str(p) for p in exc.problems]}, 400)
    return _json({"error": str(exc)}, 400)


def routes(app: App) -> list[Route]:
    service = app.models

    async def api_build(request: Request) -> Response:
        body = await openapi.BUILD.body(request)
        kinds = tuple(body.kinds or ("model", "seed", "snapshot", "test"))
        try:
            results = await service.build_async(body.select, body.exclude, body.full_refresh, kinds)
        except OpsloopError as exc:
            return _error(exc)
        data = [r.as_dict() for r in results]
        return _json({"results": data, "ok": not any(r["status"] in ("error", "fail") for r in data)})

    async def api_query(request: Request) -> Response:
        body = await openapi.QUERY.body(request)
        try:
            result = await asyncio.to_thread(service.engine.query, body.sql, body.limit, body.timeout)
        except (OpsloopError, SqlglotError) as exc:  # SQL that does not even tokenize is the caller's mistake
            return _error(exc)
        return _json({"columns": result.columns, "rows": [list(r) for r in result.rows],
                      "truncated": result.truncated})

    async def api_compiled(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            compiler = await asyncio.to_thread(service.engine.compiler)
        except OpsloopError as exc:
            return _error(exc)
        if name not in compiler.mp.models and name not in compiler.mp.tests:
            raise not_found(f"no model named {name!r}; list them with GET /api/models", "name")
        try:
            sql = await asyncio.to_thread(service.engine.compile_sql, name)
        except OpsloopError as exc:
            return _error(exc)
        return _json({"model": request.path_params["name"], "sql": sql})

    async def api_models(request: Request) -> Response:
        try:
            compiler = await asyncio.to_thread(service.engine.compiler)
        except OpsloopError as exc:
            return _error(exc)
        return _json([{"name": m.name, "materialized": m.materialized, "relation": compiler.relation_of(m.uid),
                       "tags": m.tags, "file": m.file} for m in compiler.mp.models.values()])

    return [
        Route("/api/models", api_models),
        Route("/api/models/build", api_build, methods=["POST"]),
        Route("/api/models/{name}/compiled", api_compiled),
        Route("/api/query", api_query, methods=["POST"]),
    ]
