"""Operational pages: workflow runs (a run's own page is ``pages_runs``), models, sources and syncs (with failed rows).

Each page shows what the subsystem's JSON API answers, fetched in-process for a user who logged in with
the token, rendered as escaped HTML tables: one source of truth for the API, the CLI and the pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._json import JsonValue
from . import pages_lists, pages_models, pages_outbox, pages_people, pages_runs, pages_sources, pages_syncs
from ._handler import Handler

if TYPE_CHECKING:
    from .server import Web

PAGES = {
    "runs": ("Workflow runs", "/api/runs", "/runs/{id}"),
    "models": ("Models", "/api/models", None),
}


def ops_routes(web: Web) -> list[Route]:
    async def fetch(request: Request, path: str) -> tuple[int, JsonValue]:
        transport = httpx.ASGITransport(app=request.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://opsloop.internal") as client:
            answer = await client.get(path, params=dict(request.query_params),
                                      headers={"Authorization": f"Bearer {web.token}"})
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"error": answer.text[:500]}

    def page(kind: str) -> Handler:
        title, api, link = PAGES[kind]

        async def handler(request: Request) -> Response:
            key = next(iter(request.path_params.values()), None)
            path = api if key is None else f"{api}/{key}"
            status, data = await fetch(request, path)
            heading = title if key is None else f"{title[:-1] if title.endswith('s') else title}: {key}"
            return web.render(request, "ops.html", title=heading, status=status, data=data, link=link,
                              api=path)

        return handler

    # the pages of their own first: a route listed earlier wins
    routes = [*pages_lists.routes(web), *pages_runs.routes(web), *pages_outbox.routes(web),
              *pages_models.routes(web), *pages_syncs.routes(web),
              *pages_people.routes(web), *pages_sources.routes(web)]
    routes += [Route(f"/{kind}", page(kind)) for kind in PAGES]
    return routes
