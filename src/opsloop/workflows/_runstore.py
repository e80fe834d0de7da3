"""The run store: every statement over the ``wf_*`` tables the engine runs.

The engine's other parts (trigger handling, the executor, the scheduler) and the run operations in
``runs.py`` call these methods; none of them writes SQL over ``wf_*`` itself. Methods that take a cursor
run inside the caller's transaction (the trigger's cursor advance, a batch of step writes); the others
open their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypedDict

from .._ids import new_id
from .._json import JsonObject, JsonValue
from ..narrow import as_float, as_int, as_str, json_objects, opt_bytes, opt_float, opt_str
from ..state import NewEvent, StateStore, payload_text_of
from ..state.base import Cursor, like_pattern
from ._journal import WaitSpec

RUN_COLUMNS = (
    "id, workflow, status, dedupe_key, trigger_event, events, input, output, error, start_seq, priority, "
    "concurrency_key, debounce_key, wake_at, lease_owner, lease_until, attempts, rerun_of, created_at, "
    "started_at, finished_at, updated_at, pokes"
)

__all__ = ["RUN_COLUMNS", "Cursor", "LeaseLost", "NewRun", "RunRow", "RunStore", "RunSummary", "StepMemo",
           "StepRecord", "StoredEvent", "row_to_run"]


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


class RunStore:
    """The ``wf_*`` tables of one state store."""

    def __init__(self, store: StateStore, lane: str | None = None) -> None:
        self.store = store
        self.lane = lane
        """The store's write lane for this owner's transactions (the engine's own on Postgres)."""

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction in this owner's lane."""
        return self.store.transaction(lane=self.lane)

    @property
    def backend(self) -> str:
        return self.store.backend

    def _x(self, cur: Cursor, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self.store.execute(cur, sql, params)

    # -- workflows ---------------------------------------------------------------------------
    def register_workflows(self, names: Collection[str], resume_running: bool) -> dict[str, int]:
        """Record each workflow (with the log position it starts from); returns every workflow's start.

        ``resume_running``: this process alone owns the store (SQLite), so whatever was running when it
        stopped is its to resume now.
        """
        now = time.time()
        top = self.store.max_seq()
        with self.transaction() as cur:
            for name in names:
                self._x(
                    cur,
                    "INSERT INTO wf_workflows (name, paused, since_seq, created_at, updated_at) VALUES (?, 0, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, top, now, now),
                )
            if resume_running:
                self._x(cur, "UPDATE wf_runs SET lease_until = 0 WHERE status = 'running'")
        return {str(r[0]): as_int(r[1], "wf_workflows.since_seq")
                for r in self.store.query("SELECT name, since_seq FROM wf_workflows")}

    def paused(self, cur: Cursor | None = None) -> set[str]:
        sql = "SELECT name FROM wf_workflows WHERE paused = 1"
        rows = self._x(cur, sql).fetchall() if cur is not None else self.store.query(sql)
        return {str(r[0]) for r in rows}

    def set_paused(self, workflow: str, paused: bool) -> None:
        now = time.time()
        with self.transaction() as cur:
            self._x(
                cur,
                "INSERT INTO wf_workflows (name, paused, since_seq, created_at, updated_at) VALUES (?, ?, 0, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
                (workflow, 1 if paused else 0, now, now),
            )
            if not paused:
                # runs that became due while paused start now
                self._x(cur, "UPDATE wf_runs SET updated_at = ? WHERE workflow = ? AND status = 'queued'",
                        (now, workflow))

    def created_at(self, workflow: str) -> float | None:
        rows = self.store.query("SELECT created_at FROM wf_workflows WHERE name = ?", (workflow,))
        return as_float(rows[0][0], "wf_workflows.created_at") if rows else None

    # -- creating runs -----------------------------------------------------------------------
    def insert_run(
        self, cur: Cursor, workflow: str, trigger: JsonObject | None, *, dedupe_key: str | None,
        start_seq: int, events: list[JsonObject] | None = None, input: JsonValue = None, priority: int = 0,
        concurrency_key: str | None = None, debounce_key: str | None = None, wake_at: float | None = None,
        rerun_of: str | None = None, run_id: str | None = None,
    ) -> str | None:
        """Insert a queued run; None when (workflow, dedupe_key) already has one (an at-least-once redelivery)."""
        now = time.time()
        run_id = run_id or new_id("run_")
        row = self._x(
            cur,
            "INSERT INTO wf_runs (id, workflow, status, dedupe_key, trigger_event, trigger_id, events, input, "
            "start_seq, priority, concurrency_key, debounce_key, wake_at, rerun_of, created_at, updated_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (workflow, dedupe_key) DO NOTHING RETURNING id",
            (
                run_id, workflow, dedupe_key, json.dumps(trigger) if trigger is not None else None,
                _trigger_id(trigger),
                json.dumps(events if events is not None else ([trigger] if trigger else [])),
                json.dumps(input) if input is not None else None, start_seq, priority, concurrency_key,
                debounce_key, now if wake_at is None else wake_at, rerun_of, now, now,
            ),
        ).fetchone()
        return str(row[0]) if row else None

    def insert_runs(self, cur: Cursor, runs: list[NewRun]) -> dict[str, RunRow]:
        """Insert many runs in few statements; returns those inserted, by id (a run whose (workflow,
        dedupe key) already has one is skipped). A run with ``lease_owner`` starts leased to it."""
        seen: set[tuple[str, str]] = set()
        rows: list[tuple[object, ...]] = []
        now = time.time()
        for r in runs:
            if (r.workflow, r.dedupe_key) in seen:
                continue
            seen.add((r.workflow, r.dedupe_key))
            trigger = json.dumps(r.trigger)
            leased = r.lease_owner is not None
            rows.append((
                new_id("run_"), r.workflow, "running" if leased else "queued", r.dedupe_key, trigger,
                _trigger_id(r.trigger), f"[{trigger}]", r.start_seq, r.priority, r.concurrency_key, now, r.lease_owner,
                now + r.lease if leased else None, 1 if leased else 0, now if leased else None, now, now,
            ))
        inserted: dict[str, RunRow] = {}
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            marks = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
            found = self._x(
                cur,
                "INSERT INTO wf_runs (id, workflow, status, dedupe_key, trigger_event, trigger_id, events, start_seq, "
                "priority, concurrency_key, wake_at, lease_owner, lease_until, attempts, started_at, created_at, "
                "updated_at) "
                f"VALUES {marks} ON CONFLICT (workflow, dedupe_key) DO NOTHING RETURNING {RUN_COLUMNS}",
                [v for row in chunk for v in row],
            ).fetchall()
            for row in found:
                inserted[str(row[0])] = row_to_run(row)
        return inserted

    def queued_debounce(self, cur: Cursor, workflow: str, key: str) -> tuple[str, list[JsonObject]] | None:
        """The queued run collecting events for this debounce key, with the events it holds."""
        row = self._x(
            cur, "SELECT id, events FROM wf_runs WHERE workflow = ? AND debounce_key = ? AND status = 'queued'",
            (workflow, key),
        ).fetchone()
        return (str(row[0]), _loads_objects(row[1])) if row is not None else None

    def hold_events(self, cur: Cursor, run_id: str, events: list[JsonObject], due: float) -> None:
        self._x(cur, "UPDATE wf_runs SET events = ?, wake_at = ?, updated_at = ? WHERE id = ?",
                (json.dumps(events), due, time.time(), run_id))

    def lease_new(self, cur: Cursor, run_id: str, owner: str, lease: float) -> RunRow:
        """Lease a run just inserted to ``owner`` (it starts at once, without a claim)."""
        now = time.time()
        row = self._x(
            cur,
            "UPDATE wf_runs SET status = 'running', lease_owner = ?, lease_until = ?, attempts = 1, started_at = ?, "
            f"updated_at = ? WHERE id = ? RETURNING {RUN_COLUMNS}",
            (owner, now + lease, now, now, run_id),
        )
        return row_to_run(_one(row))

    def copy_completed_steps(self, cur: Cursor, run_id: str, steps: list[StepRecord]) -> None:
        """Give a new run (a rerun ``from_step``) the results of earlier steps."""
        now = time.time()
        for s in steps:
            self._x(
                cur,
                "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, "
                "started_at, finished_at) VALUES (?, ?, ?, ?, 'completed', ?, ?, NULL, ?, ?, ?)",
                (run_id, s["step"], s["position"], s["kind"],
                 json.dumps(s["input"]) if s["input"] is not None else None, json.dumps(s["output"]),
                 s["attempts"], now, now),
            )

    # -- waits and cancellation --------------------------------------------------------------
    def waited_names(self) -> set[str]:
        return {str(r[0]) for r in self.store.query("SELECT DISTINCT event_name FROM wf_waits")}

    def waits_for(self, cur: Cursor, event_name: str, seq: int) -> list[tuple[str, str | None, str | None]]:
        """(run id, match expression, trigger event JSON) of the waits registered before ``seq``."""
        rows = self._x(
            cur,
            "SELECT w.run_id, w.match_expr, r.trigger_event FROM wf_waits w JOIN wf_runs r ON r.id = w.run_id "
            "WHERE w.event_name = ? AND w.after_seq < ?",
            (event_name, seq),
        ).fetchall()
        return [(str(r[0]), opt_str(r[1], "wf_waits.match_expr"), opt_str(r[2], "wf_runs.trigger_event")) for r in rows]

    def poke(self, cur: Cursor, run_id: str) -> None:
        """An event matched the run's wait: make it due now (and let a running run know)."""
        now = time.time()
        self._x(
            cur,
            "UPDATE wf_runs SET pokes = pokes + 1, wake_at = ?, updated_at = ? "
            "WHERE id = ? AND status IN ('waiting', 'running', 'sleeping', 'queued')",
            (now, now, run_id),
        )

    def cancellable(self, cur: Cursor, workflow: str, before_seq: int) -> list[tuple[str, str | None]]:
        """(run id, trigger event JSON) of the workflow's active runs started before ``before_seq``."""
        rows = self._x(
            cur,
            "SELECT id, trigger_event FROM wf_runs WHERE workflow = ? AND status IN "
            "('queued', 'running', 'sleeping', 'waiting') AND start_seq < ?",
            (workflow, before_seq),
        ).fetchall()
        return [(str(r[0]), opt_str(r[1], "wf_runs.trigger_event")) for r in rows]

    def cancel(self, cur: Cursor, run_id: str, reason: str) -> None:
        now = time.time()
        self._x(
            cur,
            "UPDATE wf_runs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, wake_at = NULL, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ?",
            (reason, now, now, run_id),
        )
        self._x(cur, "DELETE FROM wf_waits WHERE run_id = ?", (run_id,))

    # -- claiming and leases -----------------------------------------------------------------
    def claim(
        self, owner: str, limit: int, lease: float, skip: Collection[str], concurrency: Callable[[str], int | None],
        early: float = 0.0,
    ) -> tuple[list[tuple[RunRow, dict[str, StepMemo]]], float | None]:
        """Lease up to ``limit`` runnable runs (due, or whose lease ran out) to ``owner``, with their steps.

        ``skip``: runs this worker runs already. ``concurrency(workflow)``: the workflow's limit of
        running runs per concurrency key, if any. ``early``: a sleeping or waiting run is claimed this many
        seconds before its wake time (its ``Context`` waits out the rest in the process, so the claim's
        own latency does not make the timer late). Also returns when the next parked run becomes
        claimable.

        Whether anything is claimable is read first, outside a write transaction: the executor looks after
        every run that ends, and most of those looks find nothing, so they take no write lock.
        """
        store = self.store
        now = time.time()
        soon = now + early
        runnable = (
            "((status = 'queued' AND wake_at <= ?) OR (status IN ('sleeping', 'waiting') AND wake_at <= ?) OR "
            "(status = 'running' AND lease_until < ?)) AND workflow NOT IN (SELECT name FROM wf_workflows WHERE "
            "paused = 1)"
        )
        if not store.query(f"SELECT 1 FROM wf_runs WHERE {runnable} LIMIT 1", (now, soon, now)):
            return [], self._next_due(now, early)
        lock = " FOR UPDATE SKIP LOCKED" if store.backend == "postgres" else ""
        claimed: list[RunRow] = []
        with self.transaction() as cur:
            candidates = self._x(
                cur, f"SELECT id, workflow, concurrency_key, status FROM wf_runs WHERE {runnable} "
                f"ORDER BY priority DESC, wake_at LIMIT ?{lock}", (now, soon, now, limit),
            ).fetchall()
            running: dict[tuple[str, str], int] = {}
            for run_id, workflow_col, ckey_col, status in candidates:
                workflow, ckey = as_str(workflow_col, "wf_runs.workflow"), opt_str(ckey_col, "wf_runs.concurrency_key")
                if run_id in skip:
                    continue
                most = concurrency(workflow)
                if most and ckey is not None:
                    slot = (workflow, ckey)
                    if slot not in running:
                        running[slot] = as_int(_one(self._x(
                            cur,
                            "SELECT COUNT(*) FROM wf_runs WHERE workflow = ? AND concurrency_key = ? "
                            "AND status = 'running' AND lease_until >= ?",
                            (workflow, ckey, now),
                        ))[0])
                    if running[slot] >= most:
                        continue
                    running[slot] += 1
                row = self._x(
                    cur,
                    "UPDATE wf_runs SET status = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
                    "started_at = COALESCE(started_at, ?), debounce_key = NULL, updated_at = ? "
                    f"WHERE id = ? RETURNING {RUN_COLUMNS}",
                    (owner, now + lease, now, now, run_id),
                )
                run = row_to_run(_one(row))
                run.recovered = status == "running"
                claimed.append(run)
        memos = self.memos([run.id for run in claimed])
        return [(run, memos[run.id]) for run in claimed], self._next_due(now, early)

    def _next_due(self, now: float, early: float) -> float | None:
        """When the next parked run becomes claimable (``early`` before a sleeping or waiting run's wake)."""
        rows = self.store.query(
            "SELECT MIN(CASE WHEN status = 'queued' THEN wake_at ELSE wake_at - ? END) FROM wf_runs "
            "WHERE status IN ('queued', 'sleeping', 'waiting') AND wake_at > ?",
            (early, now),
        )
        return opt_float(rows[0][0], "wf_runs.wake_at") if rows else None

    def memos(self, run_ids: list[str]) -> dict[str, dict[str, StepMemo]]:
        """Each run's stored steps, by step id."""
        memos: dict[str, dict[str, StepMemo]] = {run_id: {} for run_id in run_ids}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            rows = self.store.query(
                "SELECT run_id, step_id, kind, status, input, output, error, attempts FROM wf_steps "
                f"WHERE run_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                step_id = as_str(r[1], "wf_steps.step_id")
                memos[as_str(r[0], "wf_steps.run_id")][step_id] = StepMemo(
                    step_id, as_str(r[2], "wf_steps.kind"), as_str(r[3], "wf_steps.status"),
                    _loads(r[4]) if r[4] else None, _loads(r[5]), opt_str(r[6], "wf_steps.error"),
                    as_int(r[7], "wf_steps.attempts"),
                )
        return memos

    def renew(self, owner: str, lease: float) -> None:
        lock = " ORDER BY id FOR UPDATE" if self.backend == "postgres" else ""
        with self.transaction() as cur:
            self._x(cur, "UPDATE wf_runs SET lease_until = ? WHERE id IN (SELECT id FROM wf_runs WHERE "
                    f"lease_owner = ? AND status = 'running'{lock})", (time.time() + lease, owner))

    def release(self, owner: str) -> None:
        with self.transaction() as cur:
            self._x(cur, "UPDATE wf_runs SET lease_until = 0 WHERE lease_owner = ? AND status = 'running'", (owner,))

    # -- a run's journal (each write fenced by the run's lease) ------------------------------
    def fence_many(self, cur: Cursor, run_ids: list[str], owner: str) -> set[str]:
        """The runs among ``run_ids`` that ``owner`` still holds the lease of, locked in id order."""
        held: set[str] = set()
        for start in range(0, len(run_ids), 500):
            chunk = sorted(run_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            lock = " ORDER BY id FOR UPDATE" if self.backend == "postgres" else ""
            rows = self._x(
                cur,
                f"UPDATE wf_runs SET updated_at = ? WHERE id IN (SELECT id FROM wf_runs WHERE id IN ({marks}) "
                f"AND lease_owner = ? AND status = 'running'{lock}) RETURNING id",
                (time.time(), *chunk, owner),
            ).fetchall()
            held.update(str(r[0]) for r in rows)
        return held

    def finish(self, cur: Cursor, run_id: str, status: str, output: str | None, error: str | None,
               waited: bool = True) -> None:
        """Record the run's end (``waited``: it may have a wait registered, to be removed)."""
        now = time.time()
        self._x(
            cur,
            "UPDATE wf_runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, "
            "lease_owner = NULL, lease_until = NULL, wake_at = NULL WHERE id = ?",
            (status, output, error, now, now, run_id),
        )
        if waited:
            self._x(cur, "DELETE FROM wf_waits WHERE run_id = ?", (run_id,))

    def park(self, cur: Cursor, run_id: str, status: str, wake_at: float | None, pokes: int) -> None:
        now = time.time()
        self._x(
            cur,
            "UPDATE wf_runs SET status = ?, wake_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? "
            "WHERE id = ?",
            (status, wake_at, now, run_id),
        )
        # an event matched while we were running: run again now rather than at the deadline
        self._x(cur, "UPDATE wf_runs SET wake_at = ? WHERE id = ? AND pokes <> ?", (now, run_id, pokes))

    def record_step(self, cur: Cursor, run_id: str, step_id: str, pos: int, kind: str, status: str,
                    output: str | None, error: str | None, attempts: int, started: float) -> None:
        self._x(
            cur,
            "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at, "
            "finished_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET "
            "status = excluded.status, output = excluded.output, error = excluded.error, "
            "attempts = excluded.attempts, finished_at = excluded.finished_at",
            (run_id, step_id, pos, kind, status, output, error, attempts, started, time.time()),
        )

    def register_wait(self, cur: Cursor, run_id: str, workflow: str, step_id: str, pos: int,
                      spec: WaitSpec) -> None:
        now = time.time()
        self._x(
            cur,
            "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at) "
            "VALUES (?, ?, ?, 'wait', 'waiting', ?, NULL, NULL, 1, ?) ON CONFLICT (run_id, step_id) DO NOTHING",
            (run_id, step_id, pos, json.dumps(spec), now),
        )
        self._x(
            cur,
            "INSERT INTO wf_waits (run_id, step_id, workflow, event_name, match_expr, after_seq, deadline) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO NOTHING",
            (run_id, step_id, workflow, spec["event"], spec["match"], spec["after_seq"], spec["deadline"]),
        )

    def resolve_wait(self, cur: Cursor, run_id: str, step_id: str, event: JsonObject | None) -> None:
        self._x(
            cur,
            "UPDATE wf_steps SET status = 'completed', output = ?, finished_at = ? WHERE run_id = ? AND step_id = ?",
            (json.dumps(event), time.time(), run_id, step_id),
        )
        self._x(cur, "DELETE FROM wf_waits WHERE run_id = ? AND step_id = ?", (run_id, step_id))

    def record_emit(self, cur: Cursor, run_id: str, step_id: str, pos: int, event: NewEvent) -> None:
        """Record the step that emits ``event`` (the caller appends the event in the same transaction)."""
        now = time.time()
        self._x(
            cur,
            "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at, "
            "finished_at) VALUES (?, ?, ?, 'emit', 'completed', ?, ?, NULL, 1, ?, ?)",
            (run_id, step_id, pos, json.dumps({"name": event.name, "data": event.payload}),
             json.dumps({"id": event.id}), now, now),
        )

    def events_after(self, name: str, after_seq: int, limit: int) -> list[StoredEvent]:
        """Accepted events named ``name`` after ``after_seq``, in log order (what a wait scans)."""
        rows = self.store.query(
            "SELECT seq, id, name, payload, received_at, source, endpoint, CASE WHEN payload = '' THEN body END "
            "FROM events WHERE name = ? AND accepted = 1 AND seq > ? ORDER BY seq LIMIT ?",
            (name, after_seq, limit),
        )
        return [StoredEvent(as_int(r[0], "events.seq"), as_str(r[1], "events.id"), as_str(r[2], "events.name"),
                            payload_text_of(opt_str(r[3], "events.payload"), opt_bytes(r[7], "events.body")),
                            as_float(r[4], "events.received_at"), opt_str(r[5], "events.source"),
                            opt_str(r[6], "events.endpoint"))
                for r in rows]

    # -- schedules ---------------------------------------------------------------------------
    def last_tick(self, schedule: str) -> float | None:
        rows = self.store.query("SELECT MAX(tick) FROM wf_schedule_ticks WHERE schedule = ?", (schedule,))
        return opt_float(rows[0][0], "wf_schedule_ticks.tick") if rows else None

    def claim_tick(self, cur: Cursor, schedule: str, tick: float) -> bool:
        """Record the tick; False when another process (or an earlier pass) already did."""
        inserted = self._x(
            cur,
            "INSERT INTO wf_schedule_ticks (schedule, tick, run_id, created_at) VALUES (?, ?, NULL, ?) "
            "ON CONFLICT (schedule, tick) DO NOTHING RETURNING tick",
            (schedule, tick, time.time()),
        ).fetchone()
        return inserted is not None

    def tick_ran(self, cur: Cursor, schedule: str, tick: float, run_id: str | None) -> None:
        self._x(cur, "UPDATE wf_schedule_ticks SET run_id = ? WHERE schedule = ? AND tick = ?",
                (run_id, schedule, tick))

    def log_top(self, cur: Cursor) -> int:
        return as_int(_one(self._x(cur, "SELECT COALESCE(MAX(seq), 0) FROM events"))[0], "the newest event's seq")

    # -- reading runs ------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRow | None:
        rows = self.store.query(f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE id = ?", (run_id,))
        return row_to_run(rows[0]) if rows else None

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: float | None = None,
        until: float | None = None, limit: int = 100, before: tuple[float, str] | None = None,
        search: str | None = None,
    ) -> list[RunRow]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
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
        rows = self.store.query(
            f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [row_to_run(r) for r in rows]

    def runs_for_event(self, event_id: str, limit: int = 50) -> list[RunRow]:
        """The runs ``event_id`` started (its trigger), newest first."""
        rows = self.store.query(f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE trigger_id = ? "
                                "ORDER BY created_at DESC LIMIT ?", (event_id, limit))
        return [row_to_run(r) for r in rows]

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self.store.query(
            "SELECT step_id, pos, kind, status, input, output, error, attempts, started_at, finished_at "
            "FROM wf_steps WHERE run_id = ? ORDER BY pos",
            (run_id,),
        )
        return [_step_record(r) for r in rows]

    # -- retention ---------------------------------------------------------------------------
    def purge(self, older_than: float) -> int:
        """Delete finished runs (and their steps) created before ``older_than``."""
        with self.transaction() as cur:
            ids = [r[0] for r in self._x(
                cur, "SELECT id FROM wf_runs WHERE status IN ('completed', 'failed', 'cancelled') AND created_at < ?",
                (older_than,),
            ).fetchall()]
            for run_id in ids:
                self._x(cur, "DELETE FROM wf_steps WHERE run_id = ?", (run_id,))
                self._x(cur, "DELETE FROM wf_runs WHERE id = ?", (run_id,))
            # old schedule ticks, keeping each schedule's latest (it marks where the schedule stands)
            self._x(
                cur,
                "DELETE FROM wf_schedule_ticks WHERE created_at < ? AND tick < "
                "(SELECT MAX(t.tick) FROM wf_schedule_ticks t WHERE t.schedule = wf_schedule_ticks.schedule)",
                (older_than,),
            )
        return len(ids)


def _trigger_id(trigger: JsonObject | None) -> str | None:
    """The starting event's id (``wf_runs.trigger_id``, indexed for the event page); a schedule tick has none."""
    found = trigger.get("id") if trigger is not None else None
    return found if isinstance(found, str) else None
