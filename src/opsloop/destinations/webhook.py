"""``type: webhook`` — POST rows as Standard Webhooks messages (signed, with a stable ``webhook-id``).

One message carries a batch of rows: ``{"type": "sync.rows", "timestamp": ..., "data": {"sync", "rows":
[{"key", "op", "fields", "idempotency_key"}]}}``. The ``webhook-id`` is derived from the rows' contents, so
a batch sent again after a crash carries the same id and the receiver can drop it. A 2xx accepts every row
unless the body says ``{"errors": {"<key>": "why"}}``; a 4xx rejects the batch (the runner splits it to
find the bad rows); 429 and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from .._json import JsonValue
from . import _http
from .base import Destination, DestinationConfig, DestinationContext, RowOp, RowResult

if TYPE_CHECKING:
    from standardwebhooks import Webhook


class WebhookConfig(DestinationConfig):
    url: str
    secret_env: str | None = None
    """Environment variable with the Standard Webhooks secret (``whsec_...``); unsigned when unset."""
    event_type: str = "sync.rows"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)
    """Seconds per request (default: ``channels.http.timeout``)."""
    ca_file: str | None = None
    """PEM file of CAs to trust for ``url`` (default: ``channels.http.ca_file``, else the system's)."""


def message_id(batch: list[RowOp]) -> str:
    digest = hashlib.md5("\n".join(sorted(r.idempotency_key for r in batch)).encode(), usedforsecurity=False)
    return "msg_" + digest.hexdigest()


class WebhookDestination(Destination):
    type = "webhook"
    Config = WebhookConfig
    IDEMPOTENT = True
    DELETES = True
    MAX_BATCH = 1000
    config: WebhookConfig

    def __init__(self, config: BaseModel, ctx: DestinationContext) -> None:
        super().__init__(config, ctx)
        self._client = _http.client(ctx, timeout=self.config.timeout, ca_file=self.config.ca_file)
        secret = ctx.secret(self.config.secret_env) if self.config.secret_env else None
        self._signer: Webhook | None = None
        if secret:
            from standardwebhooks import Webhook

            self._signer = Webhook(secret)

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "type": self.config.event_type,
                "timestamp": now.isoformat(),
                "data": {
                    "sync": self.ctx.sync,
                    "rows": [
                        {"key": r.key, "op": r.op, "fields": r.fields, "idempotency_key": r.idempotency_key}
                        for r in batch
                    ],
                },
            },
            default=str,
            separators=(",", ":"),
        )
        msg_id = message_id(batch)
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(int(now.timestamp())), **self.config.headers}
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(msg_id, now, body)
        response = _http.request(self._client, "POST", self.config.url, f"webhook {self.config.url}",
                                 content=body.encode(), headers=headers)
        errors: dict[str, JsonValue] = {}
        if response.headers.get("content-type", "").startswith("application/json"):
            data: JsonValue
            try:
                data = response.json()
            except ValueError:
                data = None
            said = data.get("errors") if isinstance(data, dict) else None
            if isinstance(said, dict):
                errors = said
        return [
            RowResult(r.key, r.key not in errors, error=str(errors[r.key]) if r.key in errors else None,
                      dest_id=r.dest_id or r.key, created=r.new and r.op != "delete")
            for r in batch
        ]

    def close(self) -> None:
        self._client.close()

