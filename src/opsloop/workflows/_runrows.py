"""What the run store reads and writes: a run's row (``RunRow``) and summary, a new run, a step's memo and
record, and the functions that turn the ``wf_runs`` / ``wf_steps`` columns into them (``row_to_run``).

``_runstore.py`` holds the statements; this module only the shapes they move and their narrowing, so a reader
of either finds one concept per file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from .._json import JsonObject, JsonValue
from ..narrow import as_float, as_int, as_str, json_objects, opt_float, opt_str
from ..state.base import Cursor

RUN_COLUMNS = (
    "id, workflow, status, dedupe_key, trigger_event, events, input, output, error, start_seq, priority, "
    "concurrency_key, debounce_key, wake_at, lease_owner, lease_until, attempts, rerun_of, created_at, "
    "started_at, finished_at, updated_at, pokes"
)


class LeaseLost(BaseException):
    """This worker no longer owns the run (cancelled, or another worker took it over)."""


@dataclass
class RunRow:
    id: str
    workflow: str
    status: str
    dedupe_key: str | None
    trigger: JsonObject | None
    events: list[JsonObject]
    input: JsonValue
    output: JsonValue
    error: str | None
    start_seq: int
    priority: int
    concurrency_key: str | None
    debounce_key: str | None
    wake_at: float | None
    lease_owner: str | None
    lease_until: float | None
    attempts: int
    rerun_of: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    pokes: int
    recovered: bool = False

    def summary(self) -> RunSummary:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "status": self.status,
            "trigger_event": self.trigger["id"] if self.trigger else None,
            "trigger_name": self.trigger["name"] if self.trigger else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wake_at": self.wake_at,
            "attempts": self.attempts,
            "priority": self.priority,
            "error": self.error,
            "rerun_of": self.rerun_of,
        }


@dataclass
class StepMemo:
    """A step as stored, read back when a run replays."""

    step_id: str
    kind: str
    status: str
    input: JsonValue
    output: JsonValue
    error: str | None
    attempts: int


@dataclass
class NewRun:
    """A run an event starts (``RunStore.insert_runs``)."""

    workflow: str
    trigger: JsonObject
    dedupe_key: str
    start_seq: int
    priority: int = 0
    concurrency_key: str | None = None
    lease_owner: str | None = None
    """Set: the run starts leased to this worker (no claim needed)."""
    lease: float = 0.0
    """Seconds the lease lasts."""


@dataclass
class StoredEvent:
    """An accepted event as ``wait_for_event`` scans for it (payload still text)."""

    seq: int
    id: str
    name: str
    payload_text: str | None
    received_at: float
    source: str | None
    endpoint: str | None


class RunSummary(TypedDict):
    """A run as the lists show it (``RunRow.summary``)."""

    id: str
    workflow: str
    status: str
    trigger_event: JsonValue
    trigger_name: JsonValue
    created_at: float
    started_at: float | None
    finished_at: float | None
    wake_at: float | None
    attempts: int
    priority: int
    error: str | None
    rerun_of: str | None


class StepRecord(TypedDict):
    """A step as ``RunStore.steps`` reads it (the run pages, the API, ``rerun --from-step``)."""

    step: str
    position: int
    kind: str
    status: str
    input: JsonValue
    output: JsonValue
    error: str | None
    attempts: int
    started_at: float | None
    finished_at: float | None
    duration_ms: float | None


def _loads(text: object) -> JsonValue:
    if text is None:
        return None
    value: JsonValue = json.loads(str(text))
    return value


def _loads_object(text: object) -> JsonObject | None:
    value = _loads(text)
    return value if isinstance(value, dict) else None


def _loads_objects(text: object) -> list[JsonObject]:
    return json_objects(_loads(text))


def _step_record(r: Sequence[object]) -> StepRecord:
    started, finished = opt_float(r[8], "wf_steps.started_at"), opt_float(r[9], "wf_steps.finished_at")
    return {
        "step": as_str(r[0], "wf_steps.step_id"), "position": as_int(r[1], "wf_steps.pos"),
        "kind": as_str(r[2], "wf_steps.kind"), "status": as_str(r[3], "wf_steps.status"), "input": _loads(r[4]),
        "output": _loads(r[5]), "error": opt_str(r[6], "wf_steps.error"), "attempts": as_int(r[7], "wf_steps.attempts"),
        "started_at": started, "finished_at": finished,
        "duration_ms": round((finished - started) * 1000, 1) if finished is not None and started is not None else None,
    }


def _one(cur: Cursor) -> tuple[object, ...]:
    """The row a statement that always returns one (an aggregate, an UPDATE of a locked row) returned."""
    row = cur.fetchone()
    if row is None:
        raise LookupError("the run store's statement returned no row")
    return row


def row_to_run(row: Sequence[object]) -> RunRow:
    """A ``wf_runs`` row (``RUN_COLUMNS``) as a ``RunRow``; a column of another type is a ``NarrowError`` naming it."""
    return RunRow(
        id=as_str(row[0], "wf_runs.id"), workflow=as_str(row[1], "wf_runs.workflow"),
        status=as_str(row[2], "wf_runs.status"), dedupe_key=opt_str(row[3], "wf_runs.dedupe_key"),
        trigger=_loads_object(row[4]), events=_loads_objects(row[5]), input=_loads(row[6]), output=_loads(row[7]),
        error=opt_str(row[8], "wf_runs.error"), start_seq=as_int(row[9], "wf_runs.start_seq"),
        priority=as_int(row[10], "wf_runs.priority"), concurrency_key=opt_str(row[11], "wf_runs.concurrency_key"),
        debounce_key=opt_str(row[12], "wf_runs.debounce_key"), wake_at=opt_float(row[13], "wf_runs.wake_at"),
        lease_owner=opt_str(row[14], "wf_runs.lease_owner"), lease_until=opt_float(row[15], "wf_runs.lease_until"),
        attempts=as_int(row[16], "wf_runs.attempts"), rerun_of=opt_str(row[17], "wf_runs.rerun_of"),
        created_at=as_float(row[18], "wf_runs.created_at"), started_at=opt_float(row[19], "wf_runs.started_at"),
        finished_at=opt_float(row[20], "wf_runs.finished_at"), updated_at=as_float(row[21], "wf_runs.updated_at"),
        pokes=as_int(row[22], "wf_runs.pokes"),
    )
