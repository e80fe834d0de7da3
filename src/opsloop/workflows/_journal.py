"""The journal a running workflow's ``Context`` writes to: its run's durable record.

``Context`` knows nothing of the engine: it records steps, waits and emitted events through this
protocol. The executor hands each run a journal bound to that run and to the worker's lease
(``_executor.RunJournal``), whose writes are group-committed and fenced by the lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypedDict

from .._json import JsonObject


class WaitSpec(TypedDict):
    """A ``wait_for_event`` as stored (the wait step's input)."""

    event: str
    match: str | None
    after_seq: int
    deadline: float | None


class Journal(Protocol):
    """One run's durable record. Every write raises ``LeaseLost`` when the worker no longer owns the run."""

    async def record_step(self, step_id: str, pos: int, kind: str, status: str, output: str | None,
                          error: str | None, attempts: int, started: float) -> None:
        """Store a step's outcome (``output`` is its JSON text), replacing an earlier attempt's."""
        ...

    async def register_wait(self, step_id: str, pos: int, spec: WaitSpec) -> None:
        """Store a wait (once), so that a matching event wakes the run."""
        ...

    async def resolve_wait(self, step_id: str, event: JsonObject | None) -> None:
        """Complete a wait with the event it found (None: it timed out)."""
        ...

    async def find_event(self, spec: WaitSpec, context: Mapping[str, object]) -> JsonObject | None:
        """The first event in the log after the wait's position that its match accepts."""
        ...

    async def emit(self, step_id: str, pos: int, name: str, data: object) -> str:
        """Append an event to the log together with its step; returns the event's id."""
        ...
