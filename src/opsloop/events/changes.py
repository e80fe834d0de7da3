"""What a load event says changed in the warehouse: the tables a pull (``source.<name>.loaded``) or another
writer (``warehouse.changed``) wrote, read by every subsystem that reacts to data landing (the model engine
rebuilds their readers, dashboards refresh the tiles over them)."""

from __future__ import annotations

import json

from ..state import EventRecord

CHANGED = "warehouse.changed"
"""The event that says rows changed in warehouse tables outside a model build: ``{"tables": ["schema.table",
...], "by": "..."}``. Seed loads write it; a workflow that writes the warehouse emits it (``event.emit``)."""


def changed_tables(event: EventRecord) -> list[str]:
    """The ``schema.table`` relations a load event says it changed: ``source.<name>.loaded`` (its ``tables``
    maps stream to relation) and ``warehouse.changed`` (a list). Only opsloop's own events count: a webhook
    (an event with an endpoint) cannot make the models rebuild by naming itself so. A pull's ``unchanged``
    tables (rows re-read and compared, none changed) are left out."""
    if event.endpoint is not None or not (
            event.name == CHANGED or (event.name.startswith("source.") and event.name.endswith(".loaded"))):
        return []
    payload = event.payload
    if payload is None and event.payload_text is not None:
        try:
            payload = json.loads(event.payload_text)
        except ValueError:
            return []
    if not isinstance(payload, dict):
        return []
    tables = payload.get("tables")
    if isinstance(tables, dict):
        tables = list(tables.values())
    if isinstance(tables, str):
        tables = [tables]
    if not isinstance(tables, list):
        return []
    # a pull that re-read rows (its lag window) and found none changed leaves their readers as they are
    unchanged = payload.get("unchanged")
    skip = {t.lower() for t in unchanged if isinstance(t, str)} if isinstance(unchanged, list) else set()
    return [t.lower() for t in tables if isinstance(t, str) and "." in t and t.lower() not in skip]
