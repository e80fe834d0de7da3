"""Loads the event log into the warehouse's ``raw.events`` table in small Arrow batches.

The loader's cursor lives in the warehouse itself (the highest ``seq`` loaded), so a crash between the
warehouse write and a cursor save can neither skip nor duplicate an event.
"""

from __future__ import annotations

import json

import pyarrow as pa

from ..narrow import as_int
from ..state import EventRecord
from ..warehouse import Warehouse
from .clock import StageClock

RAW_SCHEMA = "raw"
RAW_TABLE = "raw.events"

_ARROW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("seq", pa.int64()),
        ("endpoint", pa.string()),
        ("name", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("idempotency_key", pa.string()),
        ("source", pa.string()),
        ("payload", pa.string()),
    ]
)


class RawEventLoader:
    def __init__(self, warehouse: Warehouse, clock: StageClock | None = None) -> None:
        self.warehouse = warehouse
        self.clock = clock or StageClock()
        self.loaded = 0
        self._ready = False

    def ensure_table(self) -> None:
        if self._ready:
            return
        self.warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        self.warehouse.execute(
            f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} (event_id VARCHAR PRIMARY KEY, seq BIGINT, endpoint VARCHAR, "
            "name VARCHAR, received_at TIMESTAMPTZ, idempotency_key VARCHAR, source VARCHAR, payload JSON)"
        )
        self._ready = True

    def cursor(self) -> int:
        self.ensure_table()
        value = self.warehouse.query(f"SELECT COALESCE(MAX(seq), 0) FROM {RAW_TABLE}").rows[0][0]
        return as_int(value)

    def load(self, events: list[EventRecord]) -> int:
        self.ensure_table()
        table = pa.Table.from_pydict(
            {
                "event_id": [e.id for e in events],
                "seq": [e.seq for e in events],
                "endpoint": [e.endpoint for e in events],
                "name": [e.name for e in events],
                "received_at": pa.array([int(e.received_at * 1_000_000) for e in events], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "idempotency_key": [e.idempotency_key for e in events],
                "source": [e.source for e in events],
                "payload": [
                    e.payload_text if e.payload_text is not None else (json.dumps(e.payload) if e.payload is not None
                                                                       else None)
                    for e in events
                ],
            },
            schema=_ARROW_SCHEMA,
        )
        written = self.warehouse.insert_arrow(RAW_TABLE, table)
        self.loaded += written
        return written

    async def handle(self, events: list[EventRecord]) -> None:
        await self.clock.in_thread("raw.events load", len(events), lambda: self.load(events))
