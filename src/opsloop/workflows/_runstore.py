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

from .._ids import new_id
from .._json import JsonObject, JsonValue
from ..narrow import as_float, as_int, as_str, opt_bytes, opt_float, opt_str
from ..state import MIN_INDEXED, SCAN_FIRST, NewEvent, StateStore, fts_query, payload_text_of, search_forms
from ..state.base import Cursor, any_like, like_patterns
from ._journal import WaitSpec
from ._runrows import (
    RUN_COLUMNS,
    LeaseLost,
    NewRun,
    RunRow,
    RunSummary,
    StepMemo,
    StepRecord,
    StoredEvent,
    _loads,
    _loads_objects,
    _one,
    _step_record,
    row_to_run,
)

__all__ = ["RUN_COLUMNS", "Cursor", "LeaseLost", "NewRun", "RunRow", "RunStore", "RunSummary", "StepMemo",
           "StepRecord", "StoredEvent", "row_to_run"]


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
        if row is None:
            return None
        self._index_runs(cur, [str(row[0])])
        return str(row[0])

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
        self._index_runs(cur, list(inserted))
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
        self._index_error(cur, run_id)
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
        self._index_error(cur, run_id, error is not None)
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

    def get_many(self, run_ids: Sequence[str]) -> list[RunRow]:
        """The runs of ``run_ids`` that exist (at most 500 ids), in no particular order."""
        ids = list(run_ids)[:500]
        if not ids:
            return []
        rows = self.store.query(f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return [row_to_run(r) for r in rows]

    def list_runs(
        self, workflow: str | None = None, status: str | None = None, since: float | None = None,
        until: float | None = None, limit: int = 100, before: tuple[float, str] | None = None,
        search: str | None = None,
    ) -> list[RunRow]:
        """Newest first by ``(created_at, id)``. A search of 3 characters or more reads the trigram index
        (migration 0102) where the store has one; it finds what the scan finds (``_search_runs``)."""
        where: list[str] = []
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
            # spelled so the (created_at, id) index bounds the range (an OR around created_at scans the table)
            where.append("created_at <= ? AND (created_at < ? OR id < ?)")
            params += [before[0], before[0], before[1]]
        text = (search or "").strip()
        if search and "\x00" in text and not self.store.TEXT_HOLDS_NUL:
            return []  # no stored text holds it, and the driver refuses it as a parameter
        if search:
            patterns = like_patterns(search_forms(text))
            predicate = f"({any_like('trigger_event', patterns)} OR {any_like('error', patterns)} OR id = ?)"
            predicate_params: list[object] = [*patterns, *patterns, text]
            if self.store.search_index and self.store.run_search_tables and len(text) >= MIN_INDEXED:
                return self._search_runs(text, where, params, predicate, predicate_params, limit)
            where.append(predicate)
            params += predicate_params
        rows = self.store.query(
            f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE {' AND '.join(where) or '1 = 1'} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [row_to_run(r) for r in rows]

    # -- text search over runs (migration 0102) ------------------------------------------------
    search_scan_first = SCAN_FIRST
    """How many of the newest runs (of those the filters keep) a search scans before it reads the index: a
    text many runs hold fills the page from them (an index lookup of it would read every run holding it)."""

    def _search_runs(self, text: str, where: list[str], params: list[object], predicate: str,
                     predicate_params: list[object], limit: int) -> list[RunRow]:
        """The newest ``search_scan_first`` runs the filters keep, scanned; when they hold fewer than
        ``limit`` matches, the older runs through the index, each candidate checked with the scan's
        ``predicate``. Every run is in the index (written with the run), so this finds what the scan finds."""
        filters = " AND ".join(where) or "1 = 1"
        older, older_params = [*where, predicate], [*params, *predicate_params]
        found: list[tuple[object, ...]] = []
        if self.search_scan_first > 0:
            newest = self.store.query(
                f"SELECT created_at, id FROM wf_runs WHERE {filters} ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, self.search_scan_first),
            )
            if not newest:
                return []
            at, last = newest[-1]
            found = [*self.store.query(
                f"SELECT {RUN_COLUMNS} FROM wf_runs WHERE {filters} AND created_at >= ? AND (created_at > ? OR "
                f"id >= ?) AND {predicate} ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, at, at, last, *predicate_params, limit),
            )]
            if len(found) >= limit or len(newest) < self.search_scan_first:
                return [row_to_run(r) for r in found]
            older = ["wf_runs.created_at <= ? AND (wf_runs.created_at < ? OR wf_runs.id < ?)", *older]
            older_params = [at, at, last, *older_params]
        columns = ", ".join(f"wf_runs.{c.strip()}" for c in RUN_COLUMNS.split(","))
        rows = {str(r[0]): r for r in found}
        for source, condition, arm_params in self._search_arms(text):
            for r in self.store.query(
                f"SELECT {columns} FROM {source} WHERE {condition} AND {' AND '.join(older)} "
                "ORDER BY wf_runs.created_at DESC, wf_runs.id DESC LIMIT ?", (*arm_params, *older_params, limit),
            ):
                rows[str(r[0])] = r
        ordered = sorted(rows.values(), key=lambda r: (as_float(r[18], "wf_runs.created_at"), str(r[0])), reverse=True)
        return [row_to_run(r) for r in ordered[:limit]]

    def _search_arms(self, text: str) -> list[tuple[str, str, list[object]]]:
        """The indexed lookups, each ``(from, condition, params)`` yielding rows of ``wf_runs`` whose trigger
        or error may hold ``text``."""
        forms = search_forms(text)
        if self.store.TEXT_INDEX == "fts5":
            query = fts_query(forms)
            return [(f"{table} CROSS JOIN wf_run_search s ON s.doc = {table}.rowid "
                     "CROSS JOIN wf_runs ON wf_runs.id = s.run_id", f"{table} MATCH ?", [query])
                    for table in ("wf_run_search_trigger", "wf_run_search_error")]
        patterns = like_patterns(forms)
        return [
            ("wf_run_search s JOIN wf_runs ON wf_runs.id = s.run_id", any_like("s.doc", patterns, "ILIKE ?"),
             list[object](patterns)),
            ("wf_runs", f"wf_runs.error IS NOT NULL AND {any_like('wf_runs.error', patterns, 'LIKE ?')}",
             list[object](patterns)),
        ]

    def _index_runs(self, cur: Cursor, run_ids: list[str]) -> None:
        """In the transaction that inserted ``run_ids``: their trigger events into the search index."""
        if not run_ids or not self.store.run_search_tables:
            return
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            if self.store.TEXT_INDEX == "fts5":
                self._x(cur, f"INSERT INTO wf_run_search (run_id) VALUES {', '.join(['(?)'] * len(chunk))}", chunk)
                self._x(cur, "INSERT INTO wf_run_search_trigger (rowid, txt) SELECT s.doc, r.trigger_event "
                             "FROM wf_run_search s JOIN wf_runs r ON r.id = s.run_id "
                             f"WHERE s.run_id IN ({marks}) AND r.trigger_event IS NOT NULL", chunk)
            else:
                self._x(cur, "INSERT INTO wf_run_search (run_id, doc) SELECT id, trigger_event FROM wf_runs "
                             f"WHERE id IN ({marks}) AND trigger_event IS NOT NULL", chunk)

    def _index_error(self, cur: Cursor, run_id: str, has_error: bool = True) -> None:
        """In the transaction that set the run's error: the index's copy of it (Postgres indexes
        ``wf_runs.error`` itself)."""
        if self.store.TEXT_INDEX != "fts5" or not self.store.run_search_tables:
            return
        self._x(cur, "DELETE FROM wf_run_search_error WHERE rowid = (SELECT doc FROM wf_run_search WHERE run_id = ?)",
                (run_id,))
        if has_error:
            self._x(cur, "INSERT INTO wf_run_search_error (rowid, txt) SELECT s.doc, r.error FROM wf_run_search s "
                         "JOIN wf_runs r ON r.id = s.run_id WHERE s.run_id = ? AND r.error IS NOT NULL", (run_id,))

    def _unindex_run(self, cur: Cursor, run_id: str) -> None:
        """In the transaction about to delete the run: its index rows (on Postgres they go with the run)."""
        if self.store.TEXT_INDEX != "fts5" or not self.store.run_search_tables:
            return
        # a contentless FTS5 table forgets a row when told the text it indexed for it
        self._x(cur, "INSERT INTO wf_run_search_trigger (wf_run_search_trigger, rowid, txt) SELECT 'delete', s.doc, "
                     "r.trigger_event FROM wf_run_search s JOIN wf_runs r ON r.id = s.run_id "
                     "WHERE s.run_id = ? AND r.trigger_event IS NOT NULL", (run_id,))
        self._x(cur, "DELETE FROM wf_run_search_error WHERE rowid = (SELECT doc FROM wf_run_search WHERE run_id = ?)",
                (run_id,))
        self._x(cur, "DELETE FROM wf_run_search WHERE run_id = ?", (run_id,))

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
            ids = [as_str(r[0], "wf_runs.id") for r in self._x(
                cur, "SELECT id FROM wf_runs WHERE status IN ('completed', 'failed', 'cancelled') AND created_at < ?",
                (older_than,),
            ).fetchall()]
            for run_id in ids:
                self._unindex_run(cur, run_id)
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
