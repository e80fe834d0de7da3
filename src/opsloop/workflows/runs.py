"""Runs as stored: listing, inspecting, cancelling, pausing, rerunning. Used by the engine, CLI and API.

These functions work on the state store alone, so the CLI can use them while a server is running
(SQLite in WAL mode and Postgres both allow it); the server notices changes within its poll interval.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .._ids import new_id
from ..errors import OpsloopError
from ..state import StateStore
from ..state.base import like_pattern

ACTIVE = ("queued", "running", "sleeping", "waiting")
FINISHED = ("completed", "failed", "cancelled")
RUN_STATUSES = ACTIVE + FINISHED

RUN_COLUMNS = (
    "id, workflow, status, dedupe_key, trigger_event, events, input, output, error, start_seq, priority, "
    "concurrency_key, debounce_key, wake_at, lease_owner, lease_until, attempts, rerun_of, created_at, "
    "started_at, finished_at, updated_at, pokes"
)


class RunError(OpsloopError):
    """A run operation cannot be done; the message says why and what to do."""


@dataclass
class RunRow:
    id: str
    workflow: str
    status: str
    dedupe_key: str | None
    trigger: dict[str, Any] | None
    events: list[dict[str, Any]]
    input: Any
    output: Any
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

    def summary(self) -> dict[str, Any]:
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


def _loads(text: Any) -> Any:
    return json.loads(text) if text is not None else None


def row_to_run(row: tuple[Any, ...]) -> RunRow:
    return RunRow(
        id=row[0], workflow=row[1], status=row[2], dedupe_key=row[3], trigger=_loads(row[4]),
        events=_loads(row[5]) or [], input=_loads(row[6]), output=_loads(row[7]), error=row[8],
        start_seq=int(row[9]), priority=int(row[10]), concurrency_key=row[11], debounce_key=row[12],
        wake_at=row[13], lease_owner=row[14], lease_until=row[15], attempts=int(row[16]), rerun_of=row[17],
        created_at=row[18], started_at=row[19], finished_at=row[20], updated_at=row[21], pokes=int(row[22]),
    )


def insert_run(
    store: StateStore, cur: Any, workflow: str, trigger: dict[str, Any] | None, *, dedupe_key: str | None,
    start_seq: int, events: list[dict[str, Any]] | None = None, input: Any = None, priority: int = 0,
    concurrency_key: str | None = None, debounce_key: str | None = None, wake_at: float | None = None,
    rerun_of: str | None = None, run_id: str | None = None,
) -> str | None:
    """Insert a queued run; None when (workflow, dedupe_key) already has one (an at-least-once redelivery)."""
    now = time.time()
    run_id = run_id or new_id("run_")
    row = store.execute(
        cur,
        "INSERT INTO wf_runs (id, workflow, status, dedupe_key, trigger_event, events, input, start_seq, priority, "
        "concurrency_key, debounce_key, wake_at, rerun_of, created_at, updated_at) "
        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (workflow, dedupe_key) DO NOTHING RETURNING id",
        (
            run_id, workflow, dedupe_key, json.dumps(trigger) if trigger is not None else None,
            json.dumps(events if events is not None else ([trigger] if trigger else [])),
            json.dumps(input) if input is not None else None, start_seq, priority, concurrency_key, debounce_key,
            now if wake_at is None else wake_at, rerun_of, now, now,
        ),
    ).fetchone()
    return str(row[0]) if row else None


def get_run(store: StateStore, run_id: str) -> RunRow | None:
    rows = store.query(f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE id = ?", (run_id,))
    return row_to_run(rows[0]) if rows else None


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
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (("workflow", workflow), ("status", status)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at <= ?")
        params.append(until)
    if before is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [before[0], before[0], before[1]]
    if search:
        where.append("(LOWER(trigger_event) LIKE ? ESCAPE '\\' OR LOWER(error) LIKE ? ESCAPE '\\' OR id = ?)")
        pattern = like_pattern(search)
        params += [pattern, pattern, search.strip()]
    rows = store.query(
        f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    return [row_to_run(r) for r in rows]


def runs_for_event(store: StateStore, event_id: str, limit: int = 50) -> list[RunRow]:
    """The runs ``event_id`` started (its trigger), newest first."""
    # trigger_event holds the event as JSON (its id inside); the text match narrows, the id decides
    rows = store.query(f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE LOWER(trigger_event) LIKE ? ESCAPE '\\' "
                       "ORDER BY created_at DESC LIMIT ?", (like_pattern(event_id), limit))
    found = [row_to_run(r) for r in rows]
    return [r for r in found if r.trigger and r.trigger.get("id") == event_id]


def run_steps(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT step_id, pos, kind, status, input, output, error, attempts, started_at, finished_at "
        "FROM wf_steps WHERE run_id = ? ORDER BY pos",
        (run_id,),
    )
    return [
        {
            "step": r[0], "position": r[1], "kind": r[2], "status": r[3], "input": _loads(r[4]),
            "output": _loads(r[5]), "error": r[6], "attempts": r[7], "started_at": r[8], "finished_at": r[9],
            "duration_ms": round((r[9] - r[8]) * 1000, 1) if r[9] is not None else None,
        }
        for r in rows
    ]


def run_detail(store: StateStore, run_id: str) -> dict[str, Any]:
    run = require_run(store, run_id)
    return {**run.summary(), "trigger": run.trigger, "events": run.events, "input": run.input,
            "output": run.output, "steps": run_steps(store, run_id)}


def cancel_run(store: StateStore, run_id: str, reason: str = "cancelled by a user") -> RunRow:
    run = require_run(store, run_id)
    if run.status in FINISHED:
        raise RunError(f"run {run_id} is already {run.status}; nothing to cancel")
    now = time.time()
    with store.transaction() as cur:
        store.execute(
            cur,
            "UPDATE wf_runs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, wake_at = NULL, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ?",
            (reason, now, now, run_id),
        )
        store.execute(cur, "DELETE FROM wf_waits WHERE run_id = ?", (run_id,))
    return require_run(store, run_id)


def set_paused(store: StateStore, workflow: str, paused: bool, known: set[str] | None = None) -> None:
    """Pause or resume a workflow: while paused its triggers keep queueing runs; none is started."""
    if known is not None and workflow not in known:
        raise RunError(f"no workflow {workflow!r}; workflows: {', '.join(sorted(known)) or 'none'}")
    now = time.time()
    with store.transaction() as cur:
        store.execute(
            cur,
            "INSERT INTO wf_workflows (name, paused, since_seq, created_at, updated_at) VALUES (?, ?, 0, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
            (workflow, 1 if paused else 0, now, now),
        )
        if not paused:
            # runs that became due while paused start now
            store.execute(
                cur,
                "UPDATE wf_runs SET updated_at = ? WHERE workflow = ? AND status = 'queued'",
                (now, workflow),
            )


def paused_workflows(store: StateStore) -> set[str]:
    return {str(r[0]) for r in store.query("SELECT name FROM wf_workflows WHERE paused = 1")}


def rerun(store: StateStore, run_id: str, from_step: str | None = None, input: Any = None) -> str:
    """A new run of the same workflow and trigger; ``from_step`` reuses the results of the steps before it."""
    run = require_run(store, run_id)
    steps = run_steps(store, run_id)
    keep: list[dict[str, Any]] = []
    if from_step is not None:
        names = [s["step"] for s in steps]
        if from_step not in names:
            raise RunError(
                f"run {run_id} has no step {from_step!r}; its steps are: {', '.join(names) or 'none'}"
            )
        keep = steps[: names.index(from_step)]
    new = new_id("run_")
    now = time.time()
    with store.transaction() as cur:
        insert_run(
            store, cur, run.workflow, run.trigger, dedupe_key=None, start_seq=run.start_seq, events=run.events,
            input=input if input is not None else run.input, priority=run.priority,
            concurrency_key=run.concurrency_key, rerun_of=run.id, run_id=new,
        )
        for s in keep:
            if s["status"] != "completed":
                continue
            store.execute(
                cur,
                "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, "
                "started_at, finished_at) VALUES (?, ?, ?, ?, 'completed', ?, ?, NULL, ?, ?, ?)",
                (new, s["step"], s["position"], s["kind"], json.dumps(s["input"]) if s["input"] is not None else None,
                 json.dumps(s["output"]), s["attempts"], now, now),
            )
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
    with store.transaction() as cur:
        ids = [r[0] for r in store.execute(
            cur, "SELECT id FROM wf_runs WHERE status IN ('completed', 'failed', 'cancelled') AND created_at < ?",
            (older_than,),
        ).fetchall()]
        for run_id in ids:
            store.execute(cur, "DELETE FROM wf_steps WHERE run_id = ?", (run_id,))
            store.execute(cur, "DELETE FROM wf_runs WHERE id = ?", (run_id,))
        # old schedule ticks, keeping each schedule's latest (it marks where the schedule stands)
        store.execute(
            cur,
            "DELETE FROM wf_schedule_ticks WHERE created_at < ? AND tick < "
            "(SELECT MAX(t.tick) FROM wf_schedule_ticks t WHERE t.schedule = wf_schedule_ticks.schedule)",
            (older_than,),
        )
    return len(ids)
