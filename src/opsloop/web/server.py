"""The ASGI app: webhook endpoints, the JSON API, pages, ``/healthz``."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .._json import JsonObject
from ..app import App, ReplayError
from ..events.inbox import Inbox
from ..narrow import as_int
from ..settings import Settings
from ..state.sessions import Sessions
from . import api_identity, api_models, api_sources, api_syncs, api_workflows, auth, dashboards, openapi, pages_format
from ._params import ParamError, error_response, not_found
from .guard import Guard
from .ops import ops_routes

_HERE = Path(__file__).parent


class Web:
    """Request handlers bound to one ``App``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.env = Environment(
            loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html"])
        )
        pages_format.install(self.env)
        self.throttle = auth.LoginThrottle()

    @property
    def sessions(self) -> Sessions:
        return Sessions(self.app.store)

    @property
    def token(self) -> str:
        token = self.app.settings.api_token
        if not token:
            raise RuntimeError("OPSLOOP_API_TOKEN is not set")
        return token

    # -- rendering -------------------------------------------------------------------------
    def render(self, request: Request, template: str, status_code: int = 200, **context: object) -> HTMLResponse:
        principal = auth.principal_of(request.scope)
        html = self.env.get_template(template).render(
            project_name=self.app.project.config.name,
            authed=principal is not None,
            request_path=request.url.path,
            csrf=principal.csrf if principal is not None else "",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

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
        client = request.client.host if request.client else None
        outcome = await self.app.inbox.receive(name, body, request.headers, str(request.url), request.method, client)
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    # -- API ---------------------------------------------------------------------------------
    async def api_events(self, request: Request) -> Response:
        q = openapi.EVENTS.query(request)
        events = await asyncio.to_thread(
            self.app.store.list_events, status=q.status, endpoint=q.endpoint, since=q.since, name=q.name, limit=q.limit
        )
        return JSONResponse({"events": [e.summary() for e in events]})

    async def api_event(self, request: Request) -> Response:
        event = await asyncio.to_thread(self.app.store.get_event, request.path_params["event_id"])
        if event is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        return JSONResponse(event.detail())

    async def api_replay_one(self, request: Request) -> Response:
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
        spec = await openapi.REPLAY_EVENTS.body(request)
        results = await asyncio.to_thread(self.app.replay_many, spec.endpoint, spec.since, spec.status, spec.until,
                                          spec.limit)
        return JSONResponse(
            {"results": [{"original": o, "id": n, "error": e} for o, n, e in results]}, status_code=202
        )

    async def api_status(self, request: Request) -> Response:
        counts = await asyncio.to_thread(self._counts)
        return JSONResponse({"project": self.app.project.config.name, "events": dict(counts),
                             "ingest_cpu": self.app.bus.clock.snapshot()})

    async def api_openapi(self, request: Request) -> Response:
        from .. import __version__

        names = await asyncio.to_thread(openapi.live_names, self.app)
        return JSONResponse(openapi.document(request.app.routes, self.app.project.config.name, __version__, names))

    def _counts(self) -> list[tuple[str, int]]:
        rows = self.app.store.query("SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status")
        return [(str(r[0]), as_int(r[1], "an event count")) for r in rows]

    # -- pages -------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=request.query_params.get("next", "/"), error=None)

    async def login(self, request: Request) -> Response:
        client = auth.client_address(request.scope)
        form = await request.form()
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith(("//", "/\\")):  # browsers read /\ as //
            target = "/"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            seconds = int(wait + 0.999)
            slow_down = self.render(
                request, "login.html", status_code=429, next=target,
                error=f"Too many wrong tokens from your address; try again in {seconds} s.",
            )
            slow_down.headers["Retry-After"] = str(seconds)
            return slow_down
        given = str(form.get("token", ""))
        token = self.app.settings.api_token or ""
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            self.throttle.failed(client)
            return self.render(request, "login.html", next=target, error="That token is not right.")
        self.throttle.succeeded(client)
        ttl = self.app.settings.session_expiry
        session_id = await asyncio.to_thread(self.sessions.open, ttl, auth.token_tag(token), client)
        response = RedirectResponse(target, status_code=303)
        secure = (self.app.settings.public_url or "").lower().startswith("https://")
        response.set_cookie(auth.COOKIE, session_id, max_age=int(ttl), httponly=True, samesite="strict",
                            secure=secure, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        principal = auth.principal_of(request.scope)
        if principal is not None and principal.session_id:
            await asyncio.to_thread(self.sessions.revoke, principal.session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def home(self, request: Request) -> Response:
        counts = await asyncio.to_thread(self._counts)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return self.render(
            request, "home.html", endpoints=list(self.app.project.endpoints.values()), counts=counts, base_url=base
        )

    async def replay_form(self, request: Request) -> Response:
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

    def __init__(self, app: HookHost, fallback: ASGIApp) -> None:
        self.app = app
        self.fallback = fallback
        self.state = getattr(fallback, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/hooks/") and scope["method"] == "POST" and path.count("/") == 2):
            await self.fallback(scope, receive, send)
            return
        name = path[len("/hooks/") :]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint = self.app.inbox.endpoints.get(name)
        if endpoint is None:  # answered before reading a byte of the body
            outcome = await self.app.inbox.receive(name, b"", headers)
            await _respond(send, outcome.status_code, outcome.body, outcome.headers)
            return
        limit = endpoint.config.max_body
        declared = headers.get("content-length")
        too_big: JsonObject = {"error": f"body exceeds this endpoint's limit of {limit} bytes"}
        if declared and declared.isdigit() and int(declared) > limit:
            await _respond(send, 413, too_big, {"connection": "close"})  # the unread rest: hang up
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
                await _respond(send, 413, too_big, {"connection": "close"})
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        query = scope.get("query_string", b"").decode("latin-1")
        # behind a proxy or tunnel the sender signed the public address, not the one the request reached
        public = self.app.settings.public_url
        here = f"{scope.get('scheme', 'http')}://{headers.get('host') or 'localhost'}"
        base = public.rstrip("/") if public else here
        url = f"{base}{path}" + (f"?{query}" if query else "")
        # uvicorn has already put X-Forwarded-For's address here when the peer is a trusted proxy
        # (FORWARDED_ALLOW_IPS, loopback by default); otherwise this is the connection's own address
        peer = scope.get("client")
        client = str(peer[0]) if peer else None
        outcome = await self.app.inbox.receive(name, b"".join(chunks), headers, url, "POST", client)
        await _respond(send, outcome.status_code, outcome.body, outcome.headers)


async def _respond(send: Send, status: int, body: JsonObject, headers: dict[str, str] | None = None) -> None:
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
        Route("/events/{event_id}/replay", web.replay_form, methods=["POST"]),
        *api_workflows.routes(app),
        *api_models.routes(app),
        *api_sources.routes(app),
        *api_syncs.routes(app),
        *api_identity.routes(app),
        *dashboards.routes(),
        *ops_routes(web),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    asgi = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(Guard, opsloop=app)],
                     exception_handlers={ParamError: error_response, HTTPException: error_response})
    asgi.state.opsloop = app
    asgi.state.web = web
    return HookFastPath(app, asgi)
