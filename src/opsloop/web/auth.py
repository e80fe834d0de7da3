"""Who is let in: the rules ``web.guard.Guard`` applies to every request.

Two ways in:

- ``Authorization: Bearer <OPSLOOP_API_TOKEN>`` (the CLI, scripts): every API route and page, reads and
  writes, no CSRF token (a browser never sends this header on its own).
- A login session: ``POST /login`` with the token opens a server-side session (``state.sessions``) and
  sets its random id in an HttpOnly, SameSite=Strict cookie (``Secure`` when ``server.public_url`` is
  https). It lasts ``server.session_expiry`` (12 h) unless logout ends it first. A state-changing
  request on a session must carry the session's CSRF token, as ``X-CSRF-Token`` or a form field
  ``csrf``; the token is derived from the session id, so it dies with the session.

Which paths need what is ``access_of``: a few are public (each either harmless or checking its own
signature), ``/api/*`` answers 401 JSON to a stranger, every other path is a page that sends a stranger
to ``/login``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from starlette.types import Scope

COOKIE = "opsloop_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access(Enum):
    PUBLIC = "public"
    """Anyone: the route is harmless or verifies its own signature."""
    API = "api"
    """The token or a session; a stranger gets 401 JSON."""
    PAGE = "page"
    """The token or a session; a stranger is sent to ``/login``."""


PUBLIC_PATHS = frozenset({
    "/healthz",
    "/login",
    "/slack/interactions",  # checks Slack's request signature itself (web/api_workflows.py)
})
PUBLIC_PREFIXES = (
    "/hooks/",  # each endpoint checks its signature preset (events/inbox.py)
    "/static/",
    "/assets/",  # plotly.min.js, as shipped in the plotly package
)


def access_of(path: str) -> Access:
    """What ``path`` requires."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return Access.PUBLIC
    if path == "/api" or path.startswith("/api/"):
        return Access.API
    return Access.PAGE


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, once the guard let it in."""

    kind: Literal["token", "session"]
    session_id: str | None = None

    @property
    def csrf(self) -> str:
        """The CSRF token pages embed in their forms (empty for token callers, who need none)."""
        return csrf_token(self.session_id) if self.session_id else ""


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: an HMAC of its id, so it is valid exactly as long as the session."""
    return hmac.new(session_id.encode(), b"opsloop csrf", hashlib.sha256).hexdigest()


def token_tag(token: str) -> str:
    """What a session row keeps of the token it was opened with: a new token ends the old sessions."""
    return hmac.new(token.encode(), b"opsloop session", hashlib.sha256).hexdigest()


def csrf_ok(principal: Principal, given: str | None) -> bool:
    if principal.kind == "token":
        return True
    return bool(given) and hmac.compare_digest(str(given).encode(), principal.csrf.encode())


def bearer_ok(headers: dict[str, str], token: str | None) -> bool:
    header = headers.get("authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def session_cookie(headers: dict[str, str]) -> str | None:
    """The session id in the request's ``Cookie`` header, if any."""
    from http.cookies import CookieError, SimpleCookie

    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def principal_of(scope: Scope) -> Principal | None:
    """Who the guard let in (``None`` on a public path reached by a stranger)."""
    found = scope.get("auth")
    return found if isinstance(found, Principal) else None


def client_address(scope: Scope) -> str:
    """The address of the client that sent the request.

    A request on the private Unix socket comes from one of this server's receiver processes (the socket's
    folder is readable by this user only), which puts the address it accepted the connection from in
    ``X-Forwarded-For``; only there is that header believed. Anywhere else it is the caller's own claim.
    """
    server = scope.get("server")
    if server is not None and server[1] is None:  # a Unix socket: ours
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                return value.decode("latin-1").split(",")[-1].strip() or "unknown"
        return "local"
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class LoginThrottle:
    """At most ``limit`` wrong tokens per client address in ``window`` seconds; then 429 until the oldest
    failure ages out. Kept in the process that answers ``/login`` (the main one, also behind receivers)."""

    def __init__(self, limit: int = 10, window: float = 300.0, max_clients: int = 100_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str, now: float | None = None) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it may try now."""
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        if len(failures) < self.limit:
            return None
        return max(1.0, failures[0] + self.window - now)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if client not in self._failures and len(self._failures) >= self.max_clients:
            for stale in [c for c in self._failures if not self._recent(c, now)]:
                self._failures.pop(stale, None)
            if len(self._failures) >= self.max_clients:  # a flood of addresses: forget the oldest
                self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(client, deque()).append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
