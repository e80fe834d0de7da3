"""``/api/identity/...`` and ``/api/segments/...``: identity builds, profiles, conflicts and segments over
the JSON API, which `opsloop identity`, `opsloop profile` and `opsloop segments` use while `opsloop up` owns
the warehouse. The handlers call ``IdentityService`` (``opsloop.identity.service``); auth is ``web.guard``'s.

Answers: 404 when the project has no ``identity.yml`` / ``segments/``, no such segment or no such person;
409 when the work cannot run yet (what ``identity.yml`` reads is not built, no golden record yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._halt import Interrupted
from ..errors import OpsloopError
from . import openapi
from ._params import ParamError

if TYPE_CHECKING:
    from ..app import App


def _json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})


def routes(app: App) -> list[Route]:
    service = app.identity

    def configured(segments: bool = False) -> None:
        from ..identity.service import NO_IDENTITY

        ip = service.project
        if (ip.config is None and not ip.segments) or (not segments and ip.config is None):
            raise ParamError(404, NO_IDENTITY)

    async def run(work: Callable[[], object], missing: int = 409) -> Response:
        """``work`` in a thread; an identity error is ``missing`` (404: the thing named does not exist) or 409."""
        from ..identity.service import UnknownSegment

        try:
            return _json(await asyncio.to_thread(work))
        except Interrupted as exc:
            return _json({"error": str(exc)}, 503)
        except UnknownSegment as exc:
            return _json({"error": str(exc), "parameter": "name"}, 404)
        except OpsloopError as exc:
            return _json({"error": str(exc)}, missing)

    async def identity_build(request: Request) -> Response:
        body = await openapi.IDENTITY_BUILD.body(request)
        configured()
        return await run(lambda: service.build(full=body.full, segments=body.segments))

    async def profile(request: Request) -> Response:
        q = openapi.PROFILE.query(request)
        configured()
        return await run(lambda: service.profile(q.query), missing=404)

    async def conflicts(request: Request) -> Response:
        q = openapi.CONFLICTS.query(request)
        configured(segments=True)
        return await run(lambda: {"conflicts": service.conflicts(q.limit)})

    async def segments(request: Request) -> Response:
        configured(segments=True)
        return await run(lambda: {"segments": service.segment_summary()})

    async def preview(request: Request) -> Response:
        q = openapi.SEGMENT_PREVIEW.query(request)
        configured(segments=True)
        name = request.path_params["name"]
        return await run(lambda: service.segment_preview(name, q.limit))

    async def segments_run(request: Request) -> Response:
        body = await openapi.SEGMENTS_RUN.body(request)
        configured(segments=True)
        return await run(lambda: {"segments": service.evaluate_segments(body.names)})

    return [
        Route("/api/identity/build", identity_build, methods=["POST"]),
        Route("/api/identity/profile", profile),
        Route("/api/identity/conflicts", conflicts),
        Route("/api/segments", segments),
        Route("/api/segments/run", segments_run, methods=["POST"]),
        Route("/api/segments/{name}/preview", preview),
    ]
