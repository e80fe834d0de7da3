"""Shared HTTP plumbing for API destinations: status codes become typed delivery errors.

Clients come from :func:`client` (the project's HTTP channel: timeout, CA file, in-call retries of
429/502/503/504 honouring Retry-After); what still fails reaches the sync runner as a typed error."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TypedDict, Unpack

import httpx

from .._json import JsonValue
from ..channels import ca_path
from ..channels import http as http_channel
from ..channels.http import ClientOptions, retry_after
from ..errors import TerminalDeliveryError, TransientDeliveryError
from .base import DestinationContext


def client(ctx: DestinationContext, *, timeout: float | None = None, ca_file: str | None = None,
           **kwargs: Unpack[ClientOptions]) -> httpx.Client:
    """An httpx client on the project's HTTP channel; a destination's own ``timeout`` / ``ca_file``
    (relative to the project folder) override the channel's."""
    return http_channel.client(ctx.outbound().http, timeout=timeout, ca_file=ca_path(ctx.root, ca_file),
                               **kwargs)


__all__ = ["RequestOptions", "body_text", "check", "client", "json_body", "request", "retry_after"]


class RequestOptions(TypedDict, total=False):
    """What :func:`request` hands on to ``httpx.Client.request``."""

    json: object
    content: bytes
    params: Mapping[str, str]
    headers: Mapping[str, str]


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
    # 401/403: the credentials or their scopes, whatever the rows; other 4xx may be one bad row of the batch
    raise TerminalDeliveryError(f"{what}: HTTP {response.status_code}: {said}",
                                every_request=response.status_code in (401, 403))


def request(client: httpx.Client, method: str, url: str, what: str, describe: Describe | None = None,
            **kwargs: Unpack[RequestOptions]) -> httpx.Response:
    """Send a request; connection failures and timeouts are transient."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"{what}: timed out ({exc})") from exc
    except httpx.TransportError as exc:
        bad_cert = http_channel.certificate_error(exc)
        if bad_cert is not None:
            raise TerminalDeliveryError(f"{what}: the server's certificate is not trusted "
                                        f"({http_channel.why_untrusted(bad_cert)}); {http_channel.CA_HINT}",
                                        every_request=True) from exc
        raise TransientDeliveryError(f"{what}: cannot connect ({exc})") from exc
    check(response, what, describe)
    return response


def json_body(response: httpx.Response, what: str) -> JsonValue:
    try:
        body: JsonValue = response.json()
    except json.JSONDecodeError as exc:
        raise TransientDeliveryError(f"{what}: the response was not JSON: {body_text(response)}") from exc
    return body
