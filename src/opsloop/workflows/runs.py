"""Runs as stored: listing, inspecting, cancelling, pausing, rerunning. Used by the engine, CLI and API.

These functions work on the state store alone, so the CLI can use them while a server is running
(SQLite in WAL mode and Postgres both allow it); the server notices changes within its poll interval.
Their SQL is the run store's (``_runstore.py``), the one owner of the ``wf_*`` tables.
"""

from __future__ import annotations

from .._ids import new_id
from .._json import JsonObject, JsonValue
from ..errors import OpsloopError
from ..state import StateStore
from ._runstore import RUN_COLUMNS, Cursor, NewRun, RunRow, RunStore, RunSummary, StepRecord, row_to_run

__all__ = [
    "ACTIVE", "FINISHED", "RUN_COLUMNS", "RUN_STATUSES", "NewRun", "RunDetail", "RunError", "RunRow", "RunSummary",
    "StepRecord", "cancel_run", "get_run", "get_runs", "insert_run", "list_runs", "paused_workflows", "purge_runs",
    "replay_runs", "require_run", "rerun", "row_to_run", "run_detail", "run_steps", "set_paused",
]

ACTIVE = ("queued", "running", "sleeping", "waiting")
FINISHED = ("completed", "failed", "cancelled")
RUN_STATUSES = ACTIVE + FINISHED


class RunError(OpsloopError):
    """A run operation cannot be done; the message says why and what to do."""


class RunDetail(RunSummary):
    """A run with its trigger, events, input, output and steps (``opsloop runs show``, ``/api/runs/<id>``)."""

    trigger: JsonObject | None
    events: list[JsonObject]
    input: JsonValue
    output: JsonValue
    steps: list[StepRecord]


def insert_run(
    store: StateStore, cur: Cursor, workflow: str, trigger: JsonObject | None, *, dedupe_key: str | None,
    start_seq: int, events: list[JsonObject] | None = None, input: JsonValue = None, priority: int = 0,
    concurrency_key: str | None = None, debounce_key: str | None = None, wake_at: float | None = None,
    rerun_of: str | None = None, run_id: str | None = None,
) -> str | None:
    """Insert a queued run; None when (workflow, dedupe_key) already has one (an at-least-once redelivery)."""
    return RunStore(store).insert_run(
        cur, workflow, trigger, dedupe_key=dedupe_key, start_seq=start_seq, events=events, input=input,
        priority=priority, concurrency_key=concurrency_key, debounce_key=debounce_key, wake_at=wake_at,
        rerun_of=rerun_of, run_id=run_id,
    )


def get_run(store: StateStore, run_id: str) -> RunRow | None:
    return RunStore(store).get(run_id)


def get_runs(store: StateStore, run_ids: list[str]) -> list[RunRow]:
    """The runs of ``run_ids`` that exist (at most 500), in no particular order."""
    return RunStore(store).get_many(run_ids)


def require_run(store: StateStore, run_id: str) -> RunRow:
    run = get_run(store, run_id)
    if run is None:
        raise RunError(f"no run {run_id!r}; list runs with `opsloop runs`")
    return run


def list_runs(
    store: StateStore, workflow: str | None = None, status: str | None = None, since: float | None = None,
    until: float | None = None, limit: int = 100, before: tuple[float, str] | None = None,
    search: str | None = None,
) -> list[RunRow]:
    """Newest first. ``before`` (the last row's ``created_at`` and ``id``) pages on, keyset; ``search``
    finds the text in the trigger event or the error (case-insensitive), or a run id."""
    if status is not None and status not in RUN_STATUSES:
        raise RunError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")
    return RunStore(store).list_runs(workflow, status, since, until, limit, before, search)


def runs_for_event(store: StateStore, event_id: str, limit: int = 50) -> list[RunRow]:
    """The runs ``event_id`` started (its trigger), newest first."""
    return RunStore(store).runs_for_event(event_id, limit)


def run_steps(store: StateStore, run_id: str) -> list[StepRecord]:
    return RunStore(store).steps(run_id)


def run_detail(store: StateStore, run_id: str) -> RunDetail:
    run = require_run(store, run_id)
    return {**run.summary(), "trigger": run.trigger, "events": run.events, "input": run.input,
            "output": run.output, "steps": run_steps(store, run_id)}


def cancel_run(store: StateStore, run_id: str, reason: str = "cancelled by a user") -> RunRow:
    run = require_run(store, run_id)
    if run.status in FINISHED:
        raise RunError(f"run {run_id} is already {run.status}; nothing to cancel")
    with store.transaction() as cur:
        RunStore(store).cancel(cur, run_id, reason)
    return require_run(store, run_id)


def set_paused(store: StateStore, workflow: str, paused: bool, known: set[str] | None = None) -> None:
    """Pause or resume a workflow: while paused its triggers keep queueing runs; none is started."""
    if known is not None and workflow not in known:
        raise RunError(f"no workflow {workflow!r}; workflows: {', '.join(sorted(known)) or 'none'}")
    RunStore(store).set_paused(workflow, paused)


def paused_workflows(store: StateStore) -> set[str]:
    return RunStore(store).paused()


def rerun(store: StateStore, run_id: str, from_step: str | None = None, input: JsonValue = None) -> str:
    """A new run of the same workflow and trigger; ``from_step`` reuses the results of the steps before it."""
    run = require_run(store, run_id)
    steps = run_steps(store, run_id)
    keep: list[StepRecord] = []
    if from_step is not None:
        names = [s["step"] for s in steps]
        if from_step not in names:
            raise RunError(
                f"run {run_id} has no step {from_step!r}; its steps are: {', '.join(names) or 'none'}"
            )
        keep = steps[: names.index(from_step)]
    new = new_id("run_")
    wf_runs = RunStore(store)
    with store.transaction() as cur:
        wf_runs.insert_run(
            cur, run.workflow, run.trigger, dedupe_key=None, start_seq=run.start_seq, events=run.events,
            input=input if input is not None else run.input, priority=run.priority,
            concurrency_key=run.concurrency_key, rerun_of=run.id, run_id=new,
        )
        wf_runs.copy_completed_steps(cur, new, [s for s in keep if s["status"] == "completed"])
    return new


def replay_runs(
    store: StateStore, workflow: str | None, status: str | None, since: float | None, until: float | None,
    limit: int = 10000,
) -> list[tuple[str, str]]:
    """Rerun every finished run matching the filters, oldest first; returns (old id, new id) pairs."""
    chosen = [r for r in list_runs(store, workflow, status, since, until, limit) if r.status in FINISHED]
    return [(r.id, rerun(store, r.id)) for r in reversed(chosen)]


def purge_runs(store: StateStore, older_than: float) -> int:
    """Delete finished runs (and their steps) created before ``older_than``."""
    return RunStore(store).purge(older_than)
