"""``type: outbox`` — the sandbox: records what would be sent in the state store's outbox.

For demos (no accounts), previews and tests. ``opsloop`` shows the recorded items; nothing leaves the machine.
"""

from __future__ import annotations

from .. import outbox
from .base import Destination, DestinationConfig, RowOp, RowResult


class OutboxConfig(DestinationConfig):
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
        label = self.config.name or f"sync:{self.ctx.sync}"
        results = []
        with store.transaction() as cur:
            for row in batch:
                payload = {"fields": row.fields, "idempotency_key": row.idempotency_key}
                item = outbox.record(store, label, row.op, payload, target=self.config.object, key=row.key, cur=cur)
                results.append(RowResult(row.key, True, dest_id=row.dest_id or item,
                                         created=row.new and row.op != "delete"))
        return results

