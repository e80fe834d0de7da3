"""http.request: call an HTTP API with an ``Idempotency-Key`` (run and step) so a retried call can be deduped.

The call goes through the project's HTTP channel (``channels.http``: timeout, CA file, retries of
429/502/503/504 honouring Retry-After within the call). What still fails after those is transient for the
step (retried with backoff, honouring Retry-After) when it is a 429, a 5xx or a connection failure; other
4xx are terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ..._json import JsonObject, JsonValue
from ...channels import channels_of
from ...channels import http as http_channel
from ...errors import TerminalDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from ..context import Context


class HttpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    url: str
    method: str = "POST"
    headers: dict[str, str] = {}
    json_body: object = Field(default=None, alias="json")
    body: str | None = None
    timeout: float | None = None
    """Seconds for the call (default: ``channels.http.timeout``)."""


async def request(ctx: Context, params: dict[str, object]) -> JsonObject:
    spec = HttpRequest.model_validate(params)
    headers = {"Idempotency-Key": f"{ctx.run_id}:{ctx.step_id}", **spec.headers}
    try:
        settings = channels_of(ctx.app.project).http
        async with http_channel.async_client(settings, timeout=spec.timeout) as client:
            response = await client.request(
                spec.method.upper(), spec.url, headers=headers,
                json=spec.json_body if spec.body is None else None,
                content=spec.body.encode() if spec.body is not None else None,
            )
    except httpx.HTTPError as exc:
        bad_cert = http_channel.certificate_error(exc)
        if bad_cert is not None:
            why = http_channel.why_untrusted(bad_cert)
            raise TerminalDeliveryError(f"{spec.method.upper()} {spec.url}: the server's certificate is not "
                                        f"trusted ({why}); {http_channel.CA_HINT}") from exc
        raise TransientDeliveryError(f"{spec.method.upper()} {spec.url}: {type(exc).__name__}: {exc}") from exc
    text = response.text
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientDeliveryError(
            f"{spec.method.upper()} {spec.url} answered {response.status_code}: {text[:300]}",
            retry_after=http_channel.retry_after(response),
        )
    if response.status_code >= 400:
        raise TerminalDeliveryError(f"{spec.method.upper()} {spec.url} answered {response.status_code}: {text[:300]}")
    try:
        data: JsonValue = response.json()
    except ValueError:
        data = text
    return {"status": response.status_code, "body": data}
