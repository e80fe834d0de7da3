"""http.request: call an HTTP API with an ``Idempotency-Key`` (run and step) so a retried call can be deduped.

429 and 5xx responses and connection failures are transient (retried with backoff, honouring
Retry-After); other 4xx are terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ...errors import TerminalDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    from ..context import Context


class HttpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    url: str
    method: str = "POST"
    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: float = 30.0


async def request(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = HttpRequest.model_validate(params)
    headers = {"Idempotency-Key": f"{ctx.run_id}:{ctx.step_id}", **spec.headers}
    try:
        async with httpx.AsyncClient(timeout=spec.timeout) as client:
            response = await client.request(
                spec.method.upper(), spec.url, headers=headers,
                json=spec.json_body if spec.body is None else None,
                content=spec.body.encode() if spec.body is not None else None,
            )
    except httpx.HTTPError as exc:
        raise TransientDeliveryError(f"{spec.method.upper()} {spec.url}: {type(exc).__name__}: {exc}") from exc
    text = response.text
    if response.status_code == 429 or response.status_code >= 500:
        after = response.headers.get("retry-after")
        raise TransientDeliveryError(
            f"{spec.method.upper()} {spec.url} answered {response.status_code}: {text[:300]}",
            retry_after=float(after) if after and after.replace(".", "", 1).isdigit() else None,
        )
    if response.status_code >= 400:
        raise TerminalDeliveryError(f"{spec.method.upper()} {spec.url} answered {response.status_code}: {text[:300]}")
    try:
        data: Any = response.json()
    except ValueError:
        data = text
    return {"status": response.status_code, "body": data}
