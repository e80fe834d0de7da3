"""Shared HTTP plumbing for API destinations: status codes become typed delivery errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..errors import TerminalDeliveryError, TransientDeliveryError


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def body_text(response: httpx.Response, limit: int = 500) -> str:
    text = response.text
    return text if len(text) <= limit else text[:limit] + "..."


Describe = Callable[[httpx.Response], str | None]
"""A destination's reading of its vendor's error body (None: show the body as it came)."""


def check(response: httpx.Response, what: str, describe: Describe | None = None) -> None:
    """Raise the typed error for a failed response: 429/5xx transient, other 4xx terminal."""
    if response.status_code < 400:
        return
    said = (describe(response) if describe else None) or body_text(response)
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientDeliveryError(f"{what}: HTTP {response.status_code}: {said}", retry_after(response))
    raise TerminalDeliveryError(f"{what}: HTTP {response.status_code}: {said}")


def request(client: httpx.Client, method: str, url: str, what: str, describe: Describe | None = None,
            **kwargs: Any) -> httpx.Response:
    """Send a request; connection failures and timeouts are transient."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"{what}: timed out ({exc})") from exc
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"{what}: cannot connect ({exc})") from exc
    check(response, what, describe)
    return response


def json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise TransientDeliveryError(f"{what}: the response was not JSON: {body_text(response)}") from exc
