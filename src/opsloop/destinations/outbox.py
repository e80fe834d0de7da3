"""``type: outbox`` — the sandbox: records what would be sent in the state store's outbox.

For demos (no accounts), previews and tests. ``opsloop`` shows the recorded items; nothing leaves the machine.
"""

from __future__ import annotations

from pydantic import ConfigDict

from .. import outbox
from ..errors import TerminalDeliveryError
from .base import Destination, DestinationConfig, RowOp, RowResult


class OutboxConfig(DestinationConfig):
    # The outbox may stand in for any destination (``type: "${CRM_SYNC_TYPE:-outbox}"``), so the real
    # destination's keys (object, token_env, base_url ...) are accepted and ignored here.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str | None = None
    """The outbox ``destination`` label (default ``sync:<sync name>``)."""
    object: str | None = None
    """Recorded as the outbox item's ``target`` (e.g. ``contacts``)."""


class OutboxDestination(Destination):
    type = "outbox"
    Config = OutboxConfig
    IDEMPOTENT = False
    DELETES = True
    MAX_BATCH = 10000
    config: OutboxConfig

    def send(self, batch: list[RowOp]) -> list[RowResult]:
        store = self.ctx.store
        if store is None:
            raise TerminalDeliveryError("the outbox destination needs the app's state store", every_request=True)
        label = self.config.name or f"sync:{self.ctx.sync}"
        results = []
        with store.transaction() as cur:
            for row in batch:
                payload = {"fields": row.fields, "idempotency_key": row.idempotency_key}
                item = outbox.record(store, label, row.op, payload, target=self.config.object, key=row.key, cur=cur)
                results.append(RowResult(row.key, True, dest_id=row.dest_id or item,
                                         created=row.new and row.op != "delete"))
        return results

