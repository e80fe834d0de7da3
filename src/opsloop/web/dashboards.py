"""Dashboard pages, the metrics API (with the outbox API), server push (SSE), and plotly.js served locally.

Routes are listed by ``web.server.create_asgi``; the handlers call ``MetricsService``; auth is
``web.guard.Guard``'s, as for every route (a Bearer token, or a login session plus its CSRF token on writes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..metrics.compiler import MetricQueryError
from ..metrics.dashboards import BoardFilters, tile_title
from ..metrics.engine import MetricQuery
from . import openapi
from ._params import not_found

if TYPE_CHECKING:
    from ..metrics.service import MetricsService
    from ..metrics.spec import Dashboard
    from .server import Web



def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _service(request: Request) -> MetricsService:
    service: MetricsService = request.app.state.opsloop.metrics
    return service


def _filters(request: Request) -> BoardFilters:
    q = request.query_params
    return BoardFilters(since=q.get("since") or None, where=[w for w in q.getlist("where") if w.strip()])


def plotly_path() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` Python package (no CDN, works offline)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


async def plotly_js(request: Request) -> Response:
    return FileResponse(plotly_path(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


# -- API ----------------------------------------------------------------------------------------
async def api_metrics(request: Request) -> Response:
    service = _service(request)
    cat = service.catalog
    items = [{"name": m.name, "label": m.label, "type": m.type, "description": m.description,
              "dimensions": sorted(service.engine.allowed_dimensions(m.name))} for m in cat.metrics.values()]
    return JSONResponse({"metrics": items})


async def api_metric(request: Request) -> Response:
    """``GET /api/metrics/NAME?grain=day&since=30d&until=&by=plan&where=plan=pro&percentile=1``."""
    q = openapi.METRIC.query(request)
    name, metrics = request.path_params["name"], _service(request).catalog.metrics
    if name not in metrics:
        raise not_found(f"no metric {name!r}; metrics: {', '.join(sorted(metrics)) or 'none'}", "name")
    try:
        query = MetricQuery.from_params(name, q.grain, q.since, q.until, q.by, q.where, q.percentile)
        result = await asyncio.to_thread(_service(request).query, query)
    except MetricQueryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    body = result.as_dict()
    if q.sql:
        body["sql"] = result.sql
    return JSONResponse(body)


async def api_alerts(request: Request) -> Response:
    runner = request.app.state.opsloop.metrics_alerts
    states = await asyncio.to_thread(runner.states)
    return JSONResponse({"alerts": [s.as_dict() for s in states]})


def _guarded_board(request: Request) -> tuple[str, Dashboard] | Response:
    """The dashboard named in the path; or the 404 answer."""
    name = request.path_params["name"]
    board = _service(request).catalog.dashboards.get(name)
    if board is None:
        return JSONResponse({"error": f"no dashboard {name!r}"}, status_code=404)
    return name, board


async def api_dashboard(request: Request) -> Response:
    found = _guarded_board(request)
    if isinstance(found, Response):
        return found
    name, board = found
    cat = _service(request).catalog
    tiles = [{"id": i, "type": t.type, "title": tile_title(cat, t)} for i, t in enumerate(board.tiles)]
    return JSONResponse({"name": name, "title": board.title or name, "tiles": tiles})


async def api_tile(request: Request) -> Response:
    found = _guarded_board(request)
    if isinstance(found, Response):
        return found
    name, board = found
    index = int(request.path_params["index"])
    if not 0 <= index < len(board.tiles):
        return JSONResponse({"error": f"dashboard {name!r} has no tile {index}"}, status_code=404)
    q = openapi.TILE.query(request)
    data = await asyncio.to_thread(_service(request).tile, name, index, BoardFilters(since=q.since, where=q.where))
    return JSONResponse(data)


async def api_refresh(request: Request) -> Response:
    """Recompute every tile now (a state-changing button: cookie callers must send X-CSRF-Token)."""
    found = _guarded_board(request)
    if isinstance(found, Response):
        return found
    name, board = found
    _service(request).push(name, list(range(len(board.tiles))), "refreshed by hand")
    return JSONResponse({"refreshed": name}, status_code=202)


async def api_events_stream(request: Request) -> Response:
    """Server push: ``event: refresh`` with ``{"tiles": [ids], "reason", "at"}`` when a tile's data changed."""
    found = _guarded_board(request)
    if isinstance(found, Response):
        return found
    name, _board = found
    service = _service(request)
    queue = service.subscribe(name)
    stopping = _web(request).app.stopping

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\nevent: hello\ndata: {}\n\n"
            idle = 0
            while not stopping.is_set():  # the server is stopping: end, the browser reconnects later
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=1)
                except TimeoutError:
                    idle += 1
                    if idle % 15 == 0:
                        yield ": keep-alive\n\n"
                    continue
                idle = 0
                yield f"event: refresh\ndata: {json.dumps(message)}\n\n"
        finally:
            service.unsubscribe(name, queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def api_outbox(request: Request) -> Response:
    items = await asyncio.to_thread(_outbox_rows, request, openapi.OUTBOX.query(request).destination)
    return JSONResponse({"items": items})


def _outbox_rows(request: Request, destination: str | None) -> list[dict[str, object]]:
    from .. import outbox

    store = request.app.state.opsloop.store
    return [{"id": i.id, "destination": i.destination, "action": i.action, "target": i.target, "key": i.key,
             "payload": i.payload, "version": i.version, "created_at": i.created_at, "updated_at": i.updated_at}
            for i in outbox.list_items(store, destination or None)]


# -- pages --------------------------------------------------------------------------------------
async def dashboards_page(request: Request) -> Response:
    web = _web(request)
    cat = _service(request).catalog
    boards = [{"name": n, "title": b.title or n, "description": b.description or "", "tiles": len(b.tiles)}
              for n, b in sorted(cat.dashboards.items())]
    return web.render(request, "dashboards.html", boards=boards)


async def dashboard_page(request: Request) -> Response:
    web = _web(request)
    service = _service(request)
    name = request.path_params["name"]
    board = service.catalog.dashboards.get(name)
    if board is None:
        return web.render(request, "dashboards.html", boards=[], missing=name)
    tiles = [{"id": i, "type": t.type, "title": tile_title(service.catalog, t), "width": t.width,
              "refresh": t.refresh or "", "refreshed": service.refreshed.get((name, i))}
             for i, t in enumerate(board.tiles)]
    filters = _filters(request)
    return web.render(request, "dashboard.html", board=board, name=name, tiles=tiles,
                      since=filters.since or board.filters.time_range or "",
                      dimensions=board.filters.dimensions,
                      where={w.split("=", 1)[0]: w.split("=", 1)[1] for w in filters.where if "=" in w},
                      ranges=["7d", "30d", "90d", "6mo", "1y", "all"])


def routes() -> list[Route]:
    return [
        Route("/assets/plotly.min.js", plotly_js),
        Route("/api/metrics", api_metrics),
        Route("/api/metrics/{name}", api_metric),
        Route("/api/alerts", api_alerts),
        Route("/api/outbox", api_outbox),
        Route("/api/dashboards/{name}", api_dashboard),
        Route("/api/dashboards/{name}/tiles/{index:int}", api_tile),
        Route("/api/dashboards/{name}/events", api_events_stream),
        Route("/api/dashboards/{name}/refresh", api_refresh, methods=["POST"]),
        Route("/dashboards", dashboards_page),
        Route("/dashboards/{name}", dashboard_page),
    ]
