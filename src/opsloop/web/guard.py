"""One ASGI middleware in front of every route: body limit, authentication, CSRF, security headers.

Route handlers do no auth of their own; they find who called in ``request.auth`` (``auth.Principal``).
The rules themselves are in ``auth`` (which paths are public, API or pages; tokens, sessions, CSRF).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._json import JsonObject
from . import auth
from .auth import Access, Principal

if TYPE_CHECKING:
    from ..app import App
    from ..state.sessions import Sessions

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script anywhere (templates load theirs from /static). Inline *styles* are allowed: plotly.js
sets them on the charts it draws."""

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def with_security_headers(send: Send) -> Send:
    """``send`` that adds ``SECURITY_HEADERS`` to the response (those the handler did not set itself)."""

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return sender


async def send_json(send: Send, status: int, body: JsonObject, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def too_large(limit: int) -> JsonObject:
    return {"error": f"the request body exceeds this server's limit of {limit} bytes (server.max_request_body "
                     "in opsloop.yml)"}


class ClientGone(Exception):
    """The client disconnected before its request body was in."""


async def read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it is known to exceed ``limit`` (declared or streamed); at
    most ``limit`` bytes are ever held. Raises ``ClientGone``."""
    declared = dict(scope.get("headers", ())).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` (already read) once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _text_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _has_body(scope: Scope) -> bool:
    if scope["method"] not in auth.SAFE_METHODS:
        return True
    headers = dict(scope.get("headers", ()))
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (b"", b"0")


class Guard:
    """The middleware (``Starlette(middleware=[Middleware(Guard, opsloop=app)])``)."""

    def __init__(self, app: ASGIApp, opsloop: App) -> None:
        self.app = app
        self.opsloop = opsloop

    @property
    def sessions(self) -> Sessions:
        from ..state.sessions import Sessions

        return Sessions(self.opsloop.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = with_security_headers(send)
        body: bytes | None = None
        # webhooks are bounded by their endpoint's own max_body (server.Web.hook); the rest here
        if not path.startswith("/hooks/") and _has_body(scope):
            limit = self.opsloop.settings.max_request_body
            try:
                body = await read_bounded(scope, receive, limit)
            except ClientGone:
                return
            if body is None:
                await send_json(send, 413, too_large(limit), {"connection": "close"})
                return
            receive = replaying(body, receive)
        access = auth.access_of(path)
        # public paths need nobody; /login only shows whether one is logged in already
        principal = await self.identify(scope) if access is not Access.PUBLIC or path == "/login" else None
        scope["auth"] = principal
        if access is not Access.PUBLIC:
            refusal = self.refusal(scope, access, principal, body)
            if refusal is not None:
                status, payload, headers = refusal
                if principal is None and auth.session_cookie(_text_headers(scope)):
                    headers = {**headers, "set-cookie": f"{auth.COOKIE}=; Max-Age=0; Path=/; HttpOnly; "
                                                        "SameSite=strict"}  # expired or revoked: forget it
                if status == 303:
                    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
                    await send({"type": "http.response.start", "status": 303,
                                "headers": [*raw, (b"content-length", b"0")]})
                    await send({"type": "http.response.body", "body": b""})
                else:
                    await send_json(send, status, payload, headers)
                return
        await self.app(scope, receive, send)

    async def identify(self, scope: Scope) -> Principal | None:
        headers = _text_headers(scope)
        if auth.bearer_ok(headers, self.opsloop.settings.api_token):
            return Principal("token")
        session_id = auth.session_cookie(headers)
        token = self.opsloop.settings.api_token
        if session_id is None or not token:
            return None
        valid: bool = await asyncio.to_thread(self.sessions.valid, session_id, auth.token_tag(token), None)
        return Principal("session", session_id) if valid else None

    def refusal(
        self, scope: Scope, access: Access, principal: Principal | None, body: bytes | None
    ) -> tuple[int, JsonObject, dict[str, str]] | None:
        """``(status, JSON body, headers)`` when the request may not go on, else ``None``."""
        if principal is None:
            if access is Access.PAGE:
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope["path"] + (f"?{query}" if query else "")
                return 303, {}, {"location": f"/login?next={quote(target)}"}
            return 401, {"error": "authentication required: send Authorization: Bearer $OPSLOOP_API_TOKEN "
                                  "(the project's .env), or log in at /login"}, {"WWW-Authenticate": "Bearer"}
        if scope["method"] in auth.SAFE_METHODS or principal.kind == "token":
            return None
        if auth.csrf_ok(principal, self._csrf_given(scope, body)):
            return None
        return 403, {"error": "cross-site request refused: a logged-in browser must send the page's CSRF token "
                              "(X-CSRF-Token header or csrf form field); reload the page and try again"}, {}

    @staticmethod
    def _csrf_given(scope: Scope, body: bytes | None) -> str | None:
        headers = dict(scope.get("headers", ()))
        given = headers.get(auth.CSRF_HEADER.encode())
        if given:
            return str(given.decode("latin-1"))
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if body and kind == b"application/x-www-form-urlencoded":
            values = parse_qs(body.decode("latin-1")).get(auth.CSRF_FIELD)
            return str(values[0]) if values else None
        return None
