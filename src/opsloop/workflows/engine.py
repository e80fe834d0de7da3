"""The durable workflow engine, on opsloop's state store.

- A consumer over the event log (durable cursor ``workflows``) starts runs, wakes waiting runs whose
  match holds, and applies ``cancel_on`` — in the same transaction as its cursor advance, so an event
  starts a run exactly once per (workflow, trigger event) even though delivery is at-least-once.
- Workers claim runnable runs with a lease (Postgres: ``FOR UPDATE SKIP LOCKED``) and replay the
  workflow function from its memoised steps. Sleeps and waits park the run with an absolute wake time.
- Step results are written through a group committer (one transaction for many runs' steps), each write
  fenced by the run's lease so a worker that lost its lease cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from .._ids import new_id
from ..events.log import Consumer
from ..state import EventRecord, NewEvent, payload_text_of
from ..state.base import json_safe
from . import _templates
from ._api import CancelOn, WorkflowDef
from ._batch import WriteBatcher
from .context import Context, StepMemo, Suspend, _describe, event_dict
from .runs import RUN_COLUMNS, RunRow, insert_run, purge_runs, row_to_run

log = logging.getLogger("opsloop.workflows")

LEASE_SECONDS = 15.0
SCHEDULE_GRACE = 60.0


class LeaseLost(BaseException):
    """This worker no longer owns the run (cancelled, or another worker took it over)."""


def truthy(value: Any) -> bool:
    return bool(value) and value not in ("false", "False", "0", "none", "None")


class Engine:
    """One App's workflow engine: ``app.services["workflows"]``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.owner = new_id("wkr_")
        self.max_active = 256
        self.poll = 0.25
        self.batch: WriteBatcher | None = None
        self._active: dict[str, asyncio.Task[None]] = {}
        self._kick: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._consumer: Consumer | None = None
        self._since: dict[str, int] = {}
        self._saved_seq = -1
        self._saved_at = 0.0
        self._stopping = False

    # -- configuration -----------------------------------------------------------------------
    @property
    def definitions(self) -> dict[str, WorkflowDef]:
        found: dict[str, WorkflowDef] = self.app.project.extras.get("workflows", {})
        return found

    def definition(self, name: str) -> WorkflowDef:
        wf = self.definitions.get(name)
        if wf is None:
            raise LookupError(f"no workflow {name!r} in this project")
        return wf

    @property
    def time_scale(self) -> float:
        return float(self.app.settings.time_scale)

    @property
    def store(self) -> Any:
        return self.app.store

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._kick = asyncio.Event()
        await asyncio.to_thread(self._prepare)
        self.batch = WriteBatcher(self.store)
        self.batch.start()
        store = self.store
        # Payloads are parsed only for the events a workflow cares about (see _on_events).
        self._consumer = Consumer(
            "workflows", store, self.app.bus, self._on_events, poll=0.5, batch=1000, min_interval=0.002,
            load_cursor=lambda: store.get_cursor("workflows"), save_cursor=False, parse=False,
        )
        self._saved_seq = -1
        self._saved_at = 0.0
        # Process roles (docs/deploy.md): receivers run no workflows; a scheduler fires schedule ticks only.
        settings = self.app.settings
        self._tasks = []
        if settings.has_role("worker"):
            self._tasks = [
                asyncio.create_task(self._consumer.run(), name="workflows:consumer"),
                asyncio.create_task(self._worker(), name="workflows:worker"),
                asyncio.create_task(self._heartbeat(), name="workflows:heartbeat"),
                asyncio.create_task(self._housekeeping(), name="workflows:housekeeping"),
            ]
        runs_schedules = settings.has_role("worker") or settings.role == "scheduler"
        if runs_schedules and any(wf.schedule for wf in self.definitions.values()):
            self._tasks.append(asyncio.create_task(self._scheduler(), name="workflows:scheduler"))

    async def stop(self) -> None:
        self._stopping = True
        if self._consumer is not None:
            self._consumer.stop()
        for task in [*self._tasks, *self._active.values()]:
            task.cancel()
        for task in [*self._tasks, *self._active.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._save_position, True)
        self._active.clear()
        if self.batch is not None:
            await self.batch.stop()
            self.batch = None
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release_leases)

    def _prepare(self) -> None:
        store = self.store
        now = time.time()
        top = store.max_seq()
        with store.transaction() as cur:
            for name in self.definitions:
                store.execute(
                    cur,
                    "INSERT INTO wf_workflows (name, paused, since_seq, created_at, updated_at) VALUES (?, 0, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, top, now, now),
                )
            if store.backend == "sqlite":
                # one process owns a SQLite store: whatever was running when it stopped is ours to resume now
                store.execute(cur, "UPDATE wf_runs SET lease_until = 0 WHERE status = 'running'")
        self._since = {str(r[0]): int(r[1]) for r in store.query("SELECT name, since_seq FROM wf_workflows")}

    def _release_leases(self) -> None:
        with self.store.transaction() as cur:
            self.store.execute(
                cur, "UPDATE wf_runs SET lease_until = 0 WHERE lease_owner = ? AND status = 'running'", (self.owner,)
            )

    def kick(self) -> None:
        if self._kick is not None:
            self._kick.set()

    # -- the event consumer ------------------------------------------------------------------
    def _wanted(self, name: str, waited: set[str]) -> bool:
        """Whether an event of this name can start, wake or cancel a run."""
        if name in waited:
            return True
        for wf in self.definitions.values():
            if wf.on and wf.triggered_by(name):
                return True
            if any(c.event == name for c in wf.cancel_on):
                return True
        return False

    def _waited_names(self) -> set[str]:
        # Read outside the write transaction: a wait registered after this read scans the log itself
        # (find_event) from its after_seq, so an event passed over here is still seen by that run.
        return {str(r[0]) for r in self.store.query("SELECT DISTINCT event_name FROM wf_waits")}

    async def _on_events(self, events: list[EventRecord]) -> None:
        waited = await asyncio.to_thread(self._waited_names)
        names: dict[str, bool] = {}
        wanted = [ev for ev in events if names.setdefault(ev.name, self._wanted(ev.name, waited))]
        if not wanted:
            # Nothing to do: advance the cursor without a write per batch (redoing these is harmless).
            await asyncio.to_thread(self._save_position, False, events[-1].seq)
            return
        for ev in wanted:
            if ev.payload is None and ev.payload_text is not None:
                ev.payload = _read_payload(ev.payload_text)
        fresh = await asyncio.to_thread(self._handle_events_txn, wanted, events[-1].seq)
        for run in fresh:
            if self._stopping:
                break
            self._active[run.id] = asyncio.create_task(self._execute(run, {}), name=f"run:{run.id}")
        self.kick()

    def _save_position(self, force: bool, seq: int | None = None) -> None:
        """Store the cursor after events no workflow wanted: at most once a second, and at stop."""
        if seq is None:
            seq = self._consumer.position if self._consumer is not None else -1
        if seq <= self._saved_seq:
            return
        now = time.monotonic()
        if force or now - self._saved_at >= 1.0:
            self.store.set_cursor("workflows", seq)
            self._saved_seq, self._saved_at = seq, now

    def _handle_events_txn(self, events: list[EventRecord], upto: int | None = None) -> list[RunRow]:
        """Start, wake and cancel runs for ``events`` in one transaction with the cursor advance (to ``upto``).

        New runs that need no queueing decision (no concurrency limit, debounce or pause) are leased to
        this worker in the same transaction and start at once, saving a claim round trip.
        """
        store = self.store
        fresh: list[RunRow] = []
        seq = upto if upto is not None else events[-1].seq
        with store.transaction() as cur:
            paused = {str(r[0]) for r in store.execute(
                cur, "SELECT name FROM wf_workflows WHERE paused = 1").fetchall()}
            for ev in events:
                self._handle_event(cur, ev, fresh, paused)
            store.set_cursor("workflows", seq, cur)
        self._saved_seq, self._saved_at = max(self._saved_seq, seq), time.monotonic()
        return fresh

    def _lease_new(self, cur: Any, run_id: str) -> RunRow:
        now = time.time()
        row = self.store.execute(
            cur,
            "UPDATE wf_runs SET status = 'running', lease_owner = ?, lease_until = ?, attempts = 1, started_at = ?, "
            f"updated_at = ? WHERE id = ? RETURNING {RUN_COLUMNS}",
            (self.owner, now + LEASE_SECONDS, now, now, run_id),
        ).fetchone()
        return row_to_run(row)

    def _handle_event(self, cur: Any, ev: EventRecord, fresh: list[RunRow] | None = None,
                      paused: set[str] | None = None) -> None:
        store = self.store
        now = time.time()
        evd = event_dict(ev.seq, ev.id, ev.name, ev.payload, ev.received_at, ev.source, ev.endpoint)
        wrapped = _templates.wrap(evd)
        for wf in self.definitions.values():
            if wf.on and wf.triggered_by(ev.name) and ev.seq > self._since.get(wf.name, 0):
                run_id = self._start_from_event(cur, wf, evd, wrapped, now)
                direct = fresh is not None and not wf.concurrency and wf.name not in (paused or set())
                if run_id and direct and fresh is not None and len(self._active) + len(fresh) < self.max_active:
                    fresh.append(self._lease_new(cur, run_id))
            for cancel in wf.cancel_on:
                if cancel.event == ev.name:
                    self._cancel_matching(cur, wf, cancel, evd, wrapped, now)
        rows = store.execute(
            cur,
            "SELECT w.run_id, w.match_expr, r.trigger_event FROM wf_waits w JOIN wf_runs r ON r.id = w.run_id "
            "WHERE w.event_name = ? AND w.after_seq < ?",
            (ev.name, ev.seq),
        ).fetchall()
        for run_id, match, trigger in rows:
            if match and not self._matches(match, wrapped, trigger):
                continue
            store.execute(
                cur,
                "UPDATE wf_runs SET pokes = pokes + 1, wake_at = ?, updated_at = ? "
                "WHERE id = ? AND status IN ('waiting', 'running', 'sleeping', 'queued')",
                (now, now, run_id),
            )

    def _matches(self, match: str, event: Any, trigger_json: str | None) -> bool:
        trigger = _templates.wrap(json.loads(trigger_json)) if trigger_json else None
        try:
            return truthy(_templates.evaluate(match, {"event": event, "trigger": trigger}))
        except Exception as exc:
            log.warning("match expression %r failed: %s", match, exc)
            return False

    def _start_from_event(self, cur: Any, wf: WorkflowDef, evd: dict[str, Any], wrapped: Any,
                          now: float) -> str | None:
        """Create the run an event asks for; its id when a new, immediately runnable run was made."""
        context = {"event": wrapped, "trigger": wrapped}
        try:
            if wf.when and not truthy(_templates.evaluate(wf.when, context)):
                return None
            key = str(_templates.render(wf.idempotency, context)) if wf.idempotency else evd["id"]
            priority = int(_templates.render(wf.priority, context)) if isinstance(wf.priority, str) else wf.priority
            ckey = str(_templates.render(wf.concurrency_key, context)) if wf.concurrency_key else None
            dkey = str(_templates.render(wf.debounce_key, context)) if wf.debounce_key else "-"
        except Exception as exc:
            log.warning("workflow %s: cannot evaluate its trigger options on event %s: %s", wf.name, evd["id"], exc)
            return None
        store = self.store
        if wf.debounce is not None:
            due = now + wf.debounce * self.time_scale
            row = store.execute(
                cur,
                "SELECT id, events FROM wf_runs WHERE workflow = ? AND debounce_key = ? AND status = 'queued'",
                (wf.name, dkey),
            ).fetchone()
            if row is not None:
                held = json.loads(row[1])
                if all(e["id"] != evd["id"] for e in held):
                    held.append(evd)
                    store.execute(
                        cur, "UPDATE wf_runs SET events = ?, wake_at = ?, updated_at = ? WHERE id = ?",
                        (json.dumps(held), due, now, row[0]),
                    )
                return None
            insert_run(store, cur, wf.name, evd, dedupe_key=evd["id"], start_seq=evd["seq"], priority=priority,
                       concurrency_key=ckey, debounce_key=dkey, wake_at=due)
            return None
        return insert_run(store, cur, wf.name, evd, dedupe_key=key, start_seq=evd["seq"], priority=priority,
                          concurrency_key=ckey)

    def _cancel_matching(self, cur: Any, wf: WorkflowDef, cancel: CancelOn, evd: dict[str, Any], wrapped: Any,
                         now: float) -> None:
        store = self.store
        rows = store.execute(
            cur,
            "SELECT id, trigger_event FROM wf_runs WHERE workflow = ? AND status IN "
            "('queued', 'running', 'sleeping', 'waiting') AND start_seq < ?",
            (wf.name, evd["seq"]),
        ).fetchall()
        for run_id, trigger in rows:
            if cancel.match and not self._matches(cancel.match, wrapped, trigger):
                continue
            store.execute(
                cur,
                "UPDATE wf_runs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, wake_at = NULL, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (f"cancelled by event {evd['name']} {evd['id']}", now, now, run_id),
            )
            store.execute(cur, "DELETE FROM wf_waits WHERE run_id = ?", (run_id,))

    # -- claiming and running ----------------------------------------------------------------
    async def _worker(self) -> None:
        assert self._kick is not None
        while not self._stopping:
            self._kick.clear()
            free = self.max_active - len(self._active)
            next_due: float | None = None
            if free > 0:
                try:
                    claimed, next_due = await asyncio.to_thread(self._claim, free)
                except Exception:
                    log.exception("claiming workflow runs failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                for run, memo in claimed:
                    self._active[run.id] = asyncio.create_task(self._execute(run, memo), name=f"run:{run.id}")
                if len(claimed) == free:
                    await asyncio.sleep(0)
                    continue
            timeout = self.poll
            if next_due is not None:
                timeout = max(0.0, min(timeout, next_due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=timeout)

    def _claim(self, limit: int) -> tuple[list[tuple[RunRow, dict[str, StepMemo]]], float | None]:
        store = self.store
        now = time.time()
        lock = " FOR UPDATE SKIP LOCKED" if store.backend == "postgres" else ""
        claimed: list[RunRow] = []
        with store.transaction() as cur:
            candidates = store.execute(
                cur,
                "SELECT id, workflow, concurrency_key, status FROM wf_runs WHERE "
                "((status IN ('queued', 'sleeping', 'waiting') AND wake_at <= ?) OR "
                "(status = 'running' AND lease_until < ?)) "
                "AND workflow NOT IN (SELECT name FROM wf_workflows WHERE paused = 1) "
                f"ORDER BY priority DESC, wake_at LIMIT ?{lock}",
                (now, now, limit),
            ).fetchall()
            running: dict[tuple[str, str], int] = {}
            defs = self.definitions
            for run_id, workflow, ckey, status in candidates:
                if run_id in self._active:
                    continue
                wf = defs.get(workflow)
                if wf is not None and wf.concurrency and ckey is not None:
                    slot = (workflow, ckey)
                    if slot not in running:
                        running[slot] = int(store.execute(
                            cur,
                            "SELECT COUNT(*) FROM wf_runs WHERE workflow = ? AND concurrency_key = ? "
                            "AND status = 'running' AND lease_until >= ?",
                            (workflow, ckey, now),
                        ).fetchone()[0])
                    if running[slot] >= wf.concurrency:
                        continue
                    running[slot] += 1
                row = store.execute(
                    cur,
                    "UPDATE wf_runs SET status = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
                    "started_at = COALESCE(started_at, ?), debounce_key = NULL, updated_at = ? "
                    f"WHERE id = ? RETURNING {RUN_COLUMNS}",
                    (self.owner, now + LEASE_SECONDS, now, now, run_id),
                ).fetchone()
                run = row_to_run(row)
                run.recovered = status == "running"
                claimed.append(run)
            nxt = store.execute(
                cur,
                "SELECT MIN(wake_at) FROM wf_runs WHERE status IN ('queued', 'sleeping', 'waiting') AND wake_at > ?",
                (now,),
            ).fetchone()
        next_due = float(nxt[0]) if nxt and nxt[0] is not None else None
        memos: dict[str, dict[str, StepMemo]] = {run.id: {} for run in claimed}
        if claimed:
            ids = [run.id for run in claimed]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = store.query(
                    "SELECT run_id, step_id, kind, status, input, output, error, attempts FROM wf_steps "
                    f"WHERE run_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                for r in rows:
                    memos[r[0]][r[1]] = StepMemo(
                        r[1], r[2], r[3], json.loads(r[4]) if r[4] else None,
                        json.loads(r[5]) if r[5] is not None else None, r[6], int(r[7]),
                    )
        return [(run, memos[run.id]) for run in claimed], next_due

    async def _execute(self, run: RunRow, memo: dict[str, StepMemo]) -> None:
        try:
            wf = self.definitions.get(run.workflow)
            if wf is None:
                await self._finish(run, "failed", None,
                                   f"workflow {run.workflow!r} is no longer defined in this project's workflows/")
                return
            ctx = Context(self, run, memo)
            try:
                result = await wf.fn(ctx)
            except Suspend as parked:
                await self._park(run, parked)
                return
            except LeaseLost:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("run %s of %s failed: %s", run.id, run.workflow, exc)
                await self._finish(run, "failed", None, _describe(exc))
                return
            try:
                output = json.dumps(result)
            except (TypeError, ValueError) as exc:
                await self._finish(run, "failed", None, f"the workflow returned a value that is not JSON: {exc}")
                return
            await self._finish(run, "completed", output, None)
        except LeaseLost:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: the engine failed to record its state; it will be retried", run.id)
        finally:
            self._active.pop(run.id, None)
            self.kick()

    def _fence(self, cur: Any, run: RunRow) -> None:
        row = self.store.execute(
            cur,
            "UPDATE wf_runs SET updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING id",
            (time.time(), run.id, self.owner),
        ).fetchone()
        if row is None:
            raise LeaseLost(run.id)

    async def _submit(self, write: Any) -> Any:
        if self.batch is None:
            raise LeaseLost("the engine is stopping")
        try:
            return await self.batch.submit(write)
        except LeaseLost:
            raise
        except RuntimeError as exc:
            if self._stopping:
                raise LeaseLost("the engine is stopping") from exc
            raise

    async def _finish(self, run: RunRow, status: str, output: str | None, error: str | None) -> None:
        store = self.store

        def write(cur: Any) -> None:
            now = time.time()
            self._fence(cur, run)
            store.execute(
                cur,
                "UPDATE wf_runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, "
                "lease_owner = NULL, lease_until = NULL, wake_at = NULL WHERE id = ?",
                (status, output, error, now, now, run.id),
            )
            store.execute(cur, "DELETE FROM wf_waits WHERE run_id = ?", (run.id,))

        await self._submit(write)

    async def _park(self, run: RunRow, parked: Suspend) -> None:
        store = self.store

        def write(cur: Any) -> None:
            now = time.time()
            self._fence(cur, run)
            store.execute(
                cur,
                "UPDATE wf_runs SET status = ?, wake_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? "
                "WHERE id = ?",
                (parked.status, parked.wake_at, now, run.id),
            )
            # an event matched while we were running: run again now rather than at the deadline
            store.execute(cur, "UPDATE wf_runs SET wake_at = ? WHERE id = ? AND pokes <> ?", (now, run.id, run.pokes))

        await self._submit(write)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if not self._active:
                continue
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._renew)

    def _renew(self) -> None:
        with self.store.transaction() as cur:
            self.store.execute(
                cur, "UPDATE wf_runs SET lease_until = ? WHERE lease_owner = ? AND status = 'running'",
                (time.time() + LEASE_SECONDS, self.owner),
            )

    # -- what Context calls ------------------------------------------------------------------
    async def record_step(self, run: RunRow, step_id: str, pos: int, kind: str, status: str, output: str | None,
                          error: str | None, attempts: int, started: float) -> None:
        store = self.store

        def write(cur: Any) -> None:
            self._fence(cur, run)
            store.execute(
                cur,
                "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at, "
                "finished_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET "
                "status = excluded.status, output = excluded.output, error = excluded.error, "
                "attempts = excluded.attempts, finished_at = excluded.finished_at",
                (run.id, step_id, pos, kind, status, output, error, attempts, started, time.time()),
            )

        await self._submit(write)

    async def register_wait(self, run: RunRow, step_id: str, pos: int, spec: dict[str, Any]) -> None:
        store = self.store

        def write(cur: Any) -> None:
            now = time.time()
            self._fence(cur, run)
            store.execute(
                cur,
                "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at) "
                "VALUES (?, ?, ?, 'wait', 'waiting', ?, NULL, NULL, 1, ?) ON CONFLICT (run_id, step_id) DO NOTHING",
                (run.id, step_id, pos, json.dumps(spec), now),
            )
            store.execute(
                cur,
                "INSERT INTO wf_waits (run_id, step_id, workflow, event_name, match_expr, after_seq, deadline) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO NOTHING",
                (run.id, step_id, run.workflow, spec["event"], spec["match"], spec["after_seq"], spec["deadline"]),
            )

        await self._submit(write)

    async def resolve_wait(self, run: RunRow, step_id: str, event: dict[str, Any] | None) -> None:
        store = self.store

        def write(cur: Any) -> None:
            self._fence(cur, run)
            store.execute(
                cur,
                "UPDATE wf_steps SET status = 'completed', output = ?, finished_at = ? "
                "WHERE run_id = ? AND step_id = ?",
                (json.dumps(event), time.time(), run.id, step_id),
            )
            store.execute(cur, "DELETE FROM wf_waits WHERE run_id = ? AND step_id = ?", (run.id, step_id))

        await self._submit(write)

    async def find_event(self, spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._find_event, spec, context)

    def _find_event(self, spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any] | None:
        after = int(spec["after_seq"])
        match = spec.get("match")
        while True:
            rows = self.store.query(
                "SELECT seq, id, name, payload, received_at, source, endpoint, CASE WHEN payload = '' THEN body END "
                "FROM events WHERE name = ? AND accepted = 1 AND seq > ? ORDER BY seq LIMIT 200",
                (spec["event"], after),
            )
            for r in rows:
                text = payload_text_of(r[3], r[7])
                try:
                    data = _read_payload(text) if text else None
                except (ValueError, RecursionError) as exc:  # an odd event (marked failed by the consumer)
                    log.warning("wait_for_event skips event %s: its payload cannot be read: %s", r[1], exc)
                    continue
                evd = event_dict(int(r[0]), r[1], r[2], data, r[4], r[5], r[6])
                if not match:
                    return evd
                try:
                    if truthy(_templates.evaluate(match, {**context, "event": _templates.wrap(evd)})):
                        return evd
                except Exception as exc:
                    log.warning("match expression %r failed on event %s: %s", match, evd["id"], exc)
            if len(rows) < 200:
                return None
            after = int(rows[-1][0])

    async def emit_step(self, run: RunRow, step_id: str, pos: int, name: str, data: Any) -> str:
        store = self.store
        event = NewEvent(
            id=new_id("evt_"), name=name, received_at=time.time(), payload=data, source=f"workflow:{run.workflow}",
            related_id=run.id, expires_at=time.time() + self.app.settings.retention_days * 86400.0,
        )

        def write(cur: Any) -> None:
            now = time.time()
            self._fence(cur, run)
            store.append_events_in(cur, [event])
            store.execute(
                cur,
                "INSERT INTO wf_steps (run_id, step_id, pos, kind, status, input, output, error, attempts, started_at, "
                "finished_at) VALUES (?, ?, ?, 'emit', 'completed', ?, ?, NULL, 1, ?, ?)",
                (run.id, step_id, pos, json.dumps({"name": name, "data": data}), json.dumps({"id": event.id}),
                 now, now),
            )

        await self._submit(write)
        self.app.bus.notify()
        return event.id

    # -- schedules ---------------------------------------------------------------------------
    async def _scheduler(self) -> None:
        while True:
            try:
                next_at = await asyncio.to_thread(self._fire_schedules)
            except Exception:
                log.exception("the workflow scheduler failed; retrying")
                next_at = time.time() + 5
            self.kick()
            await asyncio.sleep(max(0.01, min(next_at - time.time(), 1.0)))

    def _fire_schedules(self) -> float:
        from zoneinfo import ZoneInfo

        from croniter import croniter

        store = self.store
        now = time.time()
        upcoming = now + 60
        paused = {str(r[0]) for r in store.query("SELECT name FROM wf_workflows WHERE paused = 1")}
        for wf in self.definitions.values():
            if wf.schedule is None or wf.name in paused:
                continue  # a paused schedule's ticks are handled on resume by its catch-up policy
            rows = store.query("SELECT MAX(tick) FROM wf_schedule_ticks WHERE schedule = ?", (wf.name,))
            last = rows[0][0] if rows and rows[0][0] is not None else None
            if last is None:
                made = store.query("SELECT created_at FROM wf_workflows WHERE name = ?", (wf.name,))
                last = float(made[0][0]) if made else now
            it = croniter(wf.schedule.cron, datetime.fromtimestamp(float(last), ZoneInfo(wf.schedule.timezone)))
            due: list[float] = []
            tick = float(it.get_next(float))
            while tick <= now and len(due) < 100000:
                due.append(tick)
                tick = float(it.get_next(float))
            upcoming = min(upcoming, tick)
            if not due:
                continue
            latest = due[-1]
            fire = now - latest <= SCHEDULE_GRACE or wf.schedule.catch_up == "run_once"
            self._fire_tick(wf, latest, fire, missed=len(due) - (1 if now - latest <= SCHEDULE_GRACE else 0))
        return upcoming

    def _fire_tick(self, wf: WorkflowDef, tick: float, fire: bool, missed: int) -> None:
        store = self.store
        with store.transaction() as cur:
            inserted = store.execute(
                cur,
                "INSERT INTO wf_schedule_ticks (schedule, tick, run_id, created_at) VALUES (?, ?, NULL, ?) "
                "ON CONFLICT (schedule, tick) DO NOTHING RETURNING tick",
                (wf.name, tick, time.time()),
            ).fetchone()
            if inserted is None or not fire:
                return
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(wf.schedule.timezone if wf.schedule else "UTC")
            at = datetime.fromtimestamp(tick, zone).isoformat()
            trigger = {"id": f"tick:{wf.name}:{tick:.0f}", "name": "schedule.tick", "seq": 0,
                       "data": {"schedule": wf.schedule.cron if wf.schedule else "", "tick": tick, "at": at,
                                "missed": missed},
                       "received_at": time.time(), "source": "schedule", "endpoint": None}
            seq_row = store.execute(cur, "SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            run_id = insert_run(store, cur, wf.name, trigger, dedupe_key=f"tick:{tick}", start_seq=int(seq_row[0]))
            store.execute(cur, "UPDATE wf_schedule_ticks SET run_id = ? WHERE schedule = ? AND tick = ?",
                          (run_id, wf.name, tick))

    # -- retention ---------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                days = self.app.settings.retention_days
                await asyncio.to_thread(purge_runs, self.store, time.time() - days * 86400.0)
            await asyncio.sleep(3600)


def _read_payload(text: str) -> Any:
    """A stored payload for a run. One the inbox would refuse (emitted by code, or stored by an older
    opsloop) has its NaN or lone surrogate made text, so that the run, its pages and its steps can write
    it as JSON."""
    payload = json.loads(text)
    if "NaN" in text or "Infinity" in text or "\\u" in text:
        payload = json_safe(payload)
    return payload
