"""The HTTP channel: httpx clients with the project's timeout, CA file and retries honouring Retry-After.

Every outbound HTTP call of a workflow step (``http.request``) or an API destination (webhook, HubSpot,
Zendesk, Salesforce) is made by a client from :func:`client` / :func:`async_client`. Their transport
answers a 429, 502, 503 or 504 by waiting (``Retry-After`` when the server sends one, else 0.5 s, 1 s,
2 s ...) and sending the same request again, up to ``retries`` times; a ``Retry-After`` longer than
``max_retry_delay`` is not waited for in the call: the response goes back to the caller, whose typed
error carries the delay for the workflow engine or sync runner to honour. A refused connection is
retried as well (httpx's connect retries).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

from ._settings import HttpSettings, with_overrides

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None without one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, or only those of ``ca_file`` when given."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under ``exc`` (httpx wraps it in ``ConnectError``, urllib in
    ``URLError.reason``), if any. Retrying will not fix it: the caller should fail terminally and point at
    ``ca_file``."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return None


CA_HINT = "trust its CA with ca_file (docs/project.md, \"Outbound channels\")"


def why_untrusted(error: ssl.SSLCertVerificationError) -> str:
    """``CERTIFICATE_VERIFY_FAILED: self-signed certificate``: OpenSSL's code and its reading."""
    return ": ".join(str(p) for p in (error.reason, error.verify_message) if p)


def _delay(response: httpx.Response, attempt: int, settings: HttpSettings) -> float | None:
    """How long to wait before attempt ``attempt + 1``, or None to hand the response back."""
    if response.status_code not in RETRY_STATUSES or attempt >= settings.retries:
        return None
    said = retry_after(response)
    wait = said if said is not None else min(0.5 * 2 ** attempt, settings.max_retry_delay)
    return wait if wait <= settings.max_retry_delay else None


class RetryTransport(httpx.BaseTransport):
    """Sends a request again after 429/502/503/504, waiting as the server asked."""

    def __init__(self, settings: HttpSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.sleep = sleep
        self.inner = httpx.HTTPTransport(verify=ssl_context(settings.ca_file), retries=settings.retries)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            response = self.inner.handle_request(request)
            wait = _delay(response, attempt, self.settings)
            if wait is None:
                return response
            response.read()
            response.close()
            self.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self.inner.close()


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """The asynchronous twin of :class:`RetryTransport`."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.inner = httpx.AsyncHTTPTransport(verify=ssl_context(settings.ca_file), retries=settings.retries)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            response = await self.inner.handle_async_request(request)
            wait = _delay(response, attempt, self.settings)
            if wait is None:
                return response
            await response.aread()
            await response.aclose()
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class ClientOptions(TypedDict, total=False):
    """What :func:`client` and :func:`async_client` hand on to httpx."""

    base_url: str
    headers: Mapping[str, str]
    auth: tuple[str, str]


def client(settings: HttpSettings, *, timeout: float | None = None, ca_file: Path | None = None,
           **kwargs: Unpack[ClientOptions]) -> httpx.Client:
    """An ``httpx.Client`` on the channel (``timeout`` / ``ca_file`` override the channel's for one caller);
    other keyword arguments (``base_url``, ``headers``, ``auth``) go to httpx."""
    chosen = with_overrides(settings, timeout=timeout, ca_file=ca_file)
    return httpx.Client(timeout=chosen.timeout, transport=RetryTransport(chosen), **kwargs)


def async_client(settings: HttpSettings, *, timeout: float | None = None, ca_file: Path | None = None,
                 **kwargs: Unpack[ClientOptions]) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on the channel; see :func:`client`."""
    chosen = with_overrides(settings, timeout=timeout, ca_file=ca_file)
    return httpx.AsyncClient(timeout=chosen.timeout, transport=AsyncRetryTransport(chosen), **kwargs)
