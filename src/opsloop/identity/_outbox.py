"""Moves queued identity events from ``identity.outbox`` (warehouse) into the event log (state store).

Events are written to the outbox in the same warehouse transaction as the change they describe, then appended
to the log with their outbox key as idempotency key; a crash between the two re-sends them and the log
drops the duplicates, so each change reaches the log exactly once.
"""

from __future__ import annotations

import json
import time

from .._ids import new_id
from ..state import NewEvent, StateStore
from ._sql import Conn

BATCH = 1000


def flush(db: Conn, store: StateStore, retention_days: int = 30) -> int:
    """Append every queued event to the log; returns how many were new."""
    if not db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                  "AND table_name = 'outbox'"):
        return 0
    written = 0
    while True:
        rows = db.rows("SELECT key, name, payload FROM identity.outbox ORDER BY created_at, name, key LIMIT ?",
                       (BATCH,))
        if not rows:
            return written
        now = time.time()
        expires = now + retention_days * 86400.0
        events = [NewEvent(id=new_id("evt_"), name=str(name), received_at=now, payload=json.loads(str(payload)),
                           source="identity", idempotency_key=None if key is None else str(key),
                           dedupe_until=expires, expires_at=expires)
                  for key, name, payload in rows]
        results = store.append_events(events)
        written += sum(1 for r in results if r.duplicate_of is None)
        keys = [r[0] for r in rows]
        db.x(f"DELETE FROM identity.outbox WHERE key IN ({', '.join('?' for _ in keys)})", keys)
