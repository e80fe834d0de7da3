"""The ASGI app: webhook endpoints, the JSON API, pages, ``/healthz``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..app import App, ReplayError
from ..events.inbox import Inbox
from ..settings import Settings
from ..state import ALL_STATUSES
from . import auth, openapi
from ._params import ParamError, error_response, not_found
from .ops import ops_routes

_HERE = Path(__file__).parent


def _ts(value: float | None) -> str:
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


class Web:
    """Request handlers bound to one ``App``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.env = Environment(
            loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html"])
        )

    @property
    def token(self) -> str:
        token = self.app.settings.api_token
        if not token:
            raise RuntimeError("OPSLOOP_API_TOKEN is not set")
        return token

    # -- auth helpers ------------------------------------------------------------------------
    def authed(self, request: Request) -> bool:
        return auth.bearer_ok(request, self.token) or auth.cookie_ok(request, self.token)

    def api_guard(self, request: Request) -> Response | None:
        if auth.bearer_ok(request, self.token):
            return None
        if auth.cookie_ok(request, self.token):
            if request.method in ("GET", "HEAD") or auth.csrf_ok(request, self.token):
                return None
            return JSONResponse({"error": "missing or wrong X-CSRF-Token"}, status_code=403)
        return JSONResponse(
            {"error": "authentication required: send Authorization: Bearer $OPSLOOP_API_TOKEN"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def page_guard(self, request: Request) -> Response | None:
        if self.authed(request):
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    def render(self, request: Request, template: str, **context: Any) -> HTMLResponse:
        authed = self.authed(request)
        html = self.env.get_template(template).render(
            project_name=self.app.project.config.name,
            authed=authed,
            csrf=auth.csrf_token(self.token) if authed else "",
            **context,
        )
        return HTMLResponse(html)

    # -- webhooks ----------------------------------------------------------------------------
    async def hook(self, request: Request) -> Response:
        name = request.path_params["endpoint"]
        endpoint = self.app.inbox.endpoints.get(name)
        limit = endpoint.config.max_body if endpoint else 1_000_000
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"body exceeds this endpoint's limit of {limit} bytes"}, status_code=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return JSONResponse({"error": f"body exceeds this endpoint's limit of {limit} bytes"}, status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        outcome = await self.app.inbox.receive(name, body, request.headers, str(request.url), request.method)
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    # -- API ---------------------------------------------------------------------------------
    async def api_events(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        q = openapi.EVENTS.query(request)
        events = await asyncio.to_thread(
            self.app.store.list_events, status=q.status, endpoint=q.endpoint, since=q.since, name=q.name, limit=q.limit
        )
        return JSONResponse({"events": [e.summary() for e in events]})

    async def api_event(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        event = await asyncio.to_thread(self.app.store.get_event, request.path_params["event_id"])
        if event is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        return JSONResponse(event.detail())

    async def api_replay_one(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        payload = (await openapi.REPLAY_EVENT.body(request)).payload
        if await asyncio.to_thread(self.app.store.get_event, request.path_params["event_id"]) is None:
            raise not_found(f"no event {request.path_params['event_id']!r}; list events with GET /api/events",
                            "event_id")
        try:
            new_id = await asyncio.to_thread(self.app.replay, request.path_params["event_id"], payload)
        except ReplayError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"replayed": request.path_params["event_id"], "id": new_id}, status_code=202)

    async def api_replay_many(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        spec = await openapi.REPLAY_EVENTS.body(request)
        results = await asyncio.to_thread(self.app.replay_many, spec.endpoint, spec.since, spec.status, spec.until,
                                          spec.limit)
        return JSONResponse(
            {"results": [{"original": o, "id": n, "error": e} for o, n, e in results]}, status_code=202
        )

    async def api_status(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        counts = await asyncio.to_thread(self._counts)
        return JSONResponse({"project": self.app.project.config.name, "events": dict(counts)})

    async def api_openapi(self, request: Request) -> Response:
        if (denied := self.api_guard(request)) is not None:
            return denied
        from .. import __version__

        names = await asyncio.to_thread(openapi.live_names, self.app)
        return JSONResponse(openapi.document(request.app.routes, self.app.project.config.name, __version__, names))

    def _counts(self) -> list[tuple[str, int]]:
        rows = self.app.store.query("SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status")
        return [(str(r[0]), int(r[1])) for r in rows]

    # -- pages -------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=request.query_params.get("next", "/"), error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token", ""))
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        import hmac

        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return self.render(request, "login.html", next=target, error="That token is not right.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE, auth.session_value(self.token), httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if self.authed(request) and not auth.csrf_ok(request, self.token, str(form.get("csrf", ""))):
            return HTMLResponse("cross-site request refused", status_code=403)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE)
        return response

    async def home(self, request: Request) -> Response:
        if (denied := self.page_guard(request)) is not None:
            return denied
        counts = await asyncio.to_thread(self._counts)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return self.render(
            request, "home.html", endpoints=list(self.app.project.endpoints.values()), counts=counts, base_url=base
        )

    async def events_page(self, request: Request) -> Response:
        if (denied := self.page_guard(request)) is not None:
            return denied
        status = request.query_params.get("status")
        events = await asyncio.to_thread(self.app.store.list_events, status=status, limit=200)
        rows = [
            {
                "id": e.id,
                "received": _ts(e.received_at),
                "endpoint": e.endpoint,
                "name": e.name,
                "status": e.status,
                "error": json.dumps(e.error) if e.error else "",
            }
            for e in events
        ]
        return self.render(
            request, "events.html", events=rows, status=status, statuses=ALL_STATUSES,
            message=request.query_params.get("message"),
        )

    async def replay_form(self, request: Request) -> Response:
        if (denied := self.page_guard(request)) is not None:
            return denied
        form = await request.form()
        if not auth.csrf_ok(request, self.token, str(form.get("csrf", ""))):
            return HTMLResponse("cross-site request refused", status_code=403)
        try:
            new_id = await asyncio.to_thread(self.app.replay, request.path_params["event_id"])
            message = f"replayed as {new_id}"
        except ReplayError as exc:
            message = str(exc)
        return RedirectResponse(f"/events?message={quote(message)}", status_code=303)


class HookHost(Protocol):
    """What the webhook path needs: an ``App``, or a receiver process's stand-in."""

    @property
    def inbox(self) -> Inbox: ...

    @property
    def settings(self) -> Settings: ...


class HookFastPath:
    """``POST /hooks/<endpoint>`` answered without the framework's routing and request objects.

    Webhook acceptance is the hot path; everything else goes to ``fallback`` (the Starlette app, or in a
    receiver process the proxy to the main process).
    """

    def __init__(self, app: HookHost, fallback: Any) -> None:
        self.app = app
        self.fallback = fallback
        self.state = getattr(fallback, "state", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/hooks/") and scope["method"] == "POST" and path.count("/") == 2):
            await self.fallback(scope, receive, send)
            return
        name = path[len("/hooks/") :]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint = self.app.inbox.endpoints.get(name)
        limit = endpoint.config.max_body if endpoint else 1_000_000
        declared = headers.get("content-length")
        too_big = {"error": f"body exceeds this endpoint's limit of {limit} bytes"}
        if declared and declared.isdigit() and int(declared) > limit:
            await _respond(send, 413, too_big)
            return
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _respond(send, 413, too_big)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        query = scope.get("query_string", b"").decode("latin-1")
        # behind a proxy or tunnel the sender signed the public address, not the one the request reached
        public = self.app.settings.public_url
        here = f"{scope.get('scheme', 'http')}://{headers.get('host') or 'localhost'}"
        base = public.rstrip("/") if public else here
        url = f"{base}{path}" + (f"?{query}" if query else "")
        outcome = await self.app.inbox.receive(name, b"".join(chunks), headers, url, "POST")
        await _respond(send, outcome.status_code, outcome.body, outcome.headers)


async def _respond(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


def create_asgi(app: App) -> HookFastPath:
    """The ASGI application for ``app``; its lifespan starts and stops the App."""
    web = Web(app)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await app.start()
        try:
            yield
        finally:
            await app.stop()

    routes = [
        Route("/hooks/{endpoint}", web.hook, methods=["POST"]),
        Route("/healthz", web.healthz),
        Route("/api/events", web.api_events),
        Route("/api/events/{event_id}", web.api_event),
        Route("/api/events/{event_id}/replay", web.api_replay_one, methods=["POST"]),
        Route("/api/replay", web.api_replay_many, methods=["POST"]),
        Route("/api/status", web.api_status),
        Route("/api/openapi.json", web.api_openapi),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/", web.home),
        Route("/events", web.events_page),
        Route("/events/{event_id}/replay", web.replay_form, methods=["POST"]),
        *app.web_routes,
        *ops_routes(web),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    asgi = Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={ParamError: error_response, HTTPException: error_response})
    asgi.state.opsloop = app
    asgi.state.web = web
    return HookFastPath(app, asgi)
