"""The type of a route's handler, for the functions that make one (``pauser(True)``, ``page("runs")``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

from starlette.requests import Request
from starlette.responses import Response

Handler: TypeAlias = Callable[[Request], Awaitable[Response]]
"""An ``async def handler(request) -> Response`` that ``Route(path, handler)`` takes."""
