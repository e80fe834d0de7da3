"""Token auth for the API and pages; CSRF tokens for state-changing forms.

The API takes ``Authorization: Bearer <token>``. Pages use a login form that sets an HttpOnly,
SameSite=Strict cookie holding an HMAC derived from the token (never the token itself). A form that
changes state carries a CSRF token derived the same way; cookie-authenticated API writes must send it
as ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

COOKIE = "opsloop_session"


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    return _derive(token, "session")


def csrf_token(token: str) -> str:
    return _derive(token, "csrf")


def bearer_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    return False


def cookie_ok(request: Request, token: str) -> bool:
    value = request.cookies.get(COOKIE)
    return bool(value) and hmac.compare_digest(str(value).encode(), session_value(token).encode())


def csrf_ok(request: Request, token: str, form_value: str | None = None) -> bool:
    given = form_value or request.headers.get("x-csrf-token") or ""
    return hmac.compare_digest(given.encode(), csrf_token(token).encode())
